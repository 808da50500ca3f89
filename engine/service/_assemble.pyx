# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-request half of engine.service.assemble, compiled.

:class:`DecisionMap` holds what a plan knows about one decision, in C
fields; :func:`map_raw` maps the kernel's raw answers to the typed results
with it.  It is ``Plan.map`` line for line (the interpreter ran that loop
for ~28,000 instructions a Decide on the reference pack); what it does not
do in C (a generic decision, a policy or ``Common`` not seen before) it
asks the plan's Python code for, exactly as before.  The reference is
``results.from_outcomes``: tests/server/test_assemble.py holds the two
equal on generated customers and every reference-pack answer.
"""
from libc.math cimport floor, isfinite

from ..eval.values import render_value
from . import results
from .model import HomepageCategory, NextBestOffers, OfferResult, PrefilledSize

#: what a decision's raw tuple becomes (DecisionMap.how: GENERIC, TEXT,
#: OFFERS, RECORD in _assemble.pxd), the numbers, for engine.service.assemble
HOWS = (GENERIC, TEXT, OFFERS, RECORD)

cdef str HOMEPAGE = results.HOMEPAGE
cdef object _generic = results.generic
cdef object _jsonable = results.jsonable
cdef object _finite = results._finite
cdef object _policy_of = results.policy_of


cdef class DecisionMap:
    """One decision's part of a plan (engine.service.assemble._Decision
    fills it; its fields are in _assemble.pxd)."""


cdef inline object _common(DecisionMap D, object key, object variants):
    """D.common(key, variants), the hit in C."""
    hit = D.shared.get((key, variants))
    if hit is None:
        hit = D.common(key, variants)
    return hit


cdef object common_of(DecisionMap D, object ranks, object variants, object status):
    """The decision's Common: its winning rule's (the same object every
    call without variants), or the default's, holdout's or cap's."""
    if ranks:
        return D.commons[ranks[0]] if not variants else _common(D, ranks[0], variants)
    return _common(D, status or "default", variants)


cdef object text_value(DecisionMap D, object ranks, object outputs, list decided_by):
    """A single-value decision's value (its winning rule's, or its
    default), its (decision, rule) added to ``decided_by``."""
    if ranks:
        decided_by.append(D.decided[ranks[0]])
        return outputs[0][0]
    decided_by.append(D.undecided)
    return D.default


cdef object offer_message(DecisionMap D, object rank, object values):
    """An offer's message: its static text, or its template filled with the
    values that follow the shape's fields."""
    cdef tuple shape = D.shapes[rank], holes
    cdef list parts
    cdef Py_ssize_t j, at
    static = shape[1]
    if static is not None:
        return static
    template = D.templates[rank]
    parts = (<list> template[0]).copy()
    holes = template[1]
    at = len(shape[0])
    for j in range(len(holes)):
        parts[holes[j]] = _render(values[at + j])
    return "".join(parts)


def render(v):
    """``render_value`` as offer messages fill their templates (compiled;
    tests/server/test_assemble.py holds it to render_value)."""
    return _render(v)


cdef object _render(object v):
    """``render_value``; a whole number, text, a truth value or nothing
    without the Python call (the rest, NaN and infinities included, by it)."""
    cdef double x
    if type(v) is str:
        return v
    if type(v) is float:
        x = v
        if -1e15 < x < 1e15 and x == floor(x):
            return str(<long long> x)
    elif v is None:
        return ""
    elif type(v) is bool:
        return "true" if v else "false"
    return render_value(v)


cdef object offer_score(object score):
    """A score as the answer carries it: finite, else 0.0 (results._finite)."""
    cdef double x
    if type(score) is float:
        x = score
        if isfinite(x):
            return score
    return _finite(score)


cdef tuple _offers(DecisionMap D, object ranks, object outputs, object scores, object variants):
    cdef object exp = None, variant = None
    cdef Py_ssize_t i, j, n = len(ranks)
    cdef tuple names
    cdef dict fields
    cdef list out = []
    cdef object rank, values, v
    if variants:
        exp, variant = variants[0]
    for i in range(n):
        rank, values = ranks[i], outputs[i]
        names = D.shapes[rank][0]
        fields = {}
        for j in range(len(names)):
            v = values[j]
            if v is not None:
                fields[names[j]] = v if type(v) is str else _jsonable(v)     # text, the common case, as is
        out.append(OfferResult(D.rules[rank], offer_message(D, rank, values), offer_score(scores[i]), exp, variant,
                               D.reasons[rank], fields))
    return tuple(out)


cdef tuple record_of(DecisionMap D, object ranks, object outputs, object variants, object status):
    """A nearby_stores record's (policy, common, decided_by pair)."""
    if ranks:
        rank = ranks[0]
        common = D.commons[rank] if not variants else _common(D, rank, variants)
        decided = D.decided[rank]
        key = (rank, outputs[0])
    else:
        common = _common(D, status or "default", variants)
        decided = D.undecided
        key = None
    try:
        policy = (<dict> D.policies).get(key)    # a results._Memo (a dict): dict.get, without its lookup
    except TypeError:                         # an unhashable output: worked out, not kept
        policy, key = None, ()
    if policy is None:
        value = D.defaults.copy()
        if ranks:
            value.update(zip(D.shapes[ranks[0]][0], outputs[0]))
        policy = _policy_of(value)
        if key != ():
            D.policies.put(key, policy)
    return policy, common, decided


cdef tuple generic_of(object plan, DecisionMap D, object r):
    """A decision the plan does not map in one step: (decided_by pair,
    GenericDecision), through the ruleset's Outcome."""
    o = plan.ruleset._outcome(D.ir, r, None)
    reasons = o.reasons
    return (D.name, reasons[0].name if reasons and o.source == "rule" else None), _generic(o)


def map_raw(plan, tuple decisions, list raw, asked):
    """``Plan.map``: (typed fields, generic decisions, decided_by, nearby)."""
    cdef dict fields = {}, generic = {}
    cdef list decided_by = []
    cdef object nearby = None
    cdef DecisionMap D
    cdef Py_ssize_t i, n = min(len(decisions), len(raw))
    cdef object r, ranks, outputs, scores, variants, status, value, common, name
    cdef int how
    for i in range(n):
        r = raw[i]
        if r is None:
            continue
        D = decisions[i]
        name = D.name
        if asked is not None and name not in asked:
            continue
        ranks, outputs, scores, variants, status = r
        how = D.how
        if how == TEXT:
            common = common_of(D, ranks, variants, status)
            value = text_value(D, ranks, outputs, decided_by)
            if value is None or isinstance(value, str):
                fields[name] = (HomepageCategory(value, common) if name == HOMEPAGE
                                else PrefilledSize(value, common))
                continue
            generic[name] = _generic(plan.ruleset._outcome(D.ir, r, None))
        elif how == OFFERS:
            offers = _offers(D, ranks, outputs, scores, variants)
            decided_by.append(D.decided[ranks[0]] if ranks else D.undecided)
            fields[name] = NextBestOffers(offers, common_of(D, ranks, variants, status))
        elif how == RECORD:
            policy, common, decided = record_of(D, ranks, outputs, variants, status)
            decided_by.append(decided)
            nearby = (policy, common)
        else:
            decided, generic[name] = generic_of(plan, D, r)
            decided_by.append(decided)
    return fields, generic, decided_by, nearby
