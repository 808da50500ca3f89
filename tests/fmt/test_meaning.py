"""maple fmt never changes what a pack means.

For every .rules file in the repository, and for random packs written with
random spacing, line breaks and comments (the property test's generator),
the formatted text compiles to the same IR (the disassembly, positions
aside), parses to the same AST, keeps every comment, and formats to itself.
The reference pack is kept in canonical form.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.compile import compile_sources
from engine.diagnostics import Diagnostics
from engine.ir.dis import disassemble
from engine.source import SourceFile
from engine.syntax import parse
from engine.syntax.fmt import FormatError, ast_shape, comments_of, format_text
from engine.syntax.lexer import MASTER
from tests.conftest import TEST_SCHEMA
from tests.eval.test_property import packs

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
# the repository's own: not build output, nor hidden directories (.venv, and .maple, where a
# server that ran here keeps copies of the versions it served)
ALL_RULE_FILES = sorted(p for p in ROOT.rglob("*.rules") if "build" not in p.parts
                        and not any(part.startswith(".") for part in p.relative_to(ROOT).parts[:-1]))
_POSITION = re.compile(r"\S+\.rules:\d+:\d+")


def dis(sources: list[SourceFile]) -> str:
    result = compile_sources(sources, Diagnostics())
    assert result.ok, [d.message for d in result.diagnostics.errors]
    return _POSITION.sub("<pos>", disassemble(result.program))


def formatted(sources: list[SourceFile]) -> list[SourceFile]:
    return [SourceFile(s.path, format_text(s.text, s.path)) for s in sources]


def shape(text: str) -> list:
    diags = Diagnostics()
    module = parse(SourceFile("x.rules", text), diags)
    assert not diags.has_errors
    return ast_shape(module)


def test_every_rules_file_in_the_repository_is_covered():
    names = {p.relative_to(ROOT).as_posix() for p in ALL_RULE_FILES}
    assert {"rules/offers.rules", "tests/data/diagnostics/types.rules", "tests/data/fmt/comments.rules"} <= names


@pytest.mark.parametrize("path", ALL_RULE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_rules_file_keeps_its_meaning_and_comments(path):
    text = path.read_text()
    try:
        out = format_text(text, str(path))
    except FormatError:
        golden = path.with_suffix(".expected")
        assert path.parent.name == "diagnostics" and golden.exists() and re.search(
            r"error\[E1\d\d\]", golden.read_text()), "only the syntax-error goldens may fail to parse"
        return
    assert shape(out) == shape(text)
    assert comments_of(out) == comments_of(text)
    assert format_text(out) == out


def test_the_reference_pack_compiles_to_the_same_ir():
    sources = [SourceFile(p.name, p.read_text()) for p in sorted(RULES.glob("*.rules"))]
    messy = [SourceFile(s.path, _respace(s.text)) for s in sources]
    assert dis(formatted(sources)) == dis(sources) == dis(formatted(messy))


def test_the_profile_tests_pack_compiles_to_the_same_ir():
    schema = SourceFile("schema.rules", (RULES / "schema.rules").read_text())
    pack = SourceFile("pack.rules", (ROOT / "tests/profiles/data/pack.rules").read_text())
    assert dis(formatted([schema, pack])) == dis([schema, pack])


@pytest.mark.parametrize("path", sorted((ROOT / "tests/data/diagnostics").glob("*.rules")), ids=lambda p: p.stem)
def test_invalid_packs_keep_their_diagnostics(path):
    """Packs that do not compile cannot be compared by IR: the same errors
    and warnings, positions aside, show that they still mean the same."""
    def messages(text: str) -> list[tuple[str, str]]:
        result = compile_sources([SourceFile("schema.rules", TEST_SCHEMA), SourceFile("t.rules", text)])
        return sorted((d.code, _POSITION.sub("<pos>", d.message)) for d in result.diagnostics)
    text = path.read_text()
    try:
        out = format_text(text)
    except FormatError:
        return
    assert messages(out) == messages(text)


def test_the_reference_pack_is_in_canonical_form():
    for path in sorted(RULES.rglob("*.rules")):
        text = path.read_text()
        assert format_text(text, str(path)) == text, f"run: maple fmt {path.relative_to(ROOT)}"


# ---------------------------------------------------------------- random packs, written carelessly
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", "\n", "\n  ", "\n\n", "\n\n\n    ", " \n"]
COMMENTS = [" # trailing {n}\n", "\n# own line {n}\n", "\n\n# paragraph {n}\n\n", "  #{n}\n  "]


def _respace(text: str, rnd=None, comments: bool = False) -> str:
    """The same tokens, joined by other whitespace (and comments)."""
    rnd = rnd or random.Random(7)
    tokens = [m.group() for m in MASTER.finditer(text) if m.lastgroup != "WS"]
    out, n = [], 0
    for tok in tokens:
        if out and out[-1].startswith("#"):
            out.append("\n" + rnd.choice(SEPARATORS).lstrip(" \t\n"))
        elif out:
            if comments and rnd.random() < 0.15:
                n += 1
                out.append(rnd.choice(COMMENTS).format(n=n))
            else:
                out.append(rnd.choice(SEPARATORS))
        if re.fullmatch(r"[\d.]+[ \t]*[a-z%]+", tok):          # 14 days, 10 %
            number, unit = re.fullmatch(r"([\d.]+)[ \t]*(.+)", tok).groups()
            tok = number + rnd.choice(["", " ", "\t", "   "]) + unit
        out.append(tok)
    return "".join(out) + "\n"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pack=packs(), seed=st.integers(0, 2 ** 32 - 1), comments=st.booleans())
def test_random_packs_written_carelessly_compile_to_the_same_ir(pack, seed, comments):
    messy = _respace(pack, random.Random(seed), comments)
    assume(shape(messy) == shape(pack))           # the spacing never changes a token, but say so
    schema = SourceFile("schema.rules", TEST_SCHEMA)
    out = format_text(messy)
    assert format_text(out) == out
    assert comments_of(out) == comments_of(messy)
    assert dis([schema, SourceFile("pack.rules", out)]) == dis([schema, SourceFile("pack.rules", pack)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_the_reference_pack_written_carelessly_formats_to_the_same_ir(seed):
    rnd = random.Random(seed)
    sources = [SourceFile(p.name, p.read_text()) for p in sorted(RULES.glob("*.rules"))]
    messy = [SourceFile(s.path, _respace(s.text, rnd, comments=True)) for s in sources]
    once = formatted(messy)
    assert [format_text(s.text) for s in once] == [s.text for s in once]
    assert dis(once) == dis(sources)
