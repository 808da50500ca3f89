"""The rule index selects exactly the candidates a full scan would.

Large packs (more than 64 candidates, so bitsets span several words) of
indexable tests on string, number, bool and set attributes, mixed with tests
the index leaves to evaluation, on every policy: the compiled kernel with
its index must equal the kernel evaluating every rule, and the reference.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ir.program import IndexAttr
from engine.eval.pykernel import index_class
from tests.conftest import compile_ok, evaluators

VALUES = ["a", "b", "c", "d", "x"]
NUMS = ["-1", "0", "0.5", "1", "2", "3", "10", "1e6"]


@st.composite
def atom(draw):
    k = draw(st.integers(0, 11))
    if k == 0:
        return f"profile.s {draw(st.sampled_from(['==', '!=']))} \"{draw(st.sampled_from(VALUES))}\""
    if k == 1:
        vals = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
        return f"profile.s {draw(st.sampled_from(['in', 'not in']))} [{', '.join(chr(34) + v + chr(34) for v in vals)}]"
    if k == 2:
        return f"profile.n {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {draw(st.sampled_from(NUMS))}"
    if k == 3:
        return f"{draw(st.sampled_from(NUMS))} {draw(st.sampled_from(['<', '>=']))} profile.m"
    if k == 4:
        return draw(st.sampled_from(["profile.b", "not profile.b", "profile.b == false", "profile.b != true"]))
    if k == 5:
        return f"\"{draw(st.sampled_from(VALUES))}\" in profile.tags"
    if k == 6:
        return draw(st.sampled_from(["profile.n is set", "profile.s is missing", "profile.m is missing"]))
    if k == 7:
        lo, hi = sorted(draw(st.lists(st.sampled_from(NUMS), min_size=2, max_size=2)), key=float)
        return f"(profile.n >= {lo} and profile.n <= {hi})"
    if k == 8:
        return f"(profile.s == \"{draw(st.sampled_from(VALUES))}\" or profile.s == \"{draw(st.sampled_from(VALUES))}\")"
    if k == 9:
        return f"profile.e {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(['a', 'b', 'c']))}"
    if k == 10:  # not indexable: two attributes
        return "profile.n > profile.m"
    return f"profile.s starts with \"{draw(st.sampled_from(VALUES))}\""   # not indexable


@st.composite
def packs(draw):
    n = draw(st.integers(60, 200))
    lines = ['decision first: string pick first default "none"', "decision best: number pick best",
             "decision all: string pick all", "decision offer: offer pick best top 3"]
    for i in range(n):
        conds = " and ".join(draw(st.lists(atom(), min_size=1, max_size=4)))
        prio = draw(st.integers(-3, 3))
        target = draw(st.sampled_from(["first", "best", "all", "offer"]))
        if target == "first":
            lines.append(f'rule r{i} priority {prio} when {conds} then first = "r{i}"')
        elif target == "best":
            lines.append(f"rule r{i} priority {prio} when {conds} then best = {i} score profile.n * {i % 7} + {i % 5}")
        elif target == "all":
            lines.append(f'rule r{i} priority {prio} when {conds} then all = "r{i}"')
        else:
            lines.append(f"offer o{i} priority {prio} when {conds} score {i % 11} + profile.m")
    return "\n".join(lines) + "\n"


PROFILES = st.fixed_dictionaries({}, optional={
    "s": st.sampled_from(VALUES + ["zzz", 3]),
    "e": st.sampled_from(["a", "b", "c", "q"]),
    "n": st.one_of(st.sampled_from([-1, 0, 0.5, 1, 2, 3, 10, 1e6, -0.0, 2.0000001, math.inf]),
                   st.floats(-20, 20, allow_nan=False)),
    "m": st.one_of(st.sampled_from([0, 1, 3]), st.floats(-5, 5, allow_nan=False), st.just("3")),
    "b": st.sampled_from([True, False, None, 0]),
    "tags": st.lists(st.sampled_from(VALUES + ["y"]), max_size=4),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pack=packs(), profiles=st.lists(PROFILES, min_size=5, max_size=40))
def test_index_equals_full_scan(pack, profiles):
    result = compile_ok(pack)
    evs = evaluators(result)
    for p in profiles:
        expected = evs["reference"].run(p, {}, 0.0)
        for name in ("compiled", "compiled-no-index", "python", "python-no-index"):
            assert evs[name].run(p, {}, 0.0) == expected, (name, p)


def test_most_rules_are_decided_by_the_index():
    rules = "\n".join(f'rule r{i} when profile.s == "{"abc"[i % 3]}" and profile.n > {i} then out = "r{i}"'
                      for i in range(100))
    result = compile_ok('decision out: string pick first\n' + rules)
    d = result.program.decision("out")
    assert all(c.exact for c in d.candidates)
    kinds = {a.kind for a in d.index.attrs}
    assert kinds == {"str", "num"}
    assert d.index.n_words == 2


def test_numeric_classes_put_thresholds_in_their_own_class():
    result = compile_ok('decision out: string pick first\n'
                        'rule a when profile.n >= 2 then out = "a"\n'
                        'rule b when profile.n < 5 then out = "b"\n')
    attr = result.program.decision("out").index.attrs[0]
    assert isinstance(attr, IndexAttr) and attr.thresholds == (2.0, 5.0)
    classes = [index_class(result.program, attr, v) for v in (1.0, 2.0, 3.0, 5.0, 7.0, None)]
    assert classes == [0, 1, 2, 3, 4, 5]
