"""Golden diagnostics: tests/data/diagnostics/NAME.rules -> NAME.expected.

Each .rules file (checked with the test schema) must print exactly its
.expected text: every error and warning, sorted, with code, position, source
line, caret and help.  Rewrite the goldens after an intended change with
``pytest tests/language --update-goldens`` and review the diff.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.diagnostics import render_all
from engine.source import SourceFile
from engine.compile import compile_sources
from tests.conftest import TEST_SCHEMA

DIR = Path(__file__).parent.parent / "data" / "diagnostics"
CASES = sorted(DIR.glob("*.rules"))


def render(path: Path) -> str:
    result = compile_sources([SourceFile("schema.rules", TEST_SCHEMA), SourceFile(path.name, path.read_text())])
    return render_all(result.diagnostics) + "\n"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path, update_goldens):
    expected_path = path.with_suffix(".expected")
    got = render(path)
    if update_goldens or not expected_path.exists():
        expected_path.write_text(got)
    assert got == expected_path.read_text()
