"""Reading rule tests (engine/ruletest.py): every mistake a marketer can
make in a test file is reported at its file and line, with the case and a
suggestion, never as a traceback and never silently."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import ruleset, ruletest

RULES = Path(__file__).resolve().parents[1] / "rules"


@pytest.fixture(scope="module")
def pack():
    return ruleset.load(RULES)


@pytest.fixture
def run(tmp_path, pack):
    """Run one test file (tests/t.yaml under tmp_path) on the reference pack;
    returns the report and its text."""
    def go(text: str, only: str | None = None):
        tests = tmp_path / "tests"
        tests.mkdir(exist_ok=True)
        (tests / "t.yaml").write_text(text)
        report = ruletest.run(pack, tmp_path, only=only)
        return report, ruletest.render(report)
    return go


def test_a_profile_given_as_a_file_name_is_an_error_that_suggests_profile_file(run, tmp_path):
    (tmp_path / "vip.json").write_text('{"lifecycle": "vip"}')
    report, text = run("cases:\n"
                       "  - name: a VIP\n"
                       "    profile: ../vip.json\n"
                       "    expect: {homepage_category: new-arrivals}\n")
    assert report.failed == 1 and not report.ok
    assert "FAIL  " in text and "t.yaml:2  a VIP" in text
    assert "t.yaml:2: profile must be a mapping such as {lifecycle: vip}, not a text" in text
    assert "write profile_file: ../vip.json" in text


def test_a_request_that_is_a_list_is_an_error_naming_the_case(run):
    report, text = run("cases:\n"
                       "  - name: first\n"
                       "    expect: {homepage_category: bestsellers}\n"
                       "  - name: on the web\n"
                       "    request: [web]\n"
                       "    expect: {homepage_category: bestsellers}\n")
    assert (report.passed, report.failed) == (1, 1)
    assert "t.yaml:4  on the web" in text
    assert 'request must be a mapping such as {channel: web}, not a list (["web"])' in text


def test_a_defaults_profile_that_is_not_a_mapping_is_a_file_error(run):
    report, text = run("defaults:\n  profile: vip\ncases:\n"
                       "  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert report.errors and not report.results
    assert "t.yaml:2: in defaults: profile must be a mapping" in text
