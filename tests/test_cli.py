"""The maple command line, run as a user would (a real subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_SCHEMA

THREE_ERRORS = """decision homepage: string pick first default "home"
rule a when profile.lifecylce == "x" then homepage = "a"
rule b when profile.n > "ten" then homepage = "b"
rule c when profile.n > 1 then homepage = "c" because missing_quote
"""


def maple(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def pack(tmp_path):
    def write(text: str, schema: str = TEST_SCHEMA) -> Path:
        (tmp_path / "schema.rules").write_text(schema)
        (tmp_path / "rules.rules").write_text(text)
        return tmp_path
    return write


def test_check_clean_pack_exits_0(pack):
    d = pack('decision d: string default "x"\nrule r when profile.n > 1 then d = "y"\n')
    r = maple("check", str(d))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stderr


def test_check_reports_three_independent_errors_with_positions_and_exits_1(pack):
    d = pack(THREE_ERRORS)
    r = maple("check", str(d))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if ": error[" in l]
    assert len(lines) == 3, r.stderr
    assert lines[0].endswith("rules.rules:2:21: error[E202]: `profile` has no attribute `lifecylce`")
    assert "rules.rules:3:13: error[E301]" in lines[1]
    assert "rules.rules:4:55: error[E106]: because takes a quoted text" in lines[2]
    assert "^" in r.stderr and "3 errors" in r.stderr


def test_check_json_format_for_tools(pack):
    d = pack(THREE_ERRORS)
    r = maple("check", str(d), "--format", "json")
    assert r.returncode == 1
    diags = json.loads(r.stderr)
    assert [x["code"] for x in diags] == ["E202", "E301", "E106"]
    assert {"path", "line", "col", "end_line", "end_col", "message", "severity"} <= set(diags[0])


def test_check_missing_directory(tmp_path):
    r = maple("check", str(tmp_path / "nope"))
    assert r.returncode == 1 and "E002" in r.stderr


def test_check_empty_directory(tmp_path):
    r = maple("check", str(tmp_path))
    assert r.returncode == 1 and "E001" in r.stderr


CLEAN = 'decision d: string default "x"\nrule r when profile.n > 1 then d = "y"\n'


def bad_data(directory: Path) -> Path:
    """The test data with store s003's lat out of range and one quantity not a number."""
    from tests.inventory.conftest import INVENTORY, STORES, write_data
    directory.mkdir(exist_ok=True)
    stores = STORES.replace("s003,Borough,3 King Street,London,51.5,", "s003,Borough,3 King Street,London,591.56,")
    inventory = INVENTORY.replace("s001,TEE-001,M,3", "s001,TEE-001,M,two")
    return write_data(directory, stores=stores, inventory=inventory)


def test_check_checks_the_store_data_beside_the_rules(pack):
    """maple check finds RULES/data as maple serve does; a row the server
    would skip is an error (exit 1), named file:line:col with its column and
    text, and the summary says what the server would leave out."""
    from tests.inventory.conftest import write_data
    d = pack(CLEAN)
    (d / "data").mkdir()
    write_data(d / "data")
    r = maple("check", str(d))
    assert r.returncode == 0, r.stderr
    assert f"{d}: ok (2 files; store data in {d / 'data'}: 5 stores, 3 skus, 7 stock rows)" in r.stderr
    bad_data(d / "data")
    r = maple("check", str(d))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if ": error[" in l]
    assert lines == [
        f"{d / 'data' / 'stores.csv'}:4:35: error[D105]: column `lat`: `591.56`: must be between -90 and 90",
        f"{d / 'data' / 'inventory.csv'}:4:1: error[D108]: column `store`: store s003 was skipped (its row "
        f"{d / 'data' / 'stores.csv'}:4 has errors), so its 2 stock rows are skipped too",
        f"{d / 'data' / 'inventory.csv'}:7:16: error[D104]: column `quantity`: `two`: a quantity is a whole "
        f"number of items, e.g. 3"], r.stderr
    assert "^~~~~~" in r.stderr and "3 errors, 0 warnings" in r.stderr and ": ok" not in r.stderr
    assert (f"{d / 'data'}: skipped 2 rows with errors (stores.csv: 1, inventory.csv: 1) and 2 stock rows that "
            f"refer to a skipped store or sku; the server skips them and loads the rest") in r.stderr
    assert maple("check", str(d), "--data", "none").returncode == 0      # the rules only


def test_check_data_elsewhere_json_and_unusable_files(pack, tmp_path):
    d = pack(CLEAN)
    elsewhere = bad_data(tmp_path / "store-data")
    r = maple("check", str(d), "--data", str(elsewhere), "--format", "json")
    assert r.returncode == 1
    diags = json.loads(r.stderr)
    assert [(x["code"], x["line"], x.get("column")) for x in diags] == [
        ("D105", 4, "lat"), ("D108", 4, "store"), ("D104", 7, "quantity")]
    assert diags[0]["path"] == str(elsewhere / "stores.csv") and diags[0]["severity"] == "error"
    (elsewhere / "stores.csv").write_text("id,name\ns1,x\n")
    r = maple("check", str(d), "--data", str(elsewhere))
    assert r.returncode == 1 and "stores.csv:1:1: error[D003]: the header lacks" in r.stderr
    assert "the store data cannot be used" in r.stderr


def test_decide_prints_json(pack, tmp_path):
    d = pack('decision d: string default "x"\nrule r when profile.n > 1 then d = "big" because "n is big"\n')
    prof = tmp_path / "p.json"
    prof.write_text('{"n": 5}')
    r = maple("decide", "--rules", str(d), "--profile", str(prof), "--now", "2026-01-01T00:00:00Z")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decisions"]["d"]["value"] == "big"
    assert out["decisions"]["d"]["reasons"][0]["because"] == "n is big"
    assert out["decisions"]["d"]["reasons"][0]["location"].endswith("rules.rules:2:6")


def test_decide_explain_names_the_failed_condition(pack, tmp_path):
    d = pack('decision d: string default "x"\nrule r when profile.n > 1 then d = "big"\n')
    prof = tmp_path / "p.json"
    prof.write_text('{"n": 0}')
    r = maple("decide", "--rules", str(d), "--profile", str(prof), "--explain")
    assert r.returncode == 0, r.stderr
    assert "false: profile.n > 1" in r.stdout and "profile.n = 0" in r.stdout and "rules.rules:2:13" in r.stdout


def test_decide_explain_shows_whole_numbers_whole(pack, tmp_path):
    """The language's numbers are floats; a person reading the text reads
    ``"max_stores": 5``, not ``5.0``, in the decided value as beside a
    failed condition (a fraction stays as it is)."""
    d = pack('decision d pick first {\n  n: number = 1\n  r: distance = 10 km\n}\n'
             'rule r when profile.n > 1 then d.n = profile.n, d.r = 2.5 km\n')
    prof = tmp_path / "p.json"
    prof.write_text('{"n": 5}')
    r = maple("decide", "--rules", str(d), "--profile", str(prof), "--explain")
    assert r.returncode == 0, r.stderr
    assert 'd = {"n": 5, "r": 2.5}' in r.stdout, r.stdout
    prof.write_text('{"n": 0}')
    r = maple("decide", "--rules", str(d), "--profile", str(prof), "--explain")
    assert "profile.n = 0]" in r.stdout and "profile.n = 0.0" not in r.stdout, r.stdout


def test_decide_bad_profile_file(pack, tmp_path):
    d = pack('decision d: string default "x"\n')
    prof = tmp_path / "p.json"
    prof.write_text("{not json")
    r = maple("decide", "--rules", str(d), "--profile", str(prof))
    assert r.returncode != 0 and "not valid JSON" in r.stderr


@pytest.mark.parametrize("now, says", [
    ("1795290000000", "looks like milliseconds (2026-11-21T19:40:00Z); give seconds since the epoch (1795290000)"),
    ("nan", "is not a number of seconds"),
    ("99999999999999999", "is out of range"),
    ("0001-01-01T00:00:00+05:00", "is out of range"),
])
def test_decide_now_out_of_range_is_refused_not_a_traceback(pack, now, says):
    d = pack('decision d: string default "x"\nrule r when profile.n > 1 then d = "big"\n')
    r = maple("decide", "--rules", str(d), "--now", now, "--explain")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"argument --now: '{now}' {says}" in r.stderr


def test_test_k_matching_no_case_says_so(pack):
    d = pack('decision d: string default "x"\n')
    (d / "tests").mkdir()
    (d / "tests" / "t.yaml").write_text("cases:\n  - name: the default\n    expect: {d: x}\n")
    r = maple("test", f"{d}/", "-k", "zzz")
    assert r.returncode == 1
    assert f"maple: no rule test name contains 'zzz' (1 case in {d}/tests/*.yaml;" in r.stderr
    assert "//" not in r.stderr
    r = maple("test", str(d), "-k", "DEFAULT")
    assert r.returncode == 0 and "1 passed, 0 failed" in r.stdout


def test_test_without_test_files_says_where_it_looked(pack):
    d = pack('decision d: string default "x"\n')
    r = maple("test", f"{d}/")
    assert r.returncode == 1 and f"maple: no rule tests found in {d}/tests/*.yaml" in r.stderr


def test_compile_dis(pack):
    d = pack('decision d: string\nrule r when profile.s == "a" then d = "b"\n')
    r = maple("compile", "--dis", str(d))
    assert r.returncode == 0
    assert "; maple IR format 1" in r.stdout and "eq_str" in r.stdout


def test_serve_help_shows_each_setting_with_its_default_and_variable():
    from engine.server.config import OPTIONS, env_name
    r = maple("serve", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split("options:", 1)[1].split())       # argparse wraps the lines
    for field, flag, _type, _help in OPTIONS:
        assert f"[{env_name(field)}]" in text, flag
        if field != "rules":
            assert "(default:" in text.split(flag + " ", 1)[1].split(" --", 1)[0], f"{flag}: no default shown"
    for shown in ("(default: 0.0.0.0:50051)", "(default: 127.0.0.1:50052)", "(default: none) [MAPLE_STORE]",
                  "(default: off) [MAPLE_METRICS_PORT]", "(default: 1) [MAPLE_PROFILE_CACHE_TTL]",
                  "(default: 4,194,304)", "(default: RULES/data)"):
        assert shown in text, shown

