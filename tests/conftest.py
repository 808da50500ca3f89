"""Shared fixtures: compile rule text in memory, run it on every evaluator."""
from __future__ import annotations

import pytest

from engine.diagnostics import Diagnostics
from engine.compile import compile_sources
from engine.eval.pykernel import PyKernel
from engine.eval.reference import Reference
from engine.source import SourceFile

#: A schema with one attribute of every kind; tests and property tests use it.
TEST_SCHEMA = """
schema profile {
  customer_id: string
  s: string
  e: enum(a, b, c)
  n: number
  m: number
  b: bool
  t: timestamp
  d: duration
  g: geo
  tags: set<string>
  sizes: map<string>
  counts: map<number>
  flags: map<bool>
  seen: map<timestamp>
  visits: timeline
  offer_impressions: map<timeline>
  rec: { x: number, y: string }
}
schema request {
  channel: enum(web, app, email, pos)
  category: string
  location: geo
}
"""


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite golden files (tests/data/**) from the current output")


@pytest.fixture
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens")


def compile_text(*texts: str, schema: str = TEST_SCHEMA):
    """Compile rule text (plus the test schema); returns the CompileResult."""
    sources = [SourceFile("schema.rules", schema)] if schema else []
    sources += [SourceFile(f"pack{i}.rules", t) for i, t in enumerate(texts)]
    return compile_sources(sources, Diagnostics())


def compile_ok(*texts: str, schema: str = TEST_SCHEMA):
    result = compile_text(*texts, schema=schema)
    from engine.diagnostics import render_all
    assert result.ok, render_all(result.diagnostics.errors)
    return result


def evaluators(result):
    """Every way to evaluate a compiled pack, by name; all must agree."""
    from engine.eval._kernel import Kernel
    return {
        "compiled": Kernel(result.program),
        "compiled-no-index": Kernel(result.program, use_index=False),
        "python": PyKernel(result.program),
        "python-no-index": PyKernel(result.program, use_index=False),
        "reference": Reference(result.checked),
    }


@pytest.fixture(params=["compiled", "python", "reference"])
def evaluator_kind(request):
    return request.param
