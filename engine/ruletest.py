"""Rule tests: YAML cases beside the rules, run with ``maple test RULES``.

A test file is any ``*.yaml`` file under ``RULES/tests/``::

    defaults:                       # merged into every case (optional)
      now: 2026-11-23T10:00:00Z
      request: {channel: web}
    cases:
      - name: a pair of shoes bought at the till prefills the web shoe page
        profile: {sizes: {running-shoes: "42"}}         # or profile_file: ../data/...json
        request: {category: trail-shoes}
        expect:
          prefill_size: "42"                            # a value decision's value (null: none)
          next_best_offer: double_points                # the best offer's id ([] for none)
          nearby_stores: {radius: 25}                   # some fields of a record decision
        expect_rule:
          prefill_size: shoe_family_from_running        # the rule (or offer) that decided
        expect_source:
          next_best_offer: holdout                      # rule, default, holdout or capped

Each case reports pass or fail; a failure shows expected and actual values
and the explanation of the decision.  ``run`` is also the gate live reload
uses: a pack whose tests fail is not swapped in.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .eval.explain import render_text
from .eval.values import time_problem

CASE_KEYS = {"name", "profile", "profile_file", "request", "request_file", "now", "customer_id", "expect",
             "expect_rule", "expect_source"}


class TestFileError(Exception):
    """A test file that cannot be read; names the file and, when known, the line."""


@dataclass
class Mismatch:
    decision: str
    what: str            # "value", "rule" or "source"
    expected: Any
    actual: Any


@dataclass
class CaseResult:
    file: str
    line: int
    name: str
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None
    explanation: str = ""

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.error is None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Report:
    results: list[CaseResult]
    errors: list[str]            # files that could not be read

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return not self.errors and self.failed == 0


# ---------------------------------------------------------------- loading
class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A YAML loader that remembers the line of every mapping (libyaml's
    when PyYAML has it: the reference pack's tests load ~8x faster, which
    is most of a live reload's CPU)."""


def _construct_mapping(loader, node, deep=False):
    mapping = loader.construct_mapping(node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _clean(value):
    """Strip line markers; YAML dates and times become ISO text."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _time(value) -> tuple[float | None, str | None]:
    """A test's ``now`` in seconds since the epoch, or what is wrong with it."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, (datetime, date)):
        value = _clean(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            seconds = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
        except (ValueError, OverflowError):
            pass
    if seconds is None:
        return None, (f"now must be an ISO-8601 time (such as 2026-11-23T10:00:00Z) or seconds since "
                      f"the epoch, not {_fmt(_clean(value))}")
    problem = time_problem(seconds)
    return (None, f"now: {_fmt(_clean(value))} {problem}") if problem else (seconds, None)


def _json_file(base: Path, rel, where: str) -> dict:
    path = (base / str(rel)).resolve()
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise TestFileError(f"{where}: cannot read {rel}: {err.strerror}")
    except json.JSONDecodeError as err:
        raise TestFileError(f"{where}: {rel} is not valid JSON (line {err.lineno}: {err.msg})")
    if not isinstance(data, dict):
        raise TestFileError(f"{where}: {rel} must hold a JSON object")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _shape_problems(raw: dict, base: Path) -> list[str]:
    """What is wrong with the form of a case's (or the defaults') inputs:
    a profile or request that is not a mapping, a file name that is not text."""
    problems = []
    for key, example in (("profile", "{lifecycle: vip}"), ("request", "{channel: web}")):
        value = raw.get(key)
        if value is None or isinstance(value, dict):
            continue
        what = {str: "a text", list: "a list"}.get(type(value), type(value).__name__)
        problem = f"{key} must be a mapping such as {example}, not {what} ({_fmt(_clean(value))})"
        if isinstance(value, str) and value.endswith(".json"):
            problem += (f"; to read the {key} from a JSON file, write {key}_file: {_relative(value, base)} "
                        f"(a path from the test file's folder)")
        problems.append(problem)
    for key in ("profile_file", "request_file"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{key} must be the path of a JSON file (from the test file's folder), "
                            f"not {_fmt(_clean(raw[key]))}")
    return problems


def _relative(name: str, base: Path) -> str:
    """``name`` as a path from ``base``: a path written from the current
    directory (rules/data/x.json) becomes ../data/x.json for rules/tests."""
    import os
    if not (base / name).exists() and Path(name).exists():
        return os.path.relpath(Path(name).resolve(), base.resolve())
    return name


def load_file(path: Path, shown: str) -> list[dict]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise TestFileError(f"{where}: not valid YAML: {getattr(err, 'problem', err)}")
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise TestFileError(f"{shown}: a test file has a `cases:` list (see docs/rule-tests.md)")
    raw_defaults = doc.get("defaults") or {}
    if not isinstance(raw_defaults, dict):
        raise TestFileError(f"{shown}: defaults must be a mapping (now, customer_id, profile, request, ...)")
    problems = _shape_problems(raw_defaults, base=path.parent)
    if "now" in raw_defaults:
        raw_defaults = dict(raw_defaults)
        raw_defaults["now"], problem = _time(raw_defaults["now"])
        problems += [problem] if problem else []
    if problems:
        raise TestFileError(f"{shown}:{raw_defaults.get('__line__', 0)}: in defaults: {problems[0]}")
    defaults = _clean(raw_defaults)
    cases = []
    for i, raw in enumerate(doc["cases"]):
        if not isinstance(raw, dict):
            raise TestFileError(f"{shown}: case {i + 1} must be a mapping with name, profile and expect")
        line = raw.get("__line__", 0)
        where = f"{shown}:{line}"
        unknown = set(raw) - CASE_KEYS - {"__line__"}
        if unknown:
            raise TestFileError(f"{where}: unknown key {sorted(unknown)[0]!r} (keys: {', '.join(sorted(CASE_KEYS))})")
        problems = _shape_problems(raw, base=path.parent)
        if "now" in raw:
            raw = dict(raw)
            raw["now"], problem = _time(raw["now"])
            problems += [problem] if problem else []
        problems = [f"{where}: {problem}" for problem in problems]
        case = _merge(defaults, _clean(raw))
        case["__where__"] = where
        case["__line__"] = line
        case["__problems__"] = problems
        case.setdefault("name", f"case {i + 1}")
        for key in ("expect", "expect_rule", "expect_source"):
            if key in case and not isinstance(case[key], dict):
                raise TestFileError(f"{where}: {key} must map decision names to values")
        cases.append(case)
    return cases


# ---------------------------------------------------------------- running
def _actual_value(outcome):
    if outcome.kind == "offer":
        return [c.id for c in outcome.value]
    return outcome.value


def _compare(decision: str, expected, outcome) -> Mismatch | None:
    actual = _actual_value(outcome)
    if outcome.kind == "offer":
        exp = expected if isinstance(expected, list) else ([] if expected is None else [expected])
        got = actual[:len(exp)] if exp else actual
        return None if got == exp else Mismatch(decision, "value", exp, actual)
    if outcome.kind == "record":
        if not isinstance(expected, dict):
            return Mismatch(decision, "value", expected, actual)
        diff = {k: v for k, v in expected.items() if not _equal(v, actual.get(k))}
        return Mismatch(decision, "value", expected, {k: actual.get(k) for k in expected}) if diff else None
    return None if _equal(expected, actual) else Mismatch(decision, "value", expected, actual)


def _equal(expected, actual) -> bool:
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) \
            and not isinstance(expected, bool) and not isinstance(actual, bool):
        return abs(expected - actual) <= 1e-9 * max(1.0, abs(expected))
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_equal(a, b) for a, b in zip(expected, actual))
    return expected == actual


def run_case(ruleset, case: dict, base: Path) -> CaseResult:
    where = case["__where__"]
    result = CaseResult(where.rsplit(":", 1)[0], case["__line__"], str(case["name"]))
    if case.get("__problems__"):
        result.error = "\n".join(case["__problems__"])
        return result
    try:
        profile = _json_file(base, case["profile_file"], where) if "profile_file" in case else {}
        profile = _merge(profile, case.get("profile") or {})
        request = _json_file(base, case["request_file"], where) if "request_file" in case else {}
        request = _merge(request, case.get("request") or {})
        now = case.get("now")
        names = set(case.get("expect", {})) | set(case.get("expect_rule", {})) | set(case.get("expect_source", {}))
        unknown = sorted(n for n in names if n not in ruleset.decision_names)
        if unknown:
            raise TestFileError(f"{where}: the pack has no decision {unknown[0]!r} "
                                f"(it decides: {', '.join(ruleset.decision_names)})")
        out = ruleset.decide(profile, request, now, customer_id=case.get("customer_id"))
    except TestFileError as err:
        result.error = str(err)
        return result
    for name, expected in (case.get("expect") or {}).items():
        m = _compare(name, expected, out[name])
        if m:
            result.mismatches.append(m)
    for name, expected in (case.get("expect_rule") or {}).items():
        actual = out[name].reason.name if out[name].reason else None
        if actual != expected:
            result.mismatches.append(Mismatch(name, "rule", expected, actual))
    for name, expected in (case.get("expect_source") or {}).items():
        if out[name].source != expected:
            result.mismatches.append(Mismatch(name, "source", expected, out[name].source))
    if result.mismatches:
        failing = sorted({m.decision for m in result.mismatches})
        explained = ruleset.decide(profile, request, out.now, customer_id=case.get("customer_id"),
                                   decisions=failing, explain=True)
        result.explanation = render_text(explained)
    return result


def find_files(rules_dir: Path) -> list[Path]:
    tests = rules_dir / "tests"
    return sorted(p for p in tests.rglob("*.yaml") if p.is_file()) if tests.is_dir() else []


def run(ruleset, rules_dir, only: str | None = None) -> Report:
    rules_dir = Path(rules_dir)
    results, errors = [], []
    for path in find_files(rules_dir):
        shown = _display(path)
        try:
            cases = load_file(path, shown)
        except TestFileError as err:
            errors.append(str(err))
            continue
        for case in cases:
            if only is None or only.lower() in str(case["name"]).lower():
                results.append(run_case(ruleset, case, path.parent))
    return Report(results, errors)


def _display(p: Path) -> str:
    import os
    rel = os.path.relpath(p)
    return str(p) if rel.startswith("..") else rel


# ---------------------------------------------------------------- output
def _fmt(v) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


def render(report: Report, verbose: bool = False) -> str:
    lines = []
    for err in report.errors:
        lines.append(f"ERROR {err}")
    for r in report.results:
        if r.passed:
            if verbose:
                lines.append(f"ok    {r.where}  {r.name}")
            continue
        lines.append(f"FAIL  {r.where}  {r.name}")
        if r.error:
            lines += [f"      {line}" for line in r.error.splitlines()]
        for m in r.mismatches:
            label = {"value": "", "rule": " (deciding rule)", "source": " (source)"}[m.what]
            lines.append(f"      {m.decision}{label}:")
            lines.append(f"        expected {_fmt(m.expected)}")
            lines.append(f"        actual   {_fmt(m.actual)}")
        if r.explanation:
            lines.append("      explanation:")
            lines += ["        " + line for line in r.explanation.rstrip().splitlines()]
        lines.append("")
    lines.append(f"{report.passed} passed, {report.failed} failed"
                 + (f", {len(report.errors)} file error{'s' * (len(report.errors) != 1)}" if report.errors else ""))
    return "\n".join(lines)
