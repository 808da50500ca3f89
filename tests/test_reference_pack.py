"""The reference pack (rules/) is clean, and its own rule tests pass."""
from __future__ import annotations

from pathlib import Path

from engine import ruleset, ruletest
from engine.compile import compile_sources
from engine.diagnostics import Diagnostics, render_all

RULES = Path(__file__).resolve().parents[1] / "rules"


def test_the_reference_pack_has_no_errors_and_no_warnings():
    diags = Diagnostics()
    sources = ruleset.read_sources(RULES, diags)
    compile_sources(sources, diags)
    assert len(diags) == 0, render_all(diags)


def test_the_reference_pack_rule_tests_pass():
    report = ruletest.run(ruleset.load(RULES), RULES)
    assert report.results, "the reference pack ships rule tests"
    assert report.ok, ruletest.render(report)


def test_every_product_scenario_has_rule_tests():
    files = {p.stem for p in ruletest.find_files(RULES)}
    assert {"homepage", "size", "stores", "offers"} <= files
