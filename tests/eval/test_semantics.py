"""The value semantics, case by case, on every evaluator.

Cases live in tests/data/semantics.yaml: an expression, the inputs, the
expected value (null: missing).  Each becomes a one-rule pack; the compiled
kernel, the Python twin (with and without the index) and the reference
interpreter must all give the expected value.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import compile_ok, evaluators

CASES = yaml.safe_load((Path(__file__).parent.parent / "data" / "semantics.yaml").read_text())
NOW = 1_800_000_000.0   # 2027-01-15T08:00:00Z


def _type_of(case) -> str:
    if "type" in case:
        return case["type"]
    v = case["expect"]
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    raise AssertionError(f"case {case['expr']!r} needs a type: (its expected value is {v!r})")


def _run(case):
    pack = f"decision out: {_type_of(case)}\nrule r then out = {case['expr']}\n"
    result = compile_ok(pack)
    got = {}
    for name, ev in evaluators(result).items():
        ranks, outputs, *_ = ev.run(case.get("profile", {}), case.get("request", {}),
                                    case.get("now", NOW), case.get("customer_id"))[0]
        got[name] = outputs[0][0] if ranks else None
    return got


@pytest.mark.parametrize("case", CASES, ids=[c["expr"] + (" #" + c["id"] if "id" in c else "") for c in CASES])
def test_case(case):
    got = _run(case)
    expect = case["expect"]
    if isinstance(expect, int) and not isinstance(expect, bool):
        expect = float(expect)
    if isinstance(expect, list):
        expect = tuple(expect)
    assert got == {name: expect for name in got}, case.get("why", "")
