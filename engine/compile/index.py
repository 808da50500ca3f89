"""The rule index: pick candidate rules from attribute values, not by scanning.

For every attribute that rules test against constants (``==``, ``!=``,
``<``, ``in [...]``, ``is set``, plain booleans, and combinations of these on
one attribute), the values the attribute can take fall into a few classes:
each constant a rule mentions, the gaps between numeric thresholds, "any
other string", and missing.  For each class the index stores the bitset of
candidates whose tests on that attribute accept it (a candidate with no test
on the attribute accepts every class).  At run time the evaluator looks up one
bitset per attribute and ANDs them: what remains are exactly the candidates
whose indexed tests all pass, in evaluation order.  Membership tests on set
attributes (``"runner" in profile.segments``) are indexed as postings: one
per member, ORed over the members the customer has.

Which classes a test accepts is computed here with the same semantics as the
evaluators (missing makes ``==``/``<`` false and ``!=``/``not`` true), so the
index is exact: tests it covers are never evaluated again.  Conditions it
cannot cover (arithmetic, ``now``, two attributes, string tests) stay as the
candidate's *residual*, evaluated only for the candidates the index selects.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

from ..ir.opcodes import Op
from ..ir.program import IndexAttr, IndexIR
from .builder import Builder

#: An attribute whose class bitsets would take more words than this is left
#: out of the index (its tests are evaluated instead).
MAX_WORDS_PER_ATTR = 4_000_000

_LOADS = {Op.LOAD_STR: "str", Op.LOAD_NUM: "num", Op.LOAD_BOOL: "bool"}
_ALLOWED = {
    "str": frozenset({Op.LOAD_STR, Op.CONST_STR, Op.CONST_BOOL, Op.MISSING, Op.EQ_STR, Op.NE_STR,
                      Op.IN_LIST, Op.IS_SET, Op.IS_MISSING, Op.NOT, Op.AND, Op.OR}),
    "num": frozenset({Op.LOAD_NUM, Op.CONST_NUM, Op.CONST_BOOL, Op.MISSING, Op.EQ_NUM, Op.NE_NUM,
                      Op.LT, Op.LE, Op.GT, Op.GE, Op.IN_LIST, Op.IS_SET, Op.IS_MISSING, Op.NOT,
                      Op.AND, Op.OR}),
    "bool": frozenset({Op.LOAD_BOOL, Op.CONST_BOOL, Op.MISSING, Op.EQ_BOOL, Op.NE_BOOL, Op.IS_SET,
                       Op.IS_MISSING, Op.NOT, Op.AND, Op.OR}),
}


class Unsupported(Exception):
    pass


@dataclass
class IndexResult:
    index: IndexIR
    residual: list[int]      # per rank: node id or -1
    exact: list[bool]        # per rank: the index decides the whole condition


def _subnodes(b: Builder, n: int) -> list[int]:
    seen, stack, out = set(), [n], []
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        out.append(m)
        stack.extend(b.operands(m))
    return out


def classify(b: Builder, c: int):
    """(kind, slot) when conjunct ``c`` can be indexed, else None."""
    op = b.op[c]
    if op == Op.IN_SET and b.op[b.a[c]] == Op.CONST_STR:
        return ("set", b.b[c])
    nodes = _subnodes(b, c)
    loads = {(b.op[m], b.a[m]) for m in nodes if b.op[m] in _LOADS}
    if len(loads) != 1:
        return None
    load_op, slot = next(iter(loads))
    kind = _LOADS[Op(load_op)]
    allowed = _ALLOWED[kind]
    if any(b.op[m] not in allowed for m in nodes):
        return None
    if b.op[c] == load_op and kind != "bool":
        return None
    for m in nodes:
        if b.op[m] == Op.IN_LIST and b.op[b.a[m]] != load_op:
            return None
    return (kind, slot)


class _Classes:
    """The value classes of one attribute and the accepted-class masks of tests."""

    def __init__(self, b: Builder, kind: int, conjuncts: list[int]):
        self.b = b
        self.kind = kind
        consts = set()
        for c in conjuncts:
            for m in _subnodes(b, c):
                op = b.op[m]
                if op == Op.CONST_STR and kind == "str":
                    consts.add(b.a[m])
                elif op == Op.CONST_NUM and kind == "num":
                    consts.add(b.k[m])
                elif op == Op.IN_LIST:
                    consts.update(b.lists[b.b[m]])
        if kind == "str":
            self.values = sorted(consts)
            self.pos = {v: i for i, v in enumerate(self.values)}
            self.other = len(self.values)
            self.missing = self.other + 1
            self.n = self.missing + 1
        elif kind == "num":
            self.values = sorted(consts)
            self.pos = {v: i for i, v in enumerate(self.values)}
            k = len(self.values)
            self.other = -1
            self.missing = 2 * k + 1
            self.n = 2 * k + 2
        else:
            self.values, self.pos, self.other, self.missing, self.n = [], {}, -1, 2, 3
        self.all = (1 << self.n) - 1
        self.present = self.all & ~(1 << self.missing)
        self._memo: dict[int, int] = {}

    def point(self, const_node: int) -> int:
        """The class mask of a constant's value (0 for a missing constant)."""
        b = self.b
        op = b.op[const_node]
        if op == Op.MISSING:
            return 0
        if self.kind == "str":
            return 1 << self.pos[b.a[const_node]]
        if self.kind == "num":
            return 1 << (2 * self.pos[b.k[const_node]] + 1)
        return 1 << (1 if b.k[const_node] != 0.0 else 0)

    def mask(self, n: int) -> int:
        """Classes in which node ``n`` (a condition) is true."""
        m = self._memo.get(n)
        if m is None:
            m = self._memo[n] = self._mask(n)
        return m

    def _mask(self, n: int) -> int:  # noqa: C901 - one branch per opcode
        b = self.b
        op = b.op[n]
        if op == Op.CONST_BOOL:
            return self.all if b.k[n] != 0.0 else 0
        if op == Op.MISSING:
            return 0
        if op == Op.LOAD_BOOL:
            return 1 << 1
        if op == Op.NOT:
            return self.all & ~self.mask(b.a[n])
        if op in (Op.AND, Op.OR):
            parts = [self.mask(x) for x in b.args[b.a[n]:b.a[n] + b.b[n]]]
            out = self.all if op == Op.AND else 0
            for p in parts:
                out = out & p if op == Op.AND else out | p
            return out
        if op in (Op.IS_SET, Op.IS_MISSING):
            if b.op[b.a[n]] not in _LOADS:
                raise Unsupported
            return self.present if op == Op.IS_SET else (1 << self.missing)
        if op == Op.IN_LIST:
            out = 0
            for v in b.lists[b.b[n]]:
                out |= (1 << self.pos[v]) if self.kind == "str" else (1 << (2 * self.pos[v] + 1))
            return out
        x, y = b.a[n], b.b[n]
        flipped = False
        if b.op[x] not in _LOADS:
            x, y, flipped = y, x, True
        if b.op[x] not in _LOADS or b.op[y] not in (Op.CONST_STR, Op.CONST_NUM, Op.CONST_BOOL, Op.MISSING):
            raise Unsupported
        pt = self.point(y)
        if op in (Op.EQ_STR, Op.EQ_NUM, Op.EQ_BOOL):
            return pt
        if op in (Op.NE_STR, Op.NE_NUM, Op.NE_BOOL):
            return self.all & ~pt
        if op in (Op.LT, Op.LE, Op.GT, Op.GE):
            if b.op[y] == Op.MISSING:
                return 0
            if flipped:
                op = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE}[Op(op)]
            j = self.pos[b.k[y]]
            below = (1 << (2 * j + 1)) - 1          # classes with values < t
            upto = (1 << (2 * j + 2)) - 1           # values <= t
            values = (1 << self.missing) - 1        # every present value
            return {Op.LT: below, Op.LE: upto, Op.GT: values & ~upto, Op.GE: values & ~below}[Op(op)]
        raise Unsupported


def _runs(mask: int):
    """Maximal runs [lo, hi] of set bits."""
    i = 0
    while mask:
        if mask & 1:
            lo = i
            while mask & 1:
                mask >>= 1
                i += 1
            yield lo, i - 1
        else:
            tz = (mask & -mask).bit_length() - 1
            mask >>= tz
            i += tz


class _Bits:
    def __init__(self, n_words: int):
        self.n_words = n_words
        self.words = array("Q")
        self._offsets: dict[int, int] = {}
        self.full = (1 << (64 * n_words)) - 1

    def add(self, bits: int, all_candidates: int) -> int:
        if bits == all_candidates or bits == self.full:
            return -1
        off = self._offsets.get(bits)
        if off is None:
            off = self._offsets[bits] = len(self.words)
            raw = bits.to_bytes(8 * self.n_words, "little")
            self.words.frombytes(raw)
        return off


def build(b: Builder, candidates: list[list[int]], residual_always: list[bool]) -> IndexResult:
    """Index one decision.  ``candidates[r]`` are the conjuncts of rank r."""
    n = len(candidates)
    n_words = max(1, (n + 63) // 64)
    all_cands = (1 << n) - 1
    bits = _Bits(n_words)
    by_attr: dict[tuple, dict[int, list[int]]] = {}
    set_anchor: dict[int, dict[int, str]] = {}
    residual: list[list[int]] = [[] for _ in range(n)]
    for r, conj in enumerate(candidates):
        for c in conj:
            cls = classify(b, c)
            if cls is None:
                residual[r].append(c)
            elif cls[0] == "set":
                anchors = set_anchor.setdefault(cls[1], {})
                if r in anchors:
                    residual[r].append(c)
                else:
                    anchors[r] = b.strings[b.a[b.a[c]]]
            else:
                by_attr.setdefault(cls, {}).setdefault(r, []).append(c)

    attrs: list[IndexAttr] = []
    for (kind, slot), per_rank in by_attr.items():
        conj_all = [c for cs in per_rank.values() for c in cs]
        classes = _Classes(b, kind, conj_all)
        if classes.n * n_words > MAX_WORDS_PER_ATTR:
            for r, cs in per_rank.items():
                residual[r].extend(cs)
            continue
        accepted: dict[int, int] = {}
        try:
            for r, cs in per_rank.items():
                m = classes.all
                for c in cs:
                    m &= classes.mask(c)
                accepted[r] = m
        except Unsupported:  # pragma: no cover - classify() admits only supported shapes
            for r, cs in per_rank.items():
                residual[r].extend(cs)
            continue
        unconstrained = all_cands
        toggles = [0] * (classes.n + 1)
        for r, m in accepted.items():
            unconstrained &= ~(1 << r)
            for lo, hi in _runs(m):
                toggles[lo] ^= 1 << r
                toggles[hi + 1] ^= 1 << r
        offsets, cur = [], 0
        for cl in range(classes.n):
            cur ^= toggles[cl]
            offsets.append(bits.add(cur | unconstrained, all_cands))
        attr = IndexAttr(slot=slot, kind=kind, class_offsets=tuple(offsets), missing_class=classes.missing,
                         other_class=classes.other, constrained=len(per_rank))
        if kind == "str":
            attr = IndexAttr(slot=slot, kind=kind, class_offsets=tuple(offsets),
                             missing_class=classes.missing, other_class=classes.other,
                             str_class={sid: i for i, sid in enumerate(classes.values)},
                             constrained=len(per_rank))
        elif kind == "num":
            attr = IndexAttr(slot=slot, kind=kind, class_offsets=tuple(offsets),
                             missing_class=classes.missing, thresholds=tuple(classes.values),
                             constrained=len(per_rank))
        attrs.append(attr)

    for slot, anchors in set_anchor.items():
        postings: dict[str, int] = {}
        anchored = 0
        for r, value in anchors.items():
            postings[value] = postings.get(value, 0) | (1 << r)
            anchored |= 1 << r
        base = all_cands & ~anchored
        base_off = bits.add(base, -1) if base else -2
        attrs.append(IndexAttr(slot=slot, kind="set",
                               postings={v: bits.add(m, -1) for v, m in postings.items()},
                               base_offset=base_off, constrained=len(anchors)))

    attrs.sort(key=lambda a: -a.constrained)
    res_nodes = [b.and_(cs) if cs else -1 for cs in residual]
    exact = [not cs and not always for cs, always in zip(residual, residual_always)]
    return IndexResult(IndexIR(n_words, tuple(attrs), bits.words), res_nodes, exact)
