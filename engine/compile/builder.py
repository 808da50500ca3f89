"""The IR builder: appends nodes, shares identical ones, folds constants.

Every node is created through :meth:`Builder.node`, which returns the id of
an existing identical node when there is one (so a shared sub-expression is
stored once and evaluated at most once per call) and evaluates nodes whose
operands are all constants at compile time, with the same semantics as the
evaluators (it runs the Python twin's node evaluator).
"""
from __future__ import annotations

from array import array

from .. import limits
from ..eval.pykernel import Env, NodeEvaluator
from ..ir.opcodes import IMPURE_OPS, NODE_OPERANDS, VARIADIC_OPS, Op
from ..ir.program import K_BOOL, K_GEO, K_NUM, K_STR, Slot

CONST_OPS = frozenset({Op.CONST_NUM, Op.CONST_STR, Op.CONST_BOOL, Op.CONST_GEO, Op.MISSING})


class TooLarge(Exception):
    pass


class Builder:
    def __init__(self):
        self.op = array("i")
        self.a = array("i")
        self.b = array("i")
        self.c = array("i")
        self.k = array("d")
        self.kind = array("b")
        self.args = array("i")
        self.strings: list[str] = []
        self.string_ids: dict[str, int] = {}
        self.slots: list[Slot] = []
        self._slot_ids: dict = {}
        self.lists: list[tuple] = []
        self.list_kinds: list[int] = []
        self._list_ids: dict = {}
        self.geos: list[tuple[float, float]] = []
        self._geo_ids: dict = {}
        self.experiments: list = []
        self._cons: dict = {}
        self._folder = NodeEvaluator(self)   # duck-types the Program tables it reads

    # ---------------------------------------------------------------- tables
    def intern(self, s: str) -> int:
        sid = self.string_ids.get(s)
        if sid is None:
            sid = self.string_ids[s] = len(self.strings)
            self.strings.append(s)
        return sid

    def slot(self, root: str, path: tuple, kind: int, value_kind: int = -1, type_name: str = "",
             timestamp: bool = False) -> int:
        key = (root, path)
        i = self._slot_ids.get(key)
        if i is None:
            i = self._slot_ids[key] = len(self.slots)
            self.slots.append(Slot(i, root, path, kind, value_kind, type_name, timestamp))
        return i

    def const_list(self, kind: int, values) -> int:
        if kind == K_STR:
            items = tuple(sorted({self.intern(v) for v in values}))
        else:
            items = tuple(sorted(set(values)))
        key = (kind, items)
        i = self._list_ids.get(key)
        if i is None:
            i = self._list_ids[key] = len(self.lists)
            self.lists.append(items)
            self.list_kinds.append(kind)
        return i

    # ---------------------------------------------------------------- nodes
    def node(self, op: Op, kind: int, a: int = -1, b: int = -1, c: int = -1, k: float = 0.0) -> int:
        key = (op, kind, a, b, c, k)
        n = self._cons.get(key)
        if n is not None:
            return n
        n = self._append(op, kind, a, b, c, k)
        if op not in IMPURE_OPS and op not in CONST_OPS and self._operands_constant(n):
            return self._fold(n, key)
        self._cons[key] = n
        return n

    def variadic(self, op: Op, kind: int, operands: list[int]) -> int:
        key = (op, kind, tuple(operands))
        n = self._cons.get(key)
        if n is not None:
            return n
        start = len(self.args)
        self.args.extend(operands)
        n = self._append(op, kind, start, len(operands), -1, 0.0)
        if self._operands_constant(n):
            return self._fold(n, key)
        self._cons[key] = n
        return n

    def _append(self, op, kind, a, b, c, k) -> int:
        n = len(self.op)
        if n >= limits.MAX_PACK_NODES:
            raise TooLarge(n)
        self.op.append(int(op))
        self.a.append(a)
        self.b.append(b)
        self.c.append(c)
        self.k.append(k)
        self.kind.append(kind)
        return n

    def _operands_constant(self, n: int) -> bool:
        return all(self.op[m] in CONST_OPS for m in self.operands(n))

    def operands(self, n: int) -> list[int]:
        op = self.op[n]
        if op in VARIADIC_OPS:
            return list(self.args[self.a[n]:self.a[n] + self.b[n]])
        spec = NODE_OPERANDS.get(Op(op), "")
        out = []
        for letter in spec:
            m = getattr(self, letter)[n]
            if m >= 0:
                out.append(m)
        return out

    def _fold(self, n: int, key) -> int:
        value = self._folder.eval(n, Env())
        kind = self.kind[n]
        # drop the temporary node (it is the last one) and emit the constant
        self._pop(n)
        c = self.const(value, kind)
        self._cons[key] = c
        return c

    def _pop(self, n: int) -> None:
        assert n == len(self.op) - 1
        if self.op[n] in VARIADIC_OPS:
            del self.args[self.a[n]:]
        for arr in (self.op, self.a, self.b, self.c, self.k, self.kind):
            arr.pop()

    def const(self, value, kind: int) -> int:
        if value is None:
            return self.node(Op.MISSING, kind)
        if kind == K_BOOL:
            return self.node(Op.CONST_BOOL, K_BOOL, k=1.0 if value else 0.0)
        if kind == K_NUM:
            return self.node(Op.CONST_NUM, K_NUM, k=float(value))
        if kind == K_STR:
            return self.node(Op.CONST_STR, K_STR, a=self.intern(value))
        if kind == K_GEO:
            g = (float(value[0]), float(value[1]))
            i = self._geo_ids.get(g)
            if i is None:
                i = self._geo_ids[g] = len(self.geos)
                self.geos.append(g)
            return self.node(Op.CONST_GEO, K_GEO, a=i)
        raise ValueError(kind)  # pragma: no cover

    def is_const(self, n: int) -> bool:
        return self.op[n] in CONST_OPS

    def const_value(self, n: int):
        return self._folder.eval(n, Env())

    def is_true(self, n: int) -> bool:
        return self.op[n] == Op.CONST_BOOL and self.k[n] != 0.0

    def is_false(self, n: int) -> bool:
        return (self.op[n] == Op.CONST_BOOL and self.k[n] == 0.0) or (
            self.op[n] == Op.MISSING and self.kind[n] == K_BOOL)

    # ---------------------------------------------------------------- logic helpers
    def and_(self, operands: list[int]) -> int:
        flat: list[int] = []
        for n in operands:
            if self.op[n] == Op.AND:
                flat.extend(self.args[self.a[n]:self.a[n] + self.b[n]])
            else:
                flat.append(n)
        out = []
        for n in flat:
            if self.is_false(n):
                return self.const(False, K_BOOL)
            if self.is_true(n) or n in out:
                continue
            out.append(n)
        if not out:
            return self.const(True, K_BOOL)
        if len(out) == 1 and self.kind[out[0]] == K_BOOL and self.op[out[0]] in _STRICT_BOOL_OPS:
            return out[0]
        return self.variadic(Op.AND, K_BOOL, out)

    def or_(self, operands: list[int]) -> int:
        flat: list[int] = []
        for n in operands:
            if self.op[n] == Op.OR:
                flat.extend(self.args[self.a[n]:self.a[n] + self.b[n]])
            else:
                flat.append(n)
        out = []
        for n in flat:
            if self.is_true(n):
                return self.const(True, K_BOOL)
            if self.is_false(n) or n in out:
                continue
            out.append(n)
        if not out:
            return self.const(False, K_BOOL)
        if len(out) == 1 and self.op[out[0]] in _STRICT_BOOL_OPS:
            return out[0]
        return self.variadic(Op.OR, K_BOOL, out)

    def conjuncts(self, n: int) -> list[int]:
        """The top-level conjuncts of a condition (AND flattened)."""
        if n < 0 or self.is_true(n):
            return []
        if self.op[n] == Op.AND:
            out: list[int] = []
            for m in self.args[self.a[n]:self.a[n] + self.b[n]]:
                out.extend(x for x in self.conjuncts(m) if x not in out)
            return out
        return [n]


#: boolean ops that never produce missing (so AND(x) can be replaced by x)
_STRICT_BOOL_OPS = frozenset({
    Op.CONST_BOOL, Op.SLOT_PRESENT, Op.NOT, Op.AND, Op.OR, Op.IS_SET, Op.IS_MISSING,
    Op.EQ_NUM, Op.NE_NUM, Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ_STR, Op.NE_STR, Op.EQ_BOOL, Op.NE_BOOL,
    Op.IN_LIST, Op.IN_SET, Op.STARTS_WITH, Op.ENDS_WITH, Op.CONTAINS_STR, Op.MAP_HAS})
