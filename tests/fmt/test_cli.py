"""``maple fmt`` run as a user would: in place, --check, --diff, stdin, errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MESSY = 'rule r when profile.n>1 then d="a"\n'
CANONICAL = 'rule r\n  when profile.n > 1\n  then d = "a"\n'
BROKEN = 'rule a when profile.n = 1 then d = "x"\n'


def maple(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          input=stdin, cwd=cwd)


@pytest.fixture
def pack(tmp_path) -> Path:
    (tmp_path / "a.rules").write_text(MESSY)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.rules").write_text(CANONICAL)
    (tmp_path / "notes.txt").write_text("not a rule file = 1")
    return tmp_path


def test_fmt_rewrites_what_needs_it_and_says_so(pack):
    before = (pack / "nested" / "b.rules").stat().st_mtime_ns
    r = maple("fmt", str(pack))
    assert r.returncode == 0, r.stderr
    assert (pack / "a.rules").read_text() == CANONICAL
    assert (pack / "nested" / "b.rules").stat().st_mtime_ns == before, "a formatted file is not rewritten"
    assert (pack / "notes.txt").read_text() == "not a rule file = 1"
    assert "reformatted" in r.stderr and "a.rules" in r.stderr
    assert "1 file reformatted, 1 already formatted" in r.stderr


def test_check_writes_nothing_and_exits_1_when_a_file_would_change(pack):
    r = maple("fmt", "--check", str(pack))
    assert r.returncode == 1
    assert "would reformat" in r.stderr and "a.rules" in r.stderr
    assert (pack / "a.rules").read_text() == MESSY
    assert maple("fmt", "--check", str(pack / "nested")).returncode == 0


def test_diff_prints_a_unified_diff_and_writes_nothing(pack):
    r = maple("fmt", "--diff", str(pack / "a.rules"))
    assert r.returncode == 0
    assert r.stdout.startswith("--- ") and "+++ " in r.stdout
    assert '-rule r when profile.n>1 then d="a"' in r.stdout and "+  when profile.n > 1" in r.stdout
    assert (pack / "a.rules").read_text() == MESSY
    r = maple("fmt", "--check", "--diff", str(pack / "a.rules"))
    assert r.returncode == 1 and "+++ " in r.stdout


def test_syntax_errors_are_reported_like_check_and_the_file_is_left_alone(pack):
    (pack / "bad.rules").write_text(BROKEN)
    r = maple("fmt", str(pack))
    assert r.returncode == 1
    assert (pack / "bad.rules").read_text() == BROKEN
    assert (pack / "a.rules").read_text() == CANONICAL, "the other files are still formatted"
    error = next(line for line in r.stderr.splitlines() if "error[" in line)
    check = maple("check", str(pack / "bad.rules"))
    assert error in check.stderr
    assert "bad.rules:1:23: error[E106]" in error
    assert "has syntax errors; not formatted" in r.stderr


def test_stdin_to_stdout(pack):
    r = maple("fmt", "-", stdin=MESSY)
    assert r.returncode == 0 and r.stdout == CANONICAL and r.stderr == ""
    r = maple("fmt", "--check", "-", stdin=CANONICAL)
    assert r.returncode == 0 and r.stdout == ""
    r = maple("fmt", "-", stdin=BROKEN)
    assert r.returncode == 1 and r.stdout == "" and "error[E106]" in r.stderr


def test_a_missing_path_is_an_error(tmp_path):
    r = maple("fmt", str(tmp_path / "nowhere"))
    assert r.returncode == 1
    assert "nowhere" in r.stderr


def test_the_mode_of_a_rewritten_file_is_kept(pack):
    (pack / "a.rules").chmod(0o640)
    assert maple("fmt", str(pack / "a.rules")).returncode == 0
    assert (pack / "a.rules").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in pack.iterdir() if p.name.startswith(".")] == [], "no temporary file left behind"
