"""Lower a checked pack to the IR: one lowering function per node kind.

Collections (sets, maps, timelines) and list literals are not node values;
they lower to small operand records that the ops consuming them (``in``,
``[...]``, ``size``, ``count``) turn into nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..check import types as T
from ..check.checker import CAP_ATTRIBUTE
from ..check.model import (AttrRef, Candidate, CheckedPack, ConstRef, DecisionInfo, EnumRef,
                           ExperimentRef, SegmentRef)
from ..diagnostics import Diagnostics
from ..ir.opcodes import Op
from ..ir.program import (K_BOOL, K_GEO, K_NUM, K_STR, SLOT_BOOL, SLOT_GEO, SLOT_MAP, SLOT_NUM,
                          SLOT_RECORD, SLOT_SET, SLOT_STR, SLOT_TIMELINE, CandidateIR, DecisionIR,
                          ExperimentIR, FieldIR)
from ..syntax import ast
from .builder import Builder

_NUM_KINDS = ("number", "timestamp", "duration", "distance")


def node_kind(t: T.Type) -> int:
    if t.kind == "bool":
        return K_BOOL
    if t.kind in _NUM_KINDS:
        return K_NUM
    if t.kind == "string":
        return K_STR
    if t.kind == "geo":
        return K_GEO
    raise ValueError(f"{t} is not a node value")


def slot_kind(t: T.Type) -> int:
    if t.kind in _NUM_KINDS:
        return SLOT_NUM
    return {"string": SLOT_STR, "bool": SLOT_BOOL, "geo": SLOT_GEO, "set": SLOT_SET,
            "map": SLOT_MAP, "timeline": SLOT_TIMELINE, "record": SLOT_RECORD}[t.kind]


@dataclass(frozen=True)
class SlotOperand:
    """A collection attribute (set, map, timeline or record)."""
    slot: int
    type: T.Type


@dataclass(frozen=True)
class TimelineOperand:
    """``map_of_timelines[key]``."""
    slot: int
    key: int


@dataclass(frozen=True)
class ListOperand:
    items: tuple[int, ...]
    elem_kind: int


_LOAD = {K_NUM: Op.LOAD_NUM, K_STR: Op.LOAD_STR, K_BOOL: Op.LOAD_BOOL, K_GEO: Op.LOAD_GEO}
_MAP = {K_NUM: Op.MAP_NUM, K_STR: Op.MAP_STR, K_BOOL: Op.MAP_BOOL, K_GEO: Op.MAP_GEO}
_EQ = {K_NUM: (Op.EQ_NUM, Op.NE_NUM), K_STR: (Op.EQ_STR, Op.NE_STR), K_BOOL: (Op.EQ_BOOL, Op.NE_BOOL)}
_ORDER = {"<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE}
_ARITH = {"+": Op.ADD, "-": Op.SUB, "*": Op.MUL, "/": Op.DIV}


class Lowerer:
    def __init__(self, pack: CheckedPack, builder: Builder, diags: Diagnostics):
        self.pack = pack
        self.b = builder
        self.d = diags
        self._segments: dict[str, int] = {}
        self._consts: dict[str, object] = {}
        self._experiment_index: dict[str, int] = {}

    # ================================================================ expressions
    def expr(self, e: ast.Expr):
        return getattr(self, "_l_" + type(e).__name__)(e)

    def value(self, e: ast.Expr) -> int:
        """Lower an expression that must produce a node."""
        r = self.expr(e)
        if not isinstance(r, int):  # pragma: no cover - the checker rejects these
            raise TypeError(f"{e} is not a value")
        return r

    def _type(self, e: ast.Expr) -> T.Type:
        return self.pack.types[e.nid]

    def _l_Number(self, e):
        return self.b.const(e.value, K_NUM)

    def _l_Quantity(self, e):
        return self.b.const(e.value, K_NUM)

    def _l_String(self, e):
        return self.b.const(e.value, K_STR)

    def _l_Bool(self, e):
        return self.b.const(e.value, K_BOOL)

    def _l_Now(self, e):
        return self.b.node(Op.NOW, K_NUM)

    def _l_ListLit(self, e):
        items = tuple(self.value(i) for i in e.items)
        elem = self._type(e).elem
        kind = node_kind(elem) if elem is not None and elem.kind != "any" else K_STR
        return ListOperand(items, kind)

    def _l_Name(self, e):
        ref = self.pack.refs[e.nid]
        if isinstance(ref, EnumRef):
            return self.b.const(ref.value, K_STR)
        if isinstance(ref, SegmentRef):
            n = self._segments.get(ref.name)
            if n is None:
                n = self._segments[ref.name] = self.value(self.pack.segments[ref.name].expr)
            return n
        if isinstance(ref, ConstRef):
            return self.expr(self.pack.consts[ref.name].expr)
        raise TypeError(ref)  # pragma: no cover

    def _attr(self, ref: AttrRef):
        t = ref.type
        if t.is_scalar:
            kind = node_kind(t)
            slot = self.b.slot(ref.root, ref.path, slot_kind(t), type_name=str(t),
                               timestamp=t.kind == "timestamp")
            return self.b.node(_LOAD[kind], kind, a=slot)
        value_kind = -1
        timestamp = False
        if t.kind == "map":
            value_kind = slot_kind(t.elem)
            timestamp = t.elem.kind == "timestamp"
        slot = self.b.slot(ref.root, ref.path, slot_kind(t), value_kind, str(t), timestamp)
        return SlotOperand(slot, t)

    def _l_Attr(self, e):
        ref = self.pack.refs[e.nid]
        if isinstance(ref, AttrRef):
            return self._attr(ref)
        if isinstance(ref, ExperimentRef):
            return self._experiments_node(ref.name)
        raise TypeError(ref)  # pragma: no cover

    def _l_Index(self, e):
        m = self.expr(e.obj)
        key = self.value(e.key)
        vt = m.type.elem
        if vt.kind == "timeline":
            return TimelineOperand(m.slot, key)
        kind = node_kind(vt)
        return self.b.node(_MAP[kind], kind, a=m.slot, b=key)

    def _l_Call(self, e):
        name = e.func.name
        b = self.b
        if name == "distance":
            return b.node(Op.DIST, K_NUM, a=self.value(e.args[0]), b=self.value(e.args[1]))
        if name == "geo":
            return b.node(Op.GEO_MAKE, K_GEO, a=self.value(e.args[0]), b=self.value(e.args[1]))
        if name == "size":
            x = self.expr(e.args[0])
            if isinstance(x, ListOperand):
                return b.const(float(len(x.items)), K_NUM)
            if isinstance(x, TimelineOperand):
                return b.node(Op.SIZE, K_NUM, a=x.slot, b=x.key)
            return b.node(Op.SIZE, K_NUM, a=x.slot)
        if name in ("min", "max"):
            return b.variadic(Op.MIN if name == "min" else Op.MAX, K_NUM, [self.value(a) for a in e.args])
        if name == "abs":
            return b.node(Op.ABS, K_NUM, a=self.value(e.args[0]))
        if name in ("month", "weekday", "hour"):
            op = {"month": Op.MONTH, "weekday": Op.WEEKDAY, "hour": Op.HOUR}[name]
            return b.node(op, K_NUM, a=self.value(e.args[0]))
        if name in ("count", "latest"):
            x = self.expr(e.args[0])
            slot, key = (x.slot, x.key) if isinstance(x, TimelineOperand) else (x.slot, -1)
            if name == "count":
                return b.node(Op.COUNT_TL, K_NUM, a=slot, b=key, c=self.value(e.args[1]))
            return b.node(Op.LATEST_TL, K_NUM, a=slot, b=key)
        raise ValueError(name)  # pragma: no cover

    def _l_Unary(self, e):
        x = self.value(e.operand)
        if e.op == "not":
            return self.b.node(Op.NOT, K_BOOL, a=x)
        return self.b.node(Op.NEG, K_NUM, a=x)

    def _l_Logic(self, e):
        parts = [self.value(x) for x in e.operands]
        return self.b.and_(parts) if e.op == "and" else self.b.or_(parts)

    def _l_Presence(self, e):
        x = self.expr(e.operand)
        b = self.b
        if isinstance(x, int):
            return b.node(Op.IS_SET if e.present else Op.IS_MISSING, K_BOOL, a=x)
        if isinstance(x, ListOperand):
            return b.const(e.present, K_BOOL)
        if isinstance(x, TimelineOperand):
            has = b.node(Op.MAP_HAS, K_BOOL, a=x.slot, b=x.key)
        else:
            has = b.node(Op.SLOT_PRESENT, K_BOOL, a=x.slot)
        return has if e.present else b.node(Op.NOT, K_BOOL, a=has)

    def _l_Ago(self, e):
        return self.b.node(Op.SUB, K_NUM, a=self.b.node(Op.NOW, K_NUM), b=self.value(e.operand))

    def _l_Binary(self, e):
        op = e.op
        b = self.b
        if op in _ARITH:
            return b.node(_ARITH[op], K_NUM, a=self.value(e.left), b=self.value(e.right))
        if op in ("==", "!="):
            left, right = self.value(e.left), self.value(e.right)
            eq, ne = _EQ[b.kind[left]]
            return b.node(eq if op == "==" else ne, K_BOOL, a=left, b=right)
        if op in _ORDER:
            return b.node(_ORDER[op], K_BOOL, a=self.value(e.left), b=self.value(e.right))
        if op in ("in", "not in"):
            n = self._membership(e.left, e.right)
            return n if op == "in" else b.node(Op.NOT, K_BOOL, a=n)
        if op == "contains":
            if self._type(e.left).kind in ("set", "list"):
                return self._membership(e.right, e.left)
            return b.node(Op.CONTAINS_STR, K_BOOL, a=self.value(e.left), b=self.value(e.right))
        if op == "starts with":
            return b.node(Op.STARTS_WITH, K_BOOL, a=self.value(e.left), b=self.value(e.right))
        if op == "ends with":
            return b.node(Op.ENDS_WITH, K_BOOL, a=self.value(e.left), b=self.value(e.right))
        if op == "within":
            since = b.node(Op.SUB, K_NUM, a=b.node(Op.NOW, K_NUM), b=self.value(e.right))
            return b.node(Op.GE, K_BOOL, a=self.value(e.left), b=since)
        raise ValueError(op)  # pragma: no cover

    def _membership(self, elem_e: ast.Expr, coll_e: ast.Expr) -> int:
        b = self.b
        elem = self.value(elem_e)
        coll = self.expr(coll_e)
        if isinstance(coll, SlotOperand):
            return b.node(Op.IN_SET, K_BOOL, a=elem, b=coll.slot)
        kind = b.kind[elem]
        if all(b.is_const(i) for i in coll.items):
            values = [b.const_value(i) for i in coll.items]
            values = [v for v in values if v is not None]
            if kind in (K_STR, K_NUM):
                if not values:
                    return b.const(False, K_BOOL)
                return b.node(Op.IN_LIST, K_BOOL, a=elem, b=b.const_list(kind, values))
        eq = _EQ[kind][0]
        return b.or_([b.node(eq, K_BOOL, a=elem, b=i) for i in coll.items])

    # ================================================================ declarations
    def _experiments_node(self, name: str) -> int:
        return self.b.node(Op.EXPERIMENT, K_STR, a=self._experiment_index[name])

    def experiments(self) -> list[ExperimentIR]:
        out = []
        for i, (name, info) in enumerate(self.pack.experiments.items()):
            self._experiment_index[name] = i
        for name, info in self.pack.experiments.items():
            i = self._experiment_index[name]
            holdout = round(info.holdout * 100)
            variants, upper = [], holdout
            for vname, pct in info.variants:
                upper += round(pct * 100)
                variants.append((vname, upper))
            node = self._experiments_node(name)
            for vname, _ in variants:
                self.b.intern(vname)
            self.b.intern("holdout")
            out.append(ExperimentIR(i, name, info.salt, holdout, tuple(variants), info.on, node))
        self.b.experiments = out
        return out

    def const_python(self, e: ast.Expr | None, t: T.Type):
        """The Python value of a constant expression (lists for list types)."""
        if e is None:
            return None
        x = self.expr(e)
        if isinstance(x, ListOperand):
            return [self.b.const_value(i) for i in x.items]
        return self.b.const_value(x)

    def candidate(self, cand: Candidate, info: DecisionInfo) -> dict:
        b = self.b
        parts = []
        if cand.when is not None:
            parts.append(self.value(cand.when))
        if cand.channels is not None:
            channel = self._attr(AttrRef("request", ("channel",), T.STRING))
            parts.append(b.node(Op.IN_LIST, K_BOOL, a=channel, b=b.const_list(K_STR, cand.channels)))
        for count_, window, _span in cand.caps:
            parts.append(self._cap_ok(count_, window, b.const(cand.name, K_STR)))
        cond = b.and_(parts) if parts else -1
        outputs = tuple((name, self.value(v)) for name, v in cand.assignments)
        score = self.value(cand.score) if cand.score is not None and info.policy == "best" else -1
        message = ()
        if cand.message is not None:
            message = tuple(p if isinstance(p, str) else self.value(p) for p in cand.message)
        required = ()
        if cand.kind == "rule":
            required = tuple(dict.fromkeys(n for _, n in outputs if not b.is_const(n) or
                                           b.op[n] == Op.MISSING))
        emits = tuple(n for _, n in outputs) + tuple(x for x in message if isinstance(x, int))
        return dict(cond=cond, outputs=outputs, score=score, message=message, required=required,
                    emits=emits)

    def _window(self, window: ast.Expr) -> int:
        n = self.value(window)
        value = self.b.const_value(n)
        if value is None or value <= 0:
            self.d.add("E311", window.span, what="a cap's window", needs="a duration longer than zero",
                       got=window.span.text, help="a cap counts impressions within a window: cap 1 per 7 days")
        return n

    def _cap_ok(self, count_: int, window: ast.Expr, key: int) -> int:
        b = self.b
        root, path = CAP_ATTRIBUTE
        slot = b.slot(root, path, SLOT_MAP, SLOT_TIMELINE, "map<timeline>")
        n = b.node(Op.COUNT_TL, K_NUM, a=slot, b=key, c=self._window(window))
        return b.node(Op.LT, K_BOOL, a=n, b=b.const(float(count_), K_NUM))

    def decision_caps(self, info: DecisionInfo) -> tuple[int, ...]:
        b = self.b
        out = []
        names = [c.name for c in info.candidates]
        for count_, window, _span in info.caps:
            root, path = CAP_ATTRIBUTE
            slot = b.slot(root, path, SLOT_MAP, SLOT_TIMELINE, "map<timeline>")
            n = b.node(Op.COUNT_ALL, K_NUM, a=slot, b=b.const_list(K_STR, names) if names else
                       b.const_list(K_STR, ["\0"]), c=self._window(window))
            out.append(b.node(Op.LT, K_BOOL, a=n, b=b.const(float(count_), K_NUM)))
        return tuple(out)

    def decision_shell(self, info: DecisionInfo, index: int) -> dict:
        """Everything about a decision except its candidates and index."""
        fields = ()
        value_kind = -1
        default = None
        if info.kind == "record":
            fields = tuple(FieldIR(f.name, node_kind(f.type), str(f.type), self.const_python(f.default, f.type))
                           for f in info.fields.values())
        elif info.kind == "value" and not info.type.is_error:
            value_kind = node_kind(info.type)
            default = self.const_python(info.default, info.type)
            if info.policy == "all" and default is not None and not isinstance(default, list):
                default = [default]
        return dict(position=index, name=info.name, kind=info.kind, policy=info.policy,
                    value_kind=value_kind, type_name=str(info.type), default=default, fields=fields,
                    top=info.top, caps=self.decision_caps(info) if info.kind == "offer" else (),
                    experiments=tuple(self._experiment_index[x] for x, xi in self.pack.experiments.items()
                                      if info.name in xi.on))


def make_candidate(rank: int, cand: Candidate, lowered: dict, residual: int, exact: bool,
                   conjuncts, score_template: int = -1, score_params: tuple = ()) -> CandidateIR:
    return CandidateIR(rank=rank, name=cand.name, kind=cand.kind, priority=cand.priority,
                       cond=lowered["cond"], residual=residual, exact=exact, score=lowered["score"],
                       outputs=lowered["outputs"], required=lowered["required"],
                       message=lowered["message"], emits=lowered["emits"], because=cand.because,
                       location=cand.name_span.location(), conjuncts=tuple(conjuncts),
                       score_template=score_template, score_params=tuple(score_params))


def decision_ir(shell: dict, candidates, index) -> DecisionIR:
    return DecisionIR(candidates=tuple(candidates), index=index, **shell)
