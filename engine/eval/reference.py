"""The reference interpreter: evaluates the checked AST directly.

It shares nothing with the compiler or the kernels beyond the value helpers
of :mod:`engine.eval.values`: no IR, no folding, no rule index; every rule is
evaluated in evaluation order.  It is the oracle the property tests compare
the kernels against, and the engine behind explanations.  Its result has the
same shape as ``Kernel.run``.
"""
from __future__ import annotations

from ..check.checker import CAP_ATTRIBUTE
from ..check.model import (AttrRef, CheckedPack, ConstRef, EnumRef, ExperimentRef, SegmentRef)
from ..syntax import ast
from . import values as V

_NUM = ("number", "timestamp", "duration", "distance")


def convert(t, raw):
    """A raw input value converted by its schema type (None when it does not fit)."""
    if raw is None:
        return None
    k = t.kind
    if k == "timestamp":
        return V.to_timestamp(raw)
    if k in _NUM:
        return V.to_number(raw)
    if k == "string":
        return V.to_string(raw)
    if k == "bool":
        return V.to_bool(raw)
    if k == "geo":
        return V.to_geo(raw)
    if k == "set":
        return V.to_set(raw)
    if k == "map":
        return V.to_map(raw)
    if k == "timeline":
        return V.to_timeline(raw)
    if k == "record":
        return V.to_record(raw)
    raise ValueError(k)  # pragma: no cover


def experiment_bands(info):
    """(holdout basis points, [(variant, upper bound)]) of an experiment."""
    holdout = round(info.holdout * 100)
    upper, bands = holdout, []
    for name, pct in info.variants:
        upper += round(pct * 100)
        bands.append((name, upper))
    return holdout, bands


class Context:
    """One evaluation: inputs, clock, memos."""

    def __init__(self, pack: CheckedPack, profile, request, now, customer_id):
        self.pack = pack
        self.profile = profile if type(profile) is dict else {}
        self.request = request if type(request) is dict else {}
        self.now = V.to_number(now) if now is not None else None
        self.customer_id = customer_id
        self.segments: dict[str, bool] = {}
        self.variants: dict[str, str | None] = {}

    # ---------------------------------------------------------------- expressions
    def eval(self, e: ast.Expr):
        return getattr(self, "_e_" + type(e).__name__)(e)

    def truth(self, e: ast.Expr) -> bool:
        return self.eval(e) is True

    def _e_Number(self, e):
        return e.value

    def _e_Quantity(self, e):
        return e.value

    def _e_String(self, e):
        return e.value

    def _e_Bool(self, e):
        return e.value

    def _e_Now(self, e):
        return self.now

    def _e_ListLit(self, e):
        return [self.eval(i) for i in e.items]

    def _e_Name(self, e):
        ref = self.pack.refs[e.nid]
        if isinstance(ref, EnumRef):
            return ref.value
        if isinstance(ref, SegmentRef):
            if ref.name not in self.segments:
                self.segments[ref.name] = self.truth(self.pack.segments[ref.name].expr)
            return self.segments[ref.name]
        if isinstance(ref, ConstRef):
            return self.eval(self.pack.consts[ref.name].expr)
        raise TypeError(ref)  # pragma: no cover

    def attribute(self, ref: AttrRef):
        root = self.profile if ref.root == "profile" else self.request
        return convert(ref.type, V.walk(root, ref.path))

    def variant(self, name: str):
        if name not in self.variants:
            info = self.pack.experiments[name]
            holdout, bands = experiment_bands(info)
            self.variants[name] = V.assign_variant(info.salt, holdout, bands, self.customer_id)
        return self.variants[name]

    def _e_Attr(self, e):
        ref = self.pack.refs[e.nid]
        if isinstance(ref, AttrRef):
            return self.attribute(ref)
        if isinstance(ref, ExperimentRef):
            return self.variant(ref.name)
        raise TypeError(ref)  # pragma: no cover

    def _e_Index(self, e):
        m = self.eval(e.obj)
        key = self.eval(e.key)
        if m is None or key is None:
            return None
        return convert(self.pack.types[e.nid], m.get(key))

    def _e_Call(self, e):
        name = e.func.name
        args = [self.eval(a) for a in e.args]
        if name == "distance":
            return V.haversine_km(args[0], args[1])
        if name == "geo":
            return V.to_geo([args[0], args[1]]) if args[0] is not None and args[1] is not None else None
        if name == "size":
            return 0.0 if args[0] is None else float(len(args[0]))
        if name in ("min", "max"):
            present = [a for a in args if a is not None]
            return (min(present) if name == "min" else max(present)) if present else None
        if name == "abs":
            return None if args[0] is None else abs(args[0])
        if name == "count":
            tl, window = args
            if window is None or self.now is None:
                return None
            return 0.0 if tl is None else float(sum(1 for t in tl if t >= self.now - window))
        if name == "latest":
            return max(args[0]) if args[0] else None
        if name in ("month", "weekday", "hour"):
            return getattr(V, name)(args[0])
        raise ValueError(name)  # pragma: no cover

    def _e_Unary(self, e):
        x = self.eval(e.operand)
        if e.op == "not":
            return not (x is True)
        return V.neg(x)

    def _e_Logic(self, e):
        if e.op == "and":
            return all(self.truth(x) for x in e.operands)
        return any(self.truth(x) for x in e.operands)

    def _e_Presence(self, e):
        present = self.eval(e.operand) is not None
        return present if e.present else not present

    def _e_Ago(self, e):
        return V.sub(self.now, self.eval(e.operand))

    def _e_Binary(self, e):
        op = e.op
        if op == "within":
            t, d = self.eval(e.left), self.eval(e.right)
            since = V.sub(self.now, d)
            return t is not None and since is not None and t >= since
        x, y = self.eval(e.left), self.eval(e.right)
        if op == "+":
            return V.add(x, y)
        if op == "-":
            return V.sub(x, y)
        if op == "*":
            return V.mul(x, y)
        if op == "/":
            return V.div(x, y)
        if op == "==":
            return x is not None and y is not None and x == y
        if op == "!=":
            return not (x is not None and y is not None and x == y)
        if op in ("<", "<=", ">", ">="):
            if x is None or y is None:
                return False
            return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        if op in ("in", "not in"):
            found = x is not None and y is not None and x in y
            return found if op == "in" else not found
        if op == "contains":
            if self.pack.types[e.left.nid].kind in ("set", "list"):
                return y is not None and x is not None and y in x
            return x is not None and y is not None and y in x
        if op == "starts with":
            return x is not None and y is not None and x.startswith(y)
        if op == "ends with":
            return x is not None and y is not None and x.endswith(y)
        raise ValueError(op)  # pragma: no cover

    # ---------------------------------------------------------------- candidates
    def impressions(self, name: str, window):
        """How often offer ``name`` was shown within ``window`` (None without a clock)."""
        if window is None or self.now is None:
            return None
        root, path = CAP_ATTRIBUTE
        m = V.to_map(V.walk(self.profile, path))
        tl = V.to_timeline(m.get(name)) if m is not None and m.get(name) is not None else None
        return 0.0 if not tl else float(sum(1 for t in tl if t >= self.now - window))

    def channel(self):
        return V.to_string(V.walk(self.request, ("channel",)))

    def cap_ok(self, cand, count_, window_expr) -> bool:
        n = self.impressions(cand.name, self.eval(window_expr))
        return n is not None and n < count_

    def condition(self, cand) -> bool:
        if cand.when is not None and not self.truth(cand.when):
            return False
        if cand.channels is not None:
            ch = self.channel()
            if ch is None or ch not in cand.channels:
                return False
        return all(self.cap_ok(cand, c, w) for c, w, _ in cand.caps)


class Reference:
    """Evaluates every rule of a checked pack; the oracle of the kernels."""

    def __init__(self, pack: CheckedPack):
        self.pack = pack

    def run(self, profile, request, now, customer_id=None, wanted=None):
        ctx = Context(self.pack, profile, request, now, customer_id)
        out = []
        for i, info in enumerate(self.pack.decisions.values()):
            out.append(None if wanted is not None and i not in wanted else self.decide(info, ctx))
        return out

    def experiments_on(self, info):
        return [x for x in self.pack.experiments.values() if info.name in x.on]

    def decide(self, info, ctx: Context):
        variants = []
        for x in self.experiments_on(info):
            v = ctx.variant(x.name)
            if v is not None:
                variants.append((x.name, v))
        if any(v == "holdout" for _, v in variants):
            return ((), (), (), tuple(variants), "holdout")
        if info.kind == "offer":
            for count_, window, _span in info.caps:
                w = ctx.eval(window)
                total = None
                if w is not None and ctx.now is not None:
                    total = sum(ctx.impressions(c.name, w) for c in info.candidates)
                if total is None or not total < count_:
                    return ((), (), (), tuple(variants), "capped")
        winners, outputs, scores = [], [], []
        for rank, cand in enumerate(info.ranked()):
            if not ctx.condition(cand):
                continue
            values = [ctx.eval(v) for _, v in cand.assignments]
            if cand.kind == "rule" and any(v is None for v in values):
                continue
            score = None
            if info.policy == "best":
                score = ctx.eval(cand.score)
                if score is None:
                    continue
            message = [ctx.eval(p) for p in (cand.message or []) if not isinstance(p, str)]
            if info.policy == "all" and any(o[0] == values[0] for o in outputs):
                continue                    # pick all: each value once, from its first rule
            winners.append(rank)
            outputs.append(tuple(values) + tuple(message))
            scores.append(score)
            if info.policy == "first" or (info.policy == "all" and info.top and len(winners) >= info.top):
                break
        if info.policy == "best":
            order = sorted(range(len(winners)), key=lambda i: (-scores[i], winners[i]))
            if info.top:
                order = order[:info.top]
            winners = [winners[i] for i in order]
            outputs = [outputs[i] for i in order]
            scores = [scores[i] for i in order]
        return (tuple(winners), tuple(outputs), tuple(scores), tuple(variants), "")
