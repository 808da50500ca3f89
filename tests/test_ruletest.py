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
    assert "t.yaml:3:5: profile must be a mapping such as {lifecycle: vip}, not a text" in text
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
    assert "t.yaml:2:3: in defaults: profile must be a mapping" in text


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
    assert not report.results and "t.yaml:2:3: in defaults: now: 1795290000000 looks like milliseconds" in text


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


def test_a_misspelt_defaults_is_an_error_not_tests_run_at_the_real_clock(run):
    report, text = run("default:\n  now: 2026-11-23T10:00:00Z\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert not report.ok and not report.results
    assert "t.yaml:1:1: unknown key `default` at the top of the test file; did you mean `defaults`?" in text


def test_an_unknown_key_in_defaults_is_an_error_with_a_suggestion(run):
    report, text = run("defaults:\n  nwo: 2026-11-23T10:00:00Z\n  name: all\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert not report.ok
    assert "t.yaml:2:3: unknown key `nwo` in defaults; did you mean `now`?" in text
    assert "t.yaml:3:3: a name is not a default: each case has its own name" in text


def test_unknown_keys_in_a_case_fail_that_case_with_suggestions(run):
    report, text = run("cases:\n"
                       "  - name: misspelt\n"
                       "    nwo: 2026-11-23T10:00:00Z\n"
                       "    expects: {homepage_category: bestsellers}\n"
                       "  - name: fine\n"
                       "    expect: {homepage_category: bestsellers}\n")
    assert (report.passed, report.failed) == (1, 1)
    assert "t.yaml:2  misspelt" in text
    assert "t.yaml:3:5: unknown key `nwo` in a case; did you mean `now`?" in text
    assert "t.yaml:4:5: unknown key `expects` in a case; did you mean `expect`?" in text


def test_a_case_that_lost_its_dash_is_reported_not_merged_into_the_previous_one(run):
    report, text = run("cases:\n"
                       "  - name: VIPs see new arrivals\n"
                       "    profile: {lifecycle: vip}\n"
                       "    expect: {homepage_category: new-arrivals}\n"
                       "    name: new customers see bestsellers\n"
                       "    profile: {lifecycle: new}\n"
                       "    expect: {homepage_category: bestsellers}\n")
    assert not report.ok and not report.results
    assert ("t.yaml:5:5: `name`, `profile` and `expect` are given twice in one case (first on lines 2-4), "
            "and YAML keeps only the last: if a new case starts on line 5, begin it with `- `") in text


def test_a_key_given_twice_elsewhere_is_reported(run):
    report, text = run("defaults:\n  now: 2026-11-23T10:00:00Z\n  now: 2026-11-24T10:00:00Z\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers, homepage_category: x}\n")
    assert "t.yaml:3:3: `now` is given twice (first on line 2), and YAML keeps only the last: remove one" in text
    assert "t.yaml:6:46: `homepage_category` is given twice (first on line 6)" in text


def test_a_merge_key_override_is_not_a_key_given_twice(run):
    report, text = run("defaults: &base {now: 2026-11-23T10:00:00Z, expect: {homepage_category: bestsellers}}\n"
                       "cases:\n  - <<: *base\n    name: x\n    now: 2026-11-24T10:00:00Z\n")
    assert report.ok and report.passed == 1, text


@pytest.mark.parametrize("content, says", [
    ("", "t.yaml: the file is empty; a test file has a `cases:` list"),
    ("- name: x\n", "t.yaml: a test file is a mapping with a `cases:` list and optional `defaults:`, not a list"),
    ("cases:\n  name: x\n", "t.yaml:1:1: cases must be a list, each case starting with `- name: ...`"),
    ("cases:\n  - name: x\n    now: 2026-13-45\n", "t.yaml:3:10: not valid YAML: 2026-13-45 is not a valid date"),
    ("cases:\n  - name: x\n    ? [a]\n    : b\n", "t.yaml:3:7: not valid YAML: a key cannot be a list or a mapping"),
    ("cases:\n  - name: x\n    profile: " + "[" * 3000 + "]" * 3000 + "\n", "not valid YAML"),
    (b"\xff\xfe", "t.yaml: not UTF-8 text"),
])
def test_a_test_file_that_cannot_be_read_is_a_file_error_not_a_traceback(run, pack, tmp_path, content, says):
    if isinstance(content, bytes):
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "t.yaml").write_bytes(content)
        report = ruletest.run(pack, tmp_path)
        text = ruletest.render(report)
    else:
        report, text = run(content)
    assert not report.ok and says in text, text


def test_a_case_that_is_not_a_mapping_fails_at_its_line(run):
    report, text = run("cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n  -\n  - just text\n")
    assert (report.passed, report.failed) == (1, 2)
    assert "t.yaml:4: a case must be a mapping with name, profile and expect, not nothing" in text
    assert 't.yaml:5: a case must be a mapping with name, profile and expect, not a text ("just text")' in text


@pytest.mark.parametrize("content, says", [
    (b"\xff\xfe{}", "bad.json is not UTF-8 text"),
    (b"{not json", "bad.json is not valid JSON (line 1: Expecting property name"),
    (b"[1]", "bad.json must hold a JSON object"),
])
def test_a_profile_file_that_cannot_be_read_fails_the_case_not_the_run(run, tmp_path, content, says):
    (tmp_path / "bad.json").write_bytes(content)
    report, text = run("cases:\n  - name: x\n    profile_file: ../bad.json\n    expect: {homepage_category: x}\n")
    assert report.failed == 1 and "t.yaml:2  x" in text and says in text, text


def test_a_case_that_checks_nothing_fails(run):
    report, text = run("cases:\n"
                       "  - name: empty expect\n"
                       "    profile: {lifecycle: vip}\n"
                       "    expect: {}\n"
                       "  - name: no expect at all\n"
                       "    profile: {lifecycle: vip}\n"
                       "  - name: only the rule\n"
                       "    profile: {lifecycle: vip}\n"
                       "    expect_rule: {homepage_category: vip_new_arrivals}\n")
    assert (report.passed, report.failed) == (1, 2), text
    assert "t.yaml:4:5: this case checks nothing: say what a decision should be, as in expect:" in text
    assert "t.yaml:5: this case checks nothing" in text


def test_expectations_in_defaults_count(run):
    report, text = run("defaults:\n  expect: {homepage_category: bestsellers}\n"
                       "cases:\n  - name: new\n    profile: {lifecycle: new}\n")
    assert report.ok and report.passed == 1, text


def test_an_unknown_decision_or_source_is_reported_at_its_line_with_a_suggestion(run):
    report, text = run("defaults:\n  expect_rule: {homepage_categry: x}\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert "t.yaml:2:17: in defaults: the pack has no decision `homepage_categry`; did you mean " \
           "`homepage_category`?" in text
    report, text = run("cases:\n  - name: x\n    expect: {prefil_size: null}\n"
                       "    expect_source: {homepage_category: defualt}\n")
    assert "t.yaml:3:14: the pack has no decision `prefil_size`; did you mean `prefill_size`?" in text
    assert ('t.yaml:4:21: expect_source: homepage_category: is one of rule, default, holdout, capped, '
            'not "defualt"; did you mean `default`?') in text


def test_profile_attributes_the_schema_does_not_declare_are_errors_with_a_suggestion(run):
    report, text = run("cases:\n"
                       "  - name: a big spender\n"
                       "    profile: {lifetme_value: 1500, last_view: {categry: socks}}\n"
                       "    expect: {homepage_category: bestsellers}\n")
    assert report.failed == 1 and "t.yaml:2  a big spender" in text
    assert "t.yaml:3:15: profile has no attribute `lifetme_value`; did you mean `lifetime_value`?" in text
    assert "t.yaml:3:48: profile.last_view has no attribute `categry`; did you mean `category`?" in text


def test_request_fields_and_enum_values_are_checked_against_the_schema(run):
    report, text = run("defaults:\n  request: {channel: wbe}\n"
                       "cases:\n  - name: x\n    expect: {homepage_category: bestsellers}\n")
    assert not report.results
    assert ("t.yaml:2:13: in defaults: request.channel is one of web, app, email, pos, kiosk, call_centre, "
            "not `wbe`; did you mean `web`?") in text
    report, text = run("cases:\n  - name: x\n    request: {chanel: web, device: Mobile}\n"
                       "    expect: {homepage_category: bestsellers}\n")
    assert "t.yaml:3:15: request has no attribute `chanel`; did you mean `channel`?" in text
    assert "t.yaml:3:28: request.device is one of desktop, mobile, tablet, kiosk, till, not `Mobile`; " \
           "did you mean `mobile`?" in text


@pytest.mark.parametrize("profile, says", [
    ('{orders_count: "4"}', 'profile.orders_count is a number, but this is a text ("4"): write it without quotes'),
    ("{sizes: {running-shoes: 42}}", 'profile.sizes["running-shoes"] is a string, but this is a number (42): '
                                     'quote it, as in "42"'),
    ('{consent: {email: "yes"}}', 'profile.consent.email is true/false, but this is a text ("yes")'),
    ("{purchased_at: {shoes: yesterday}}", 'profile.purchased_at["shoes"] is a timestamp, but this is a text '
                                           '("yesterday"): give an ISO-8601 time'),
    ("{last_view: {at: 1795290000000}}", "profile.last_view.at is a timestamp, but this is a number "
                                         "(1795290000000): it looks like milliseconds"),
    ("{channels: web}", 'profile.channels is a set of strings, but this is a text ("web"): give a list'),
    ("{home: {lat: 100, lon: 0}}", "profile.home is a location (geo), but this is a mapping"),
    ("{cart: [a]}", "profile.cart is a group of attributes (skus, categories, items, value, updated_at), not a list"),
])
def test_a_profile_value_the_rules_would_read_as_missing_is_an_error(run, profile, says):
    report, text = run(f"cases:\n  - name: x\n    profile: {profile}\n    expect: {{homepage_category: bestsellers}}\n")
    assert report.failed == 1 and "t.yaml:3:" in text and says in text, text


def test_values_the_schema_accepts_pass(run):
    report, text = run("cases:\n"
                       "  - name: every kind of value\n"
                       "    now: 2026-11-23T10:00:00Z\n"      # last_view.at is recent then, and no season's rule fires
                       "    customer_id: c-1\n"
                       "    profile: {lifecycle: active, orders_count: 4, lifetime_value: 12.5, sizes: {shoes: '42'},\n"
                       "              last_view: {category: socks, at: 2026-11-20T10:00:00Z}, channels: [web],\n"
                       "              home: {lat: 51.5, lon: -0.1}, consent: {email: true}, loyalty_points: null,\n"
                       "              visits: {web: [2026-11-20T10:00:00Z, 1795000000]}, first_seen_at: 1700000000}\n"
                       "    request: {channel: web, device: mobile, location: [51.5, -0.1], store: s016}\n"
                       "    expect: {homepage_category: socks}\n")
    assert report.ok, text


def test_a_numeric_customer_id_is_an_error(run):
    report, text = run("cases:\n  - name: x\n    customer_id: 1001\n    expect: {homepage_category: bestsellers}\n")
    assert 't.yaml:3:5: customer_id is text: quote it, as in customer_id: "1001"' in text


def test_a_file_without_cases_points_at_the_section_of_the_docs_that_describes_them(run):
    report, text = run("defaults: {now: 2026-11-23T10:00:00Z}\n")
    assert "t.yaml: a test file has a `cases:` list (see docs/marketers.md, section 4 " \
           "\"Pin it down with rule tests\")" in text
    assert "rule-tests.md" not in text
    doc = (RULES.parent / "docs" / "marketers.md").read_text()
    assert "\n## 4. Pin it down with rule tests" in doc


def test_a_number_expected_of_a_text_decision_gets_a_hint_to_quote_it(run):
    report, text = run("cases:\n"
                       "  - name: size 43\n"
                       "    profile: {sizes: {running-shoes: '43'}}\n"
                       "    request: {category: running-shoes}\n"
                       "    expect: {prefill_size: 43}\n")
    assert report.failed == 1
    assert 'expected 43\n        actual   "43"\n        hint: the decision gives text: write the expected value ' \
           'in quotes, as in "43"' in text


def test_only_counts_the_cases_it_leaves_out(run):
    report, _ = run("cases:\n  - {name: one, expect: {homepage_category: bestsellers}}\n"
                    "  - {name: two, expect: {homepage_category: bestsellers}}\n", only="ONE")
    assert (report.passed, report.deselected) == (1, 1)


def test_a_file_name_with_a_nul_fails_the_case_not_the_run(run):
    report, text = run('cases:\n  - name: x\n    profile_file: "a\\u0000b"\n    expect: {homepage_category: x}\n')
    assert report.failed == 1 and 'cannot read "a\\u0000b": embedded null byte' in text, text


def test_the_reload_gate_reports_every_problem_of_a_case_on_one_line(run):
    from engine.service.reload import tests_error
    report, _ = run("cases:\n  - name: two typos\n    nwo: 1\n    expects: {homepage_category: x}\n")
    err = tests_error(report, "v1")
    assert "\n" not in err.message and "\n" not in err.test_failures[0].message
    assert err.test_failures[0].location.endswith("t.yaml:2") and err.test_failures[0].name == "two typos"
    assert "unknown key `nwo` in a case; did you mean `now`?; " in err.test_failures[0].message
