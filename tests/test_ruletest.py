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


@pytest.mark.parametrize("now, says", [
    ("1795290000000", "looks like milliseconds (2026-11-21T19:40:00Z); give seconds since the epoch "
                      "(1795290000) or an ISO-8601 time"),
    (".nan", "is not a number of seconds"),
    (".inf", "is not a number of seconds"),
    ("99999999999999999", "is out of range"),
    ("tomorrow", 'now must be an ISO-8601 time (such as 2026-11-23T10:00:00Z) or seconds since the epoch, '
                 'not "tomorrow"'),
])
def test_a_now_out_of_range_is_an_error_not_a_traceback(run, now, says):
    # the case fails, so its explanation is rendered: that used to raise "year 58860 is out of range"
    report, text = run(f"cases:\n  - name: late\n    now: {now}\n    expect: {{homepage_category: nope}}\n")
    assert report.failed == 1 and "t.yaml:2  late" in text
    assert says in text, text


def test_a_now_in_milliseconds_in_defaults_is_a_file_error(run):
    report, text = run("defaults:\n  now: 1795290000000\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert not report.results and "t.yaml:2: in defaults: now: 1795290000000 looks like milliseconds" in text


def test_now_in_seconds_iso_text_and_dates_are_read(run):
    report, text = run("cases:\n"
                       "  - {name: seconds, now: 1795428000, expect: {homepage_category: bestsellers}}\n"
                       "  - {name: iso, now: '2026-11-23T10:00:00+01:00', expect: {homepage_category: bestsellers}}\n"
                       "  - {name: date, now: 2026-11-23, expect: {homepage_category: bestsellers}}\n")
    assert report.ok and report.passed == 3, text


def test_an_explanation_at_a_time_out_of_datetimes_range_still_renders(pack):
    from engine.eval.explain import render_text
    text = render_text(pack.decide({}, {}, 1795290000000.0, decisions=["homepage_category"], explain=True))
    assert "decided at 1795290000000.0 seconds since the epoch (not a date)" in text
