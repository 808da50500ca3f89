"""The kernel's raw answers straight to the service's typed results.

``Ruleset.decide`` turns the kernel's raw tuples into an ``Outcome`` per
decision (the engine's answer, read by rule tests, replay, explain and the
decision log), and ``Decider`` then maps each ``Outcome`` to a typed result.
On the served path that double step cost as many instructions as the rules
themselves.  A :class:`Plan`, built once per ruleset, maps the raw tuples to
the very same typed results in one step, with what repeats from customer to
customer (a rule's ``Common``, an offer's id, reason and static message)
made once.  It is the fast twin of the two steps, not a second contract:
tests/server/test_assemble.py holds the two equal on generated customers
and on every reference-pack answer.

What the plan does not know how to map in one step (a decision of a typed
name but another shape, a ``pick all`` list, any generic decision) it maps
through ``Ruleset._outcome`` and :mod:`.results`, as before.

The plan is made here, in Python, once per ruleset; its per-request loop,
:meth:`Plan.map`, is compiled (``_assemble.pyx``: the interpreter spent
~28,000 instructions a Decide on it, the C loop ~13,000).
"""
from __future__ import annotations

from ..ruleset import Ruleset
from . import results
from ._assemble import HOWS, DecisionMap, map_raw
from .model import Common, Reason

# what a decision's raw tuple becomes (the compiled mapper's numbers)
GENERIC, TEXT, OFFERS, RECORD = HOWS


class _Decision(DecisionMap):
    """One decision's part of the plan (its fields are DecisionMap's, in C)."""
    __slots__ = ()

    def __init__(self, rs: Ruleset, d):
        self.ir = d
        self.name = d.name
        self.rules = tuple(c.name for c in d.candidates)
        # decided_by's pairs, made once: (decision, rule) per rank, (decision, None)
        self.decided = tuple((d.name, rule) for rule in self.rules)
        self.undecided = (d.name, None)
        # a rule's Common when no experiment assigned a variant: the same object every call
        self.reasons = tuple(Reason(c.name, c.because, c.location) for c in d.candidates)
        self.commons = tuple(Common("rule", r) for r in self.reasons)
        self.shared: dict = {}          # (rank or source, variants) -> Common, for the other cases
        self.default = d.default
        self.shapes = rs._shapes[d.position]
        self.defaults = rs._defaults[d.position]
        self.templates = tuple(_template(c.message) for c in d.candidates)
        # nearby_stores: (rank, the rule's outputs) -> the policy they say.  Safe
        # as a key although True == 1: a field's values all have the field's type.
        self.policies = results._Memo(1_000)
        if d.name in (results.HOMEPAGE, results.SIZE) and d.kind == "value" and d.policy != "all":
            self.how = TEXT
        elif d.name == results.OFFER and d.kind == "offer":
            self.how = OFFERS
        elif d.name == results.NEARBY and d.kind == "record":
            self.how = RECORD
        else:
            self.how = GENERIC

    def common(self, key, variants: tuple) -> Common:
        """A rule's Common with experiment variants (``key`` its rank), or a
        default's (``key`` its source): one object per distinct value, as
        the ruleset's ranks, sources and variants are few."""
        hit = self.shared.get((key, variants))
        if hit is None:
            reason = self.reasons[key] if type(key) is int else None
            hit = self.shared[key, variants] = Common("rule" if reason is not None else key, reason, variants)
        return hit


class Plan:
    """How one ruleset's raw answers become typed results.  What a Decide
    reads of it and of its ruleset is in slots, read from there by the
    compiled path (engine/service/_decide.pyx)."""

    __slots__ = ("ruleset", "kernel", "version", "decisions", "size_position", "size_default", "__dict__")

    def __init__(self, rs: Ruleset):
        self.ruleset = rs
        self.kernel = rs.kernel
        self.version = rs.version
        self.decisions = tuple(_Decision(rs, d) for d in rs.program.decisions)
        size = rs._by_name.get(results.SIZE)
        # only a single value can be a size (a pick-all list, a record or offers never are)
        single = size is not None and size.kind == "value" and size.policy != "all"
        self.size_position = size.position if single else -1
        self.size_default = rs.program.decisions[size.position].default if single else None

    def size(self, raw: list) -> str | None:
        """The prefilled size the nearby-stores query needs (None: none)."""
        at = self.size_position
        if at < 0 or raw[at] is None:
            return None
        ranks, outputs, _, _, _ = raw[at]
        value = outputs[0][0] if ranks else self.size_default
        return value if isinstance(value, str) else None

    def map(self, raw: list, asked) -> tuple[dict, dict, list, tuple | None]:
        """(typed fields, generic decisions, decided_by, nearby) from the
        kernel's raw answers; ``nearby`` is (policy, common) for the caller
        to query the stores with, or None.  Compiled: _assemble.map_raw."""
        return map_raw(self, self.decisions, raw, asked)


def _template(message: tuple) -> tuple[list, tuple[int, ...]]:
    """An offer's message: its parts (the literal text, "" where a value
    goes) and where the values go, in order."""
    parts = [p if isinstance(p, str) else "" for p in message]
    return parts, tuple(i for i, p in enumerate(message) if not isinstance(p, str))
