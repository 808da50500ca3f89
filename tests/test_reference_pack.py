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


def test_a_rule_test_file_problem_is_reported_at_its_line_and_column(tmp_path):
    import shutil
    pack = tmp_path / "rules"
    shutil.copytree(RULES, pack)
    (pack / "tests" / "broken.yaml").write_text("cases:\n  - name: x\n    profile: {a: [1, 2}\n")
    (pack / "tests" / "wrong.yaml").write_text(
        "cases:\n  - name: ok\n    profile: {}\n    expect: {homepage_category: bestsellers}\n"
        "  - name: y\n    profile: {}\n    expect: {homepage_category: nope}\n")
    report = ruletest.run(ruleset.load(pack), pack)
    text = ruletest.render(report)
    assert "tests/broken.yaml:3:23: not valid YAML" in text
    assert "tests/wrong.yaml:5" in text and "nope" in text      # the failing case, by the line it starts on
