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
from libc.math cimport isfinite

from ..eval.values import render_value
from . import results
from .model import HomepageCategory, NextBestOffers, OfferResult, PrefilledSize

# what a decision's raw tuple becomes (DecisionMap.how)
cdef enum:
    GENERIC = 0
    TEXT = 1
    OFFERS = 2
    RECORD = 3

#: the same numbers, for engine.service.assemble
HOWS = (GENERIC, TEXT, OFFERS, RECORD)

cdef str HOMEPAGE = results.HOMEPAGE
cdef object _generic = results.generic
cdef object _jsonable = results.jsonable
cdef object _finite = results._finite
cdef object _policy_of = results.policy_of


cdef class DecisionMap:
    """One decision's part of a plan (engine.service.assemble._Decision
    fills it; these are its fields)."""
    cdef public object ir, name, default, undecided, policies, defaults
    cdef public int how
    cdef public tuple rules, decided, reasons, commons, shapes, templates
    cdef public dict shared


cdef inline object _common(DecisionMap D, object key, object variants):
    """D.common(key, variants), the hit in C."""
    hit = D.shared.get((key, variants))
    if hit is None:
        hit = D.common(key, variants)
    return hit


cdef tuple _offers(DecisionMap D, object ranks, object outputs, object scores, object variants):
    cdef object exp = None, variant = None
    cdef Py_ssize_t i, j, n = len(ranks), at
    cdef tuple shape, names, holes
    cdef dict fields
    cdef list out = [], parts
    cdef object rank, values, score, static, v
    cdef double x
    if variants:
        exp, variant = variants[0]
    for i in range(n):
        rank, values, score = ranks[i], outputs[i], scores[i]
        shape = D.shapes[rank]
        names, static = shape[0], shape[1]
        fields = {}
        for j in range(len(names)):
            v = values[j]
            if v is not None:
                fields[names[j]] = v if type(v) is str else _jsonable(v)     # text, the common case, as is
        if static is None:
            template = D.templates[rank]
            parts = (<list> template[0]).copy()
            holes = template[1]
            at = len(names)
            for j in range(len(holes)):
                parts[holes[j]] = render_value(values[at + j])
            static = "".join(parts)
        if type(score) is float:
            x = score
            if not isfinite(x):
                score = _finite(score)
        else:
            score = _finite(score)
        out.append(OfferResult(D.rules[rank], static, score, exp, variant, D.reasons[rank], fields))
    return tuple(out)


def map_raw(plan, tuple decisions, list raw, asked):
    """``Plan.map``: (typed fields, generic decisions, decided_by, nearby)."""
    cdef dict fields = {}, generic = {}
    cdef list decided_by = []
    cdef object nearby = None
    cdef DecisionMap D
    cdef Py_ssize_t i, n = min(len(decisions), len(raw))
    cdef object r, ranks, outputs, scores, variants, status, rank, value, common, key, policy, name
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
            if ranks:
                rank = ranks[0]
                value = outputs[0][0]
                common = D.commons[rank] if not variants else _common(D, rank, variants)
                decided_by.append(D.decided[rank])
            else:
                value = D.default
                common = _common(D, status or "default", variants)
                decided_by.append(D.undecided)
            if value is None or isinstance(value, str):
                fields[name] = (HomepageCategory(value, common) if name == HOMEPAGE
                                else PrefilledSize(value, common))
                continue
            generic[name] = _generic(plan.ruleset._outcome(D.ir, r, None))
        elif how == OFFERS:
            offers = _offers(D, ranks, outputs, scores, variants)
            if ranks:
                rank = ranks[0]
                common = D.commons[rank] if not variants else _common(D, rank, variants)
                decided_by.append(D.decided[rank])
            else:
                common = _common(D, status or "default", variants)
                decided_by.append(D.undecided)
            fields[name] = NextBestOffers(offers, common)
        elif how == RECORD:
            if ranks:
                rank = ranks[0]
                common = D.commons[rank] if not variants else _common(D, rank, variants)
                decided_by.append(D.decided[rank])
                key = (rank, outputs[0])
            else:
                common = _common(D, status or "default", variants)
                decided_by.append(D.undecided)
                key = None
            try:
                policy = D.policies.get(key)
            except TypeError:                         # an unhashable output: worked out, not kept
                policy, key = None, ()
            if policy is None:
                value = D.defaults.copy()
                if ranks:
                    value.update(zip(D.shapes[ranks[0]][0], outputs[0]))
                policy = _policy_of(value)
                if key != ():
                    D.policies.put(key, policy)
            nearby = (policy, common)
        else:
            o = plan.ruleset._outcome(D.ir, r, None)
            reasons = o.reasons
            decided_by.append((name, reasons[0].name if reasons and o.source == "rule" else None))
            generic[name] = _generic(o)
    return fields, generic, decided_by, nearby
