"""docs/marketers.md stays true: its rule, its tests and its outputs are real.

The tutorial's blocks are tagged with an HTML comment before them
(``<!-- tutorial: rules/socks.rules -->``, ``<!-- tutorial: output ... -->``).
The rule and its YAML tests are added to a copy of the reference pack, the
commands are run as the page shows them, and each output block must be what
they print (exactly, or line by line in order where the page elides lines
with ``…``).  Section 6 (going live) needs a running server; the test checks
that every command line it shows parses and every admin call it names exists.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.syntax.fmt import format_text

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "marketers.md"
_TAG = re.compile(r"<!--\s*tutorial:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```(\w*)")


def tagged_blocks() -> dict[str, str]:
    """Tag -> the text of the fenced block right after it."""
    blocks, tag, body, inside = {}, None, [], False
    for line in DOC.read_text(encoding="utf-8").split("\n"):
        if inside:
            if line.startswith("```"):
                if tag is not None:
                    blocks[tag] = "\n".join(body) + "\n"
                tag, body, inside = None, [], False
            else:
                body.append(line)
        elif _FENCE.match(line):
            inside = True
        elif _TAG.search(line):
            tag = _TAG.search(line).group(1)
    return blocks


BLOCKS = tagged_blocks()


def maple(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout + r.stderr


def in_order(shown: str, actual: str) -> None:
    """Every line shown (but the elisions) appears in the actual output, in order."""
    lines = actual.split("\n")
    at = 0
    for want in shown.rstrip("\n").split("\n"):
        if want.strip() in ("…", ""):
            continue
        want = want.removeprefix("$ ")
        found = next((i for i in range(at, len(lines)) if lines[i].rstrip() == want.rstrip()), None)
        assert found is not None, f"the page shows a line the command does not print:\n{want}\n---\n{actual}"
        at = found + 1


@pytest.fixture
def pack(tmp_path) -> Path:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "socks.rules").write_text(BLOCKS["rules/socks.rules"])
    (tmp_path / "rules" / "tests" / "socks.yaml").write_text(BLOCKS["rules/tests/socks.yaml"])
    return tmp_path


def test_the_page_has_every_tagged_block():
    assert set(BLOCKS) >= {"rules/socks.rules", "typo rules/socks.rules", "output maple check rules/",
                           "output maple decide runner", "rules/tests/socks.yaml", "output maple test rules/",
                           "fmt before", "fmt after"}


def test_the_rule_checks_clean_and_its_tests_pass(pack):
    code, out = maple("check", "rules/", cwd=pack)
    shown = re.search(r"\$ maple check rules/\n(rules/: ok .*\n)", DOC.read_text()).group(1)
    assert code == 0 and out == shown, out
    assert re.fullmatch(r"rules/: ok \(7 files; store data in rules/data: \d+ stores, \d+ skus, \d+ stock rows\)\n",
                        shown)
    code, out = maple("test", "rules/", cwd=pack)
    assert code == 0, out
    assert re.fullmatch(r"\$ maple test rules/\n\d+ passed, 0 failed\n", BLOCKS["output maple test rules/"])
    assert re.search(r"^\d+ passed, 0 failed$", out, re.M)
    code, out = maple("test", "rules/", "-k", "socks", "-v", cwd=pack)
    assert "2 passed, 0 failed" in out


def test_the_typo_gets_exactly_the_error_shown(pack):
    (pack / "rules" / "socks.rules").write_text(BLOCKS["typo rules/socks.rules"])
    code, out = maple("check", "rules/", cwd=pack)
    assert code == 1
    assert out == BLOCKS["output maple check rules/"]


def test_the_explanation_shown_is_what_decide_prints(pack):
    command = re.search(r"```sh\nmaple decide (.*?)\n```", DOC.read_text(), re.S).group(1)
    args = command.replace("\\\n", " ").split()
    code, out = maple("decide", *args, cwd=pack)
    assert code == 0, out
    in_order(BLOCKS["output maple decide runner"], out)
    assert "matched, but an earlier rule won" in DOC.read_text()


def test_the_failure_shown_is_what_test_prints(pack):
    tests = pack / "rules" / "tests" / "socks.yaml"
    tests.write_text(tests.read_text().replace("expect: {homepage_category: jackets}",
                                               "expect: {homepage_category: socks}"))
    code, out = maple("test", "rules/", "-k", "socks", cwd=pack)
    assert code == 1
    shown = DOC.read_text().split("Had the last case expected\nsocks:\n\n```text\n", 1)[1].split("```", 1)[0]
    in_order(shown, out)


def test_the_formatting_example_is_what_fmt_does():
    assert format_text(BLOCKS["fmt before"]) == BLOCKS["fmt after"]
    assert BLOCKS["fmt after"] in BLOCKS["rules/socks.rules"]


def test_the_live_section_names_commands_that_exist():
    text = DOC.read_text()
    marker = re.search(r"<!-- live-commands: (.*?) -->", text).group(1)
    names = [n.strip() for n in marker.split(",")]
    assert names == ["maple serve", "ReloadRules", "GetRuleset", "maple replay", "maple rollback"]
    live = text.split("## 6. Going live", 1)[1]
    assert all(f"`{name}" in live for name in names)
    assert "only when the pack has **no errors and its rule tests\npass**" in live
    from engine.cli import build_parser
    from engine.server.pb.maple.v1 import admin_pb2
    rpcs = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name
    assert {"ReloadRules", "GetRuleset", "RollbackRules"} <= set(rpcs)
    parser = build_parser()
    for line in re.findall(r"^maple (?:replay|rollback|serve) [^#\n]*", live, re.M):
        parser.parse_args(line.split()[1:])          # every option the section shows exists
