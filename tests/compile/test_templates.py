"""Score templates: offers whose scores differ only in constants share one."""
from __future__ import annotations

from engine.ir.opcodes import TOp
from tests.conftest import compile_ok, evaluators

PACK = """
decision o: offer pick best top 3
offer a score 3 * (10000 + profile.n) + 2 * profile.m * 100
offer b score 5 * (10000 + profile.n) + 7 * profile.m * 100
offer c score 5 * (10000 + profile.n) + 7 * profile.m * 100
offer d score profile.n
"""


def test_one_template_for_one_shape():
    p = compile_ok(PACK).program
    (t,) = p.templates
    assert t.users == 3 and t.n_params == 2              # weight and boost vary; 10000 and 100 do not
    prologue = [TOp(op) for op, *_ in t.code[:t.n_pro]]
    assert prologue.count(TOp.NODE) == 2 and TOp.CONST in prologue
    assert TOp.ADD in prologue                          # 10000 + profile.n: once per call
    cands = {c.name: c for c in p.decision("o").candidates}
    assert cands["a"].score_params == (3.0, 2.0)
    assert cands["b"].score_template == cands["a"].score_template == 0
    assert cands["d"].score_template == -1          # a plain attribute needs no template


def test_templated_scores_equal_the_reference():
    result = compile_ok(PACK)
    evs = evaluators(result)
    for profile in ({}, {"n": 1}, {"n": 1, "m": 2}, {"n": 1e308, "m": 1e308}, {"n": -10000, "m": 0}):
        expected = evs["reference"].run(profile, {}, 0.0)
        for name, ev in evs.items():
            assert ev.run(profile, {}, 0.0) == expected, (name, profile)
