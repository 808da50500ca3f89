"""The pure-Python twin of the Cython kernel.

It runs the same :class:`~engine.ir.program.Program` the same way (rule
index, residual conditions, outputs), so every semantics test can run on
both.  The compiler also uses its node evaluator to fold constants and to
classify values when it builds the rule index.  Node values here are plain
Python values (str, float, bool, (lat, lon)); None is missing.
"""
from __future__ import annotations

import bisect

from ..ir.opcodes import Op
from ..ir.program import (K_STR, SLOT_BOOL, SLOT_GEO, SLOT_MAP, SLOT_NUM,
                          SLOT_RECORD, SLOT_SET, SLOT_STR, SLOT_TIMELINE, Program)
from . import values as V

_CONVERT = {
    SLOT_STR: V.to_string, SLOT_BOOL: V.to_bool, SLOT_GEO: V.to_geo, SLOT_SET: V.to_set,
    SLOT_MAP: V.to_map, SLOT_TIMELINE: V.to_timeline, SLOT_RECORD: V.to_record,
}
_MAP_VALUE = {SLOT_NUM: V.to_number, SLOT_STR: V.to_string, SLOT_BOOL: V.to_bool,
              SLOT_GEO: V.to_geo, SLOT_TIMELINE: V.to_timeline}


class Env:
    """One evaluation: the inputs, the clock, and the per-call memo."""

    __slots__ = ("profile", "request", "now", "customer_id", "memo", "slots", "bound")

    def __init__(self, profile=None, request=None, now=None, customer_id=None, bound=None):
        self.profile = profile if type(profile) is dict else {}
        self.request = request if type(request) is dict else {}
        self.now = now
        self.customer_id = customer_id
        self.memo: dict = {}
        self.slots: dict = {}
        self.bound = bound          # slot -> value: used by the compiler


class NodeEvaluator:
    """Evaluates single IR nodes; no rule logic."""

    def __init__(self, program: Program):
        self.p = program

    def _convert(self, s):
        if s.kind == SLOT_NUM:
            return V.to_timestamp if s.timestamp else V.to_number
        return _CONVERT[s.kind]

    def _map_convert(self, s):
        if s.value_kind == SLOT_NUM and s.timestamp:
            return V.to_timestamp
        return _MAP_VALUE[s.value_kind]

    # -- inputs
    def slot(self, env: Env, i: int):
        if env.bound is not None:
            if i not in env.bound:
                raise LookupError(i)
            return env.bound[i]
        try:
            return env.slots[i]
        except KeyError:
            s = self.p.slots[i]
            raw = V.walk(env.profile if s.root == "profile" else env.request, s.path)
            v = None if raw is None else self._convert(s)(raw)
            env.slots[i] = v
            return v

    def timeline(self, env, slot, key_node):
        if key_node < 0:
            return self.slot(env, slot)
        m = self.slot(env, slot)
        key = self.eval(key_node, env)
        if m is None or key is None:
            return None
        raw = m.get(key)
        return None if raw is None else V.to_timeline(raw)

    # -- nodes
    def eval(self, n: int, env: Env):
        memo = env.memo
        if n in memo:
            return memo[n]
        v = self._eval(n, env)
        memo[n] = v
        return v

    def truth(self, n: int, env: Env) -> bool:
        return self.eval(n, env) is True

    def _eval(self, n: int, env: Env):  # noqa: C901 - one branch per opcode, like the kernel
        p = self.p
        op, a, b, c = p.op[n], p.a[n], p.b[n], p.c[n]
        ev = self.eval
        if op == Op.CONST_NUM:
            return p.k[n]
        if op == Op.CONST_STR:
            return p.strings[a]
        if op == Op.CONST_BOOL:
            return p.k[n] != 0.0
        if op == Op.CONST_GEO:
            return p.geos[a]
        if op == Op.MISSING:
            return None
        if op in (Op.LOAD_NUM, Op.LOAD_STR, Op.LOAD_BOOL, Op.LOAD_GEO):
            return self.slot(env, a)
        if op == Op.SLOT_PRESENT:
            return self.slot(env, a) is not None
        if op == Op.NOW:
            return env.now
        if op == Op.EXPERIMENT:
            e = p.experiments[a]
            return V.assign_variant(e.salt, e.holdout_bp, e.variants, env.customer_id)
        if op == Op.NOT:
            return not (ev(a, env) is True)
        if op == Op.AND:
            for i in range(a, a + b):
                if ev(p.args[i], env) is not True:
                    return False
            return True
        if op == Op.OR:
            for i in range(a, a + b):
                if ev(p.args[i], env) is True:
                    return True
            return False
        if op == Op.IS_SET:
            return ev(a, env) is not None
        if op == Op.IS_MISSING:
            return ev(a, env) is None
        if op in (Op.EQ_NUM, Op.EQ_STR, Op.EQ_BOOL):
            x, y = ev(a, env), ev(b, env)
            return x is not None and y is not None and x == y
        if op in (Op.NE_NUM, Op.NE_STR, Op.NE_BOOL):
            x, y = ev(a, env), ev(b, env)
            return not (x is not None and y is not None and x == y)
        if op in (Op.LT, Op.LE, Op.GT, Op.GE):
            x, y = ev(a, env), ev(b, env)
            if x is None or y is None:
                return False
            if op == Op.LT:
                return x < y
            if op == Op.LE:
                return x <= y
            if op == Op.GT:
                return x > y
            return x >= y
        if op == Op.IN_LIST:
            x = ev(a, env)
            if x is None:
                return False
            lst = p.lists[b]
            if p.list_kinds[b] == K_STR:
                return x in self._str_list(b)
            return x in lst
        if op == Op.IN_SET:
            x = ev(a, env)
            s = self.slot(env, b)
            return x is not None and s is not None and x in s
        if op in (Op.STARTS_WITH, Op.ENDS_WITH, Op.CONTAINS_STR):
            x, y = ev(a, env), ev(b, env)
            if x is None or y is None:
                return False
            if op == Op.STARTS_WITH:
                return x.startswith(y)
            if op == Op.ENDS_WITH:
                return x.endswith(y)
            return y in x
        if op == Op.ADD:
            return V.add(ev(a, env), ev(b, env))
        if op == Op.SUB:
            return V.sub(ev(a, env), ev(b, env))
        if op == Op.MUL:
            return V.mul(ev(a, env), ev(b, env))
        if op == Op.DIV:
            return V.div(ev(a, env), ev(b, env))
        if op == Op.NEG:
            return V.neg(ev(a, env))
        if op == Op.ABS:
            x = ev(a, env)
            return None if x is None else abs(x)
        if op in (Op.MIN, Op.MAX):
            vals = [ev(p.args[i], env) for i in range(a, a + b)]
            vals = [x for x in vals if x is not None]
            if not vals:
                return None
            return min(vals) if op == Op.MIN else max(vals)
        if op == Op.DIST:
            return V.haversine_km(ev(a, env), ev(b, env))
        if op == Op.GEO_MAKE:
            x, y = ev(a, env), ev(b, env)
            return V.to_geo([x, y]) if x is not None and y is not None else None
        if op == Op.SIZE:
            s = self.timeline(env, a, b) if b >= 0 else self.slot(env, a)
            return 0.0 if s is None else float(len(s))
        if op in (Op.MAP_NUM, Op.MAP_STR, Op.MAP_BOOL, Op.MAP_GEO, Op.MAP_HAS):
            m = self.slot(env, a)
            key = ev(b, env)
            if m is None or key is None:
                return False if op == Op.MAP_HAS else None
            raw = m.get(key)
            if op == Op.MAP_HAS:
                return raw is not None
            return None if raw is None else self._map_convert(p.slots[a])(raw)
        if op == Op.COUNT_TL:
            tl = self.timeline(env, a, b)
            window = ev(c, env)
            if window is None or env.now is None:
                return None
            if tl is None:
                return 0.0
            since = env.now - window
            return float(sum(1 for t in tl if t >= since))
        if op == Op.LATEST_TL:
            tl = self.timeline(env, a, b)
            return max(tl) if tl else None
        if op == Op.COUNT_ALL:
            m = self.slot(env, a)
            window = ev(c, env)
            if window is None or env.now is None:
                return None
            if m is None:
                return 0.0
            since = env.now - window
            total = 0
            for key in self._str_list(b):
                tl = m.get(key)
                tl = None if tl is None else V.to_timeline(tl)
                if tl:
                    total += sum(1 for t in tl if t >= since)
            return float(total)
        if op == Op.MONTH:
            return V.month(ev(a, env))
        if op == Op.WEEKDAY:
            return V.weekday(ev(a, env))
        if op == Op.HOUR:
            return V.hour(ev(a, env))
        raise ValueError(f"unknown opcode {op}")  # pragma: no cover

    def _str_list(self, b):
        strings = self.p.strings
        return [strings[i] for i in self.p.lists[b]]


class PyKernel:
    """Evaluates whole programs: the twin of :class:`engine.eval._kernel.Kernel`."""

    compiled = False

    def __init__(self, program: Program, use_index: bool = True):
        self.program = program
        self.nodes = NodeEvaluator(program)
        self.use_index = use_index

    def run(self, profile, request, now, customer_id=None, wanted=None):
        """Evaluate every decision (or those whose index is in ``wanted``).

        Returns one entry per decision: None when not wanted, else a tuple
        ``(winners, outputs, scores, variants, status)``: the ranks of the
        winning candidates, for each winner the tuple of its emitted values,
        their scores, ``(experiment, variant)`` pairs for the experiments on
        the decision, and why there is no winner ("holdout" when an
        experiment held the customer out, "capped" when a decision-level cap
        was reached, else "").
        """
        env = Env(profile, request, now, customer_id)
        return [None if wanted is not None and d.position not in wanted else self._decide(d, env)
                for d in self.program.decisions]

    def _decide(self, d, env):
        nodes = self.nodes
        variants = []
        held_out = False
        for xi in d.experiments:
            x = self.program.experiments[xi]
            v = nodes.eval(x.node, env)
            if v is not None:
                variants.append((x.name, v))
                held_out = held_out or v == "holdout"
        if held_out:
            return ((), (), (), tuple(variants), "holdout")
        for cap in d.caps:
            if not nodes.truth(cap, env):
                return ((), (), (), tuple(variants), "capped")
        ranks = self._candidates(d, env)
        winners, outputs, scores = [], [], []
        for cand in (d.candidates[r] for r in ranks):
            if not cand.exact and cand.residual >= 0 and not nodes.truth(cand.residual, env):
                continue
            if not self.use_index and cand.cond >= 0 and not nodes.truth(cand.cond, env):
                continue
            if any(nodes.eval(n, env) is None for n in cand.required):
                continue
            score = None
            if d.policy == "best":
                score = nodes.eval(cand.score, env)
                if score is None:
                    continue
            emitted = tuple(nodes.eval(n, env) for n in cand.emits)
            if d.policy == "all" and any(o[0] == emitted[0] for o in outputs):
                continue                    # pick all: each value once, from its first rule
            winners.append(cand.rank)
            outputs.append(emitted)
            scores.append(score)
            if d.policy == "first" or (d.policy == "all" and d.top and len(winners) >= d.top):
                break
        if d.policy == "best":
            order = sorted(range(len(winners)), key=lambda i: (-scores[i], winners[i]))
            if d.top:
                order = order[:d.top]
            winners = [winners[i] for i in order]
            outputs = [outputs[i] for i in order]
            scores = [scores[i] for i in order]
        return (tuple(winners), tuple(outputs), tuple(scores), tuple(variants), "")

    def run_primary(self, profile, request, now, customer_id=None):
        """See Kernel.run_primary."""
        out = []
        for d, (ranks, outputs, _s, _v, _st) in zip(self.program.decisions,
                                                     self.run(profile, request, now, customer_id)):
            if d.kind != "value":
                out.append(d.candidates[ranks[0]].name if ranks else None)
            elif not ranks:
                out.append(d.default)
            elif d.policy == "all":
                out.append([o[0] for o in outputs])
            else:
                out.append(outputs[0][0])
        return tuple(out)

    def _candidates(self, d, env):
        n = len(d.candidates)
        if not self.use_index or d.index is None:
            return range(n)
        idx = d.index
        mask = (1 << n) - 1
        for attr in idx.attrs:
            mask &= self._attr_mask(idx, attr, env)
            if not mask:
                break
        out = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out

    def _bits(self, idx, offset) -> int:
        words = idx.bits[offset:offset + idx.n_words]
        return sum(w << (64 * i) for i, w in enumerate(words))

    def _attr_mask(self, idx, attr, env) -> int:
        value = self.nodes.slot(env, attr.slot)
        if attr.kind == "set":
            acc = self._offset_bits(idx, attr.base_offset) if attr.base_offset != -2 else 0
            if value is not None:
                for s in value:
                    off = attr.postings.get(s)
                    if off is not None:
                        acc |= self._offset_bits(idx, off)
            return acc
        return self._offset_bits(idx, attr.class_offsets[index_class(self.program, attr, value)])

    def _offset_bits(self, idx, offset) -> int:
        """The bitset at ``offset`` (-1: every candidate)."""
        if offset < 0:
            return (1 << (64 * idx.n_words)) - 1
        return self._bits(idx, offset)


def index_class(program: Program, attr, value) -> int:
    """The class of a value for an index attribute (see IndexAttr)."""
    if value is None:
        return attr.missing_class
    if attr.kind == "str":
        sid = program.string_ids.get(value)
        return attr.str_class.get(sid, attr.other_class) if sid is not None else attr.other_class
    if attr.kind == "bool":
        return 1 if value else 0
    th = attr.thresholds
    i = bisect.bisect_left(th, value)
    return 2 * i + 1 if i < len(th) and th[i] == value else 2 * i
