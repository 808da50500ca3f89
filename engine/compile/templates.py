"""Score templates: one straight-line program per score shape.

A best-score decision with thousands of offers evaluates thousands of score
expressions per call, usually of a few shapes (``weight * (10000 +
profile.loyalty_points) + boost * profile.orders_count * 100`` with a
different weight and boost per offer).  Each score is turned into a shape:
its arithmetic, with constants abstracted as parameters and whatever is not
arithmetic (an attribute, a map lookup, a count) kept as a reference to that
node.  Candidates with the same shape share one template.

A template splits into a *prologue* and a *body*.  The prologue holds what
is the same for every candidate of the template: node reads, parameters
whose value all candidates share (the ``10000`` and ``100`` above), and
arithmetic on those; the kernel runs it once per call.  The body is the rest,
run for every candidate, one instruction across all of a call's candidates
at a time.  Arithmetic shared between scores is recomputed (one operation,
the same value): treating it as a node reference would make scores that
differ only in their constants look different.  Every instruction is an
operation the node evaluation performs, in the same order, so scores are
bit-identical.
"""
from __future__ import annotations

from ..ir.opcodes import Op, TOp
from ..ir.program import K_NUM, ScoreTemplate
from .builder import Builder

MAX_REGS = 32
_ARITH = {Op.ADD: TOp.ADD, Op.SUB: TOp.SUB, Op.MUL: TOp.MUL, Op.DIV: TOp.DIV}
_UNARY = {Op.NEG: TOp.NEG, Op.ABS: TOp.ABS}


def _shape(b: Builder, n: int, params: list):
    """The shape of node n (a hashable tuple) and its parameters, or None
    when it cannot be templated."""
    op = Op(b.op[n])
    if op == Op.CONST_NUM:
        params.append(b.k[n])
        return ("P",)
    if op in _ARITH or op in _UNARY:
        kids = [_shape(b, m, params) for m in b.operands(n)]
        if any(k is None for k in kids):
            return None
        return (int(op), *kids)
    if b.kind[n] == K_NUM and op != Op.MISSING:
        return ("N", n)                     # evaluated (and memoized) by the kernel
    return None


def _compile(shape, all_params: list[list[float]]) -> tuple[ScoreTemplate, list[int]] | None:
    """The template of one shape for the candidates whose parameters are
    ``all_params``; also which parameter positions vary between them."""
    n = len(all_params[0])
    varying = [p for p in range(n) if any(ps[p] != all_params[0][p] for ps in all_params)]
    column = {p: i for i, p in enumerate(varying)}
    pro: list[tuple] = []      # (op, a, b, value) run once per call
    body: list[tuple] = []     # (op, a, b, value) run per candidate
    nodes: dict[int, int] = {}
    counter = iter(range(n))

    def reg(where: str, index: int) -> tuple[str, int]:
        return (where, index)

    def emit(s) -> tuple[str, int]:
        if s[0] == "P":
            p = next(counter)
            if p in column:
                body.append((int(TOp.PARAM), column[p], -1, 0.0))
                return reg("b", len(body) - 1)
            pro.append((int(TOp.CONST), -1, -1, all_params[0][p]))
            return reg("p", len(pro) - 1)
        if s[0] == "N":
            if s[1] not in nodes:
                pro.append((int(TOp.NODE), s[1], -1, 0.0))
                nodes[s[1]] = len(pro) - 1
            return reg("p", nodes[s[1]])
        op = Op(s[0])
        args = [emit(k) for k in s[1:]]
        t = _ARITH.get(op) or _UNARY[op]
        if all(w == "p" for w, _ in args):
            pro.append((int(t), args[0], args[1] if len(args) > 1 else None, 0.0))
            return reg("p", len(pro) - 1)
        body.append((int(t), args[0], args[1] if len(args) > 1 else None, 0.0))
        return reg("b", len(body) - 1)

    result = emit(shape)
    if len(pro) + len(body) > MAX_REGS:
        return None
    # registers: prologue first, then body; instruction i writes register i
    number = lambda r: -1 if r is None else (r[1] if r[0] == "p" else len(pro) + r[1])  # noqa: E731
    code = []
    for op, a, b_, value in pro + body:
        if op in (TOp.NODE, TOp.PARAM):
            code.append((op, a, -1, value))
        elif op == TOp.CONST:
            code.append((op, -1, -1, value))
        else:
            code.append((op, number(a), number(b_), value))
    template = ScoreTemplate(tuple(code), len(code), number(result), len(varying), 0, len(pro))
    return template, varying


def build(b: Builder, scores: list[int]) -> tuple[list[ScoreTemplate], list[tuple[int, tuple]]]:
    """Templates for the score nodes of one decision's candidates (in rank
    order; -1 for none) and, per candidate, (template index, parameters)."""
    groups: dict = {}
    shapes: list = []
    for s in scores:
        if s < 0:
            shapes.append(None)
            continue
        params: list = []
        shape = _shape(b, s, params)
        if shape is None or shape[0] in ("N", "P"):    # a plain node or constant needs no template
            shapes.append(None)
            continue
        shapes.append((shape, params))
        groups.setdefault(shape, []).append(params)
    templates: list[ScoreTemplate] = []
    compiled: dict = {}
    for shape, all_params in groups.items():
        got = _compile(shape, all_params)
        if got is not None:
            t, varying = got
            compiled[shape] = (len(templates), varying)
            templates.append(ScoreTemplate(t.code, t.n_regs, t.result, t.n_params, len(all_params), t.n_pro))
    per_candidate: list[tuple[int, tuple]] = []
    for entry in shapes:
        if entry is None or entry[0] not in compiled:
            per_candidate.append((-1, ()))
            continue
        shape, params = entry
        index, varying = compiled[shape]
        per_candidate.append((index, tuple(params[p] for p in varying)))
    return templates, per_candidate
