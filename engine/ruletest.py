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

Files are read strictly (docs/marketers.md, section 4): unknown keys, keys
given twice, a case that checks nothing, unknown decisions, a ``now`` out
of range and inline profiles and requests that do not fit the pack's
schema are errors at file:line:col.  A problem with the file as a whole is
one of ``Report.errors`` (its cases do not run); a problem with one case
fails that case.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .diagnostics import did_you_mean, q
from .eval import values
from .eval.explain import render_text
from .eval.values import time_problem

TOP_KEYS = {"defaults", "cases"}
CASE_KEYS = {"name", "profile", "profile_file", "request", "request_file", "now", "customer_id", "expect",
             "expect_rule", "expect_source"}
DEFAULT_KEYS = CASE_KEYS - {"name"}
#: where rule tests are described for the people who write them
DOC = "docs/marketers.md, section 4 \"Pin it down with rule tests\""


class TestFileError(Exception):
    """A test file that cannot be read: one message per problem, each
    naming the file and, when known, the line and column."""

    def __init__(self, *messages: str):
        super().__init__("\n".join(messages))
        self.messages = list(messages)


@dataclass
class Mismatch:
    decision: str
    what: str            # "value", "rule" or "source"
    expected: Any
    actual: Any

    @property
    def hint(self) -> str | None:
        """A likely mistake in the expected value: 43 for the text "43"."""
        if self.what != "value":
            return None
        number = (int, float)
        if isinstance(self.actual, str) and isinstance(self.expected, (bool, *number)):
            text = str(self.expected).lower() if isinstance(self.expected, bool) else str(self.expected)
            return f'the decision gives text: write the expected value in quotes, as in "{text}"'
        if isinstance(self.expected, str) and isinstance(self.actual, number) and not isinstance(self.actual, bool) \
                and _is_number(self.expected):
            return "the decision gives a number: write the expected value without quotes"
        return None


@dataclass
class CaseResult:
    file: str
    line: int
    name: str
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None     # why the case could not run: one line per problem
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
    errors: list[str]            # problems of files that could not be read, one each
    deselected: int = 0          # cases whose name does not match ``only``

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
    """A YAML loader that remembers where things are (libyaml's when PyYAML
    has it: the reference pack's tests load ~8x faster, which is most of a
    live reload's CPU): every mapping its ``__line__`` and, in ``__keys__``,
    the line and column of each key; every list the lines of its items (in
    ``item_lines``); and every key given twice in one mapping (in
    ``duplicates``: YAML would silently keep the last)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.item_lines: dict[int, list[int]] = {}
        self.duplicates: list[tuple[dict, Any, tuple[int, int], tuple[int, int]]] = []


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _construct_mapping(loader, node, deep=False):
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
    seen: dict = {}
    twice = []
    for key_node, _ in node.value:          # before merge keys (<<) are flattened: an override is not a duplicate
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            k = (key_node.tag, key_node.value)
            if k in seen:
                twice.append((key_node, seen[k]))
            seen[k] = key_node
    loader.flatten_mapping(node)
    mapping, keys = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                    "a key cannot be a list or a mapping", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
        keys[key] = _mark(key_node)
    for key_node, first in twice:
        loader.duplicates.append((mapping, loader.construct_object(key_node), _mark(key_node), _mark(first)))
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__keys__"] = keys
    return mapping


def _construct_sequence(loader, node, deep=False):
    items = loader.construct_sequence(node, deep=deep)
    loader.item_lines[id(items)] = [n.start_mark.line + 1 for n in node.value]
    return items


def _construct_timestamp(loader, node):
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value} is not a valid date ({err}); write a date as 2026-11-23 "
                        f"or a time as 2026-11-23T10:00:00Z", node.start_mark)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)

_MARKERS = ("__line__", "__keys__")


def _clean(value):
    """Strip line markers; YAML dates and times become ISO text."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _at(shown: str, mapping: dict, key=None) -> str:
    """``file:line:col`` of ``key`` in ``mapping`` (``file:line`` of the
    mapping when the key is not in it)."""
    pos = mapping.get("__keys__", {}).get(key) if key is not None else None
    return f"{shown}:{pos[0]}:{pos[1]}" if pos else f"{shown}:{mapping.get('__line__', 0)}"


def _keys(mapping: dict) -> list:
    return [k for k in mapping if k not in _MARKERS]


def _unknown_keys(mapping: dict, allowed, where: str, listing: str) -> list[tuple[dict, Any, str]]:
    """(mapping, key, problem) for each key of ``mapping`` not in ``allowed``."""
    out = []
    for key in _keys(mapping):
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, cutoff=0.6)
            out.append((mapping, key, f"unknown key {q(key)} {where}; {hint or listing}"))
    return out


def _duplicates(loader, shown: str, case_ids) -> list[str]:
    """One problem per mapping that gives a key twice (YAML keeps the last)."""
    by_mapping: dict[int, tuple[dict, list]] = {}
    for mapping, key, pos, first in loader.duplicates:
        by_mapping.setdefault(id(mapping), (mapping, []))[1].append((pos, first[0], key))
    problems = []
    for mapping, found in by_mapping.values():
        found.sort(key=lambda f: f[0])
        line, col = found[0][0]
        keys = [q(key) for *_, key in found]
        named = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
        firsts = sorted({first for _, first, _ in found})
        first = f"line {firsts[0]}" if len(firsts) == 1 else f"lines {firsts[0]}-{firsts[-1]}"
        given = f"{named} {'is' if len(keys) == 1 else 'are'} given twice"
        if id(mapping) in case_ids:
            problems.append(f"{shown}:{line}:{col}: {given} in one case (first on {first}), and YAML keeps only "
                            f"the last: if a new case starts on line {line}, begin it with `- ` (as in `- name: ...`)")
        else:
            problems.append(f"{shown}:{line}:{col}: {given} (first on {first}), and YAML keeps only the last: "
                            f"remove one")
    return problems


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
    try:
        data = json.loads((base / str(rel)).resolve().read_text(encoding="utf-8"))
    except OSError as err:
        raise TestFileError(f"{where}: cannot read {rel}: {err.strerror or err}")
    except json.JSONDecodeError as err:
        raise TestFileError(f"{where}: {rel} is not valid JSON (line {err.lineno}: {err.msg})")
    except UnicodeDecodeError as err:
        raise TestFileError(f"{where}: {rel} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8")
    except ValueError as err:                    # a name with a NUL in it
        raise TestFileError(f"{where}: cannot read {_fmt(rel)}: {err}")
    except RecursionError:
        raise TestFileError(f"{where}: {rel} nests lists or objects too deeply")
    if not isinstance(data, dict):
        raise TestFileError(f"{where}: {rel} must hold a JSON object")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _input_problems(raw: dict, base: Path) -> list[tuple[dict, Any, str]]:
    """(mapping, key, problem) for what is wrong with the form of a case's
    (or the defaults') inputs: a profile or request that is not a mapping, a
    file name or customer id that is not text, a ``now`` that is not a time."""
    problems = []
    for key, example in (("profile", "{lifecycle: vip}"), ("request", "{channel: web}")):
        value = raw.get(key)
        if value is None or isinstance(value, dict):
            continue
        problem = f"{key} must be a mapping such as {example}, not {_describe(value)}"
        if isinstance(value, str) and value.endswith(".json"):
            problem += (f"; to read the {key} from a JSON file, write {key}_file: {_relative(value, base)} "
                        f"(a path from the test file's folder)")
        problems.append((raw, key, problem))
    for key in ("profile_file", "request_file"):
        if key in raw and not isinstance(raw[key], str):
            problems.append((raw, key, f"{key} must be the path of a JSON file (from the test file's folder), "
                                  f"not {_describe(raw[key])}"))
    cid = raw.get("customer_id")
    if cid is not None and not isinstance(cid, str):
        problems.append((raw, "customer_id", f"customer_id is text: quote it, as in customer_id: "
                                             f"\"{_clean(cid)}\""))
    if "now" in raw:
        problem = _time(raw["now"])[1]
        if problem:
            problems.append((raw, "now", problem))
    return problems


def _relative(name: str, base: Path) -> str:
    """``name`` as a path from ``base``: a path written from the current
    directory (rules/data/x.json) becomes ../data/x.json for rules/tests."""
    if not (base / name).exists() and Path(name).exists():
        return os.path.relpath(Path(name).resolve(), base.resolve())
    return name


def _read_yaml(path: Path, shown: str):
    """The document of a test file and its loader (for where things are)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TestFileError(f"{shown}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8")
    except OSError as err:
        raise TestFileError(f"{shown}: cannot read it: {err.strerror or err}")
    loader = _LineLoader(text)
    try:
        return loader.get_single_data(), loader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise TestFileError(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}")
    except RecursionError:
        raise TestFileError(f"{shown}: not valid YAML: lists or mappings nested too deeply")
    finally:
        loader.dispose()


def load_file(path: Path, shown: str, ruleset=None) -> list[dict]:
    """The cases of one test file, defaults merged in.  A problem with the
    file as a whole (not YAML, no cases, an unknown key at the top or in
    defaults, a key given twice) raises TestFileError with every such
    problem; a problem with one case is kept in the case (``__problems__``)
    and fails that case alone.  With the ``ruleset`` the tests are for, the
    decisions they name are checked too."""
    doc, loader = _read_yaml(path, shown)
    if doc is None:
        raise TestFileError(f"{shown}: the file is empty; a test file has a `cases:` list (see {DOC})")
    if not isinstance(doc, dict):
        raise TestFileError(f"{shown}: a test file is a mapping with a `cases:` list and optional `defaults:`, "
                            f"not {_describe(doc)} (see {DOC})")
    raw_cases = doc.get("cases")
    errors = [f"{_at(shown, mapping, key)}: {problem}" for mapping, key, problem in
              _unknown_keys(doc, TOP_KEYS, "at the top of the test file",
                            "a test file has only `defaults:` and `cases:`")]
    case_ids = {id(c) for c in raw_cases} if isinstance(raw_cases, list) else set()
    errors += _duplicates(loader, shown, case_ids)
    if "cases" not in doc:
        errors.append(f"{shown}: a test file has a `cases:` list (see {DOC})")
    elif not isinstance(raw_cases, list):
        errors.append(f"{_at(shown, doc, 'cases')}: cases must be a list, each case starting with `- name: ...`")
        raw_cases = []
    raw_defaults = doc.get("defaults")
    defaults = {}
    if raw_defaults is not None and not isinstance(raw_defaults, dict):
        errors.append(f"{_at(shown, doc, 'defaults')}: defaults must be a mapping (now, customer_id, profile, "
                      f"request, ...), not {_describe(raw_defaults)}")
    elif raw_defaults:
        problems = [(m, key, "a name is not a default: each case has its own name") if key == "name" else
                    (m, key, problem) for m, key, problem in
                    _unknown_keys(raw_defaults, DEFAULT_KEYS, "in defaults",
                                  "defaults may give: " + ", ".join(sorted(DEFAULT_KEYS)))]
        problems += [(m, key, f"in defaults: {problem}") for m, key, problem in
                     _input_problems(raw_defaults, base=path.parent) + _expect_problems(raw_defaults, ruleset)
                     + _schema_problems(raw_defaults, "profile", ruleset)
                     + _schema_problems(raw_defaults, "request", ruleset)]
        errors += [f"{_at(shown, m, key)}: {problem}" for m, key, problem in problems]
        defaults = _clean(raw_defaults)
        if "now" in defaults:
            defaults["now"] = _time(raw_defaults["now"])[0]
    if errors:
        raise TestFileError(*errors)
    cases = []
    lines = loader.item_lines.get(id(raw_cases), [])
    for i, raw in enumerate(raw_cases):
        line = raw.get("__line__", 0) if isinstance(raw, dict) else (lines[i] if i < len(lines) else 0)
        where = f"{shown}:{line}"
        if not isinstance(raw, dict):
            cases.append({"name": f"case {i + 1}", "__where__": where, "__line__": line, "__problems__": [
                f"{where}: a case must be a mapping with name, profile and expect, not {_describe(raw)}"]})
            continue
        problems = (_unknown_keys(raw, CASE_KEYS, "in a case", "a case may give: " + ", ".join(sorted(CASE_KEYS)))
                    + _input_problems(raw, base=path.parent)
                    + [(raw, key, f"{key} must map decision names to what they should be, such as "
                             f"{key}: {{homepage_category: bestsellers}}, not {_describe(raw[key])}")
                       for key in ("expect", "expect_rule", "expect_source")
                       if key in raw and not isinstance(raw[key], dict)])
        case = _merge(defaults, _clean(raw))
        if "now" in raw:
            case["now"] = _time(raw["now"])[0]
        problems += (_schema_problems(raw, "profile", ruleset) + _schema_problems(raw, "request", ruleset)
                     + _expect_problems(raw, ruleset) + _checks_nothing(raw, case))
        case["__where__"] = where
        case["__line__"] = line
        case["__problems__"] = [f"{_at(shown, m, key)}: {problem}" for m, key, problem in problems]
        case.setdefault("name", f"case {i + 1}")
        cases.append(case)
    return cases


SOURCES = ("rule", "default", "holdout", "capped")
EXPECT_KEYS = ("expect", "expect_rule", "expect_source")


def _checks_nothing(raw: dict, case: dict) -> list[tuple[dict, Any, str]]:
    """A case that expects nothing passes whatever the pack does: a mistake."""
    if any(isinstance(case.get(key), dict) and case[key] for key in EXPECT_KEYS) \
            or any(key in raw and not isinstance(raw[key], dict) for key in EXPECT_KEYS):
        return []
    return [(raw, next((k for k in EXPECT_KEYS if k in raw), None),
             "this case checks nothing: say what a decision should be, as in expect: "
             "{homepage_category: bestsellers} (or which rule decides it, with expect_rule, or how, "
             "with expect_source)")]


def _expect_problems(raw: dict, ruleset) -> list[tuple[dict, Any, str]]:
    """(mapping, key, problem) for the decisions a case (or the defaults)
    expects something of that the pack does not have, and sources there
    are not."""
    problems = []
    for key in EXPECT_KEYS:
        given = raw.get(key)
        if not isinstance(given, dict):
            continue
        for name in _keys(given):
            if ruleset is not None and name not in ruleset.decision_names:
                hint = did_you_mean(str(name), ruleset.decision_names)
                problems.append((given, name, f"the pack has no decision {q(name)}; "
                                              + (hint or f"it decides: {', '.join(ruleset.decision_names)}")))
            elif key == "expect_source" and given[name] not in SOURCES:
                hint = did_you_mean(str(given[name]), SOURCES)
                problems.append((given, name, f"expect_source: {name}: is one of {', '.join(SOURCES)}, not "
                                              f"{_fmt(_clean(given[name]))}" + (f"; {hint}" if hint else "")))
    return problems


def _describe(value) -> str:
    value = _clean(value)
    what = {str: "a text", list: "a list", dict: "a mapping", bool: "true/false", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
    return what if value is None else f"{what} ({_fmt(value)})"


# ---------------------------------------------------------------- the schema
def _schema_problems(raw: dict, key: str, ruleset) -> list[tuple[dict, Any, str]]:
    """(mapping, key, problem) for each attribute of a case's inline profile
    or request (``raw[key]``) that the pack's schema does not declare, or
    whose value the rules would read as missing (values.py's conversions):
    a test would otherwise pass or fail for a reason no one wrote."""
    given = raw.get(key)
    if ruleset is None or not isinstance(given, dict):
        return []
    schema = getattr(ruleset.checked, "schema", None) or {}
    if key not in schema:
        return [(raw, key, f"the pack declares no schema {key} {{ ... }}: no rule can read a {key}")] \
            if _keys(given) else []
    return _value_problems(given, schema[key], key, raw, key, ruleset)


def profile_problems(profile: dict, ruleset) -> list[str]:
    """What the pack's ``schema profile`` finds wrong with a profile read
    from elsewhere (a JSON object: ``maple serve --store jsonl:PATH``), in
    the words ``maple test`` uses for an inline profile: an attribute the
    schema does not declare, a value the rules would read as missing (an
    enum value it does not list, a number written as text ...), each with a
    suggestion.  The fold's own bookkeeping (``_fold``) is not the rules'
    business and is left alone."""
    if not isinstance(profile, dict):
        return []
    profile = {k: v for k, v in profile.items() if k != "_fold"}
    return [problem for _, _, problem in _schema_problems({"profile": profile}, "profile", ruleset)]


def _schema_place(path: str, ruleset) -> str:
    """Where to read the attributes a schema declares."""
    root = path.split(".")[0]
    files = [src.path for src in getattr(ruleset, "sources", ()) if f"schema {root}" in src.text]
    return f"see schema {root} {{ ... }}" + (f" in {files[0]}" if files else " in the pack")


def _value_problems(raw_value, t, path: str, mapping: dict, key, ruleset=None) -> list[tuple[dict, Any, str]]:
    if raw_value is None:
        return []                                   # explicitly missing
    if t.kind == "record":
        if not isinstance(raw_value, dict):
            return [(mapping, key, f"{path} is a group of attributes ({', '.join(n for n, _ in t.fields)}), "
                                   f"not {_describe(raw_value)}")]
        fields = dict(t.fields or ())
        out = []
        for name in _keys(raw_value):
            if name in fields:
                out += _value_problems(raw_value[name], fields[name], f"{path}.{name}", raw_value, name, ruleset)
                continue
            hint = did_you_mean(str(name), fields, cutoff=0.6)
            if hint is None:
                hint = f"it has: {', '.join(fields)}" if len(fields) <= 12 else _schema_place(path, ruleset)
            out.append((raw_value, name, f"{path} has no attribute {q(name)}; {hint}"))
        return out
    if t.kind == "map":
        if not isinstance(raw_value, dict):
            return [(mapping, key, f"{path} is {t.describe()}, keyed by name, such as {{running-shoes: ...}}, "
                                   f"not {_describe(raw_value)}")]
        out = []
        for name in _keys(raw_value):
            out += _value_problems(raw_value[name], t.elem, f"{path}[{_fmt(_clean(name))}]", raw_value, name,
                                  ruleset)
            if not isinstance(name, str):
                out.append((raw_value, name, f"the keys of {path} are text: quote {_fmt(_clean(name))} "
                                             f"(\"{_clean(name)}\")"))
        return out
    problem = _leaf_problem(_clean(raw_value), t)
    if problem is None:
        return []
    v = _clean(raw_value)
    if t.is_enum and isinstance(v, str):
        return [(mapping, key, f"{path} is one of {', '.join(t.members)}, not {q(v)}{problem}")]
    return [(mapping, key, f"{path} is {t.describe()}, but this is {_describe(raw_value)}{problem}")]


def _leaf_problem(v, t) -> str | None:
    """None when the rules read ``v`` as a value of type ``t``, else a hint
    (possibly empty) to add to 'X is a number, but this is ...'."""
    k = t.kind
    if k in ("number", "duration", "distance"):
        if values.to_number(v) is not None:
            return None
        return ": write it without quotes" if isinstance(v, str) and _is_number(v) else ""
    if k == "string":
        if isinstance(v, str):
            if t.members is None or v in t.members:
                return None
            hint = did_you_mean(v, t.members, cutoff=0.6) or next(
                (f"did you mean {q(m)}?" for m in t.members if m.lower() == v.lower()), None)
            return f"; {hint}" if hint else ""
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f": quote it, as in \"{v}\""
        return ""
    if k == "bool":
        if isinstance(v, bool):
            return None
        return ": write true or false without quotes" if str(v).lower() in ("true", "false") else ""
    if k == "timestamp":
        return _timestamp_problem(v)
    if k == "geo":
        return None if values.to_geo(v) is not None else \
            ": give {lat: .., lon: ..} with a latitude from -90 to 90 and a longitude from -180 to 180"
    if k == "set":
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return None
        if isinstance(v, list):
            bad = next(x for x in v if not isinstance(x, str))
            return f": every item is text: quote {_fmt(bad)}, as in \"{bad}\""
        return ": give a list, as in [a, b]"
    if k == "timeline":
        if isinstance(v, list):
            bad = next((x for x in v if _timestamp_problem(x) is not None), None)
            return None if bad is None else f": {_fmt(bad)} is not a time{_timestamp_problem(bad)}"
        return ": give a list of times, as in [2026-11-20T10:00:00Z]"
    return None                                      # nothing else is declared in a schema


def _timestamp_problem(v) -> str | None:
    t = values.to_timestamp(v)
    if t is None:
        return ": give an ISO-8601 time such as 2026-11-23T10:00:00Z or seconds since the epoch"
    problem = time_problem(t)
    return None if problem is None else f": it {problem}"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


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
    results, errors, deselected = [], [], 0
    for path in find_files(rules_dir):
        shown = _display(path)
        try:
            cases = load_file(path, shown, ruleset)
        except TestFileError as err:
            errors += err.messages
            continue
        for case in cases:
            if only is None or only.lower() in str(case["name"]).lower():
                results.append(run_case(ruleset, case, path.parent))
            else:
                deselected += 1
    return Report(results, errors, deselected)


def _display(p: Path) -> str:
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
            if m.hint:
                lines.append(f"        hint: {m.hint}")
        if r.explanation:
            lines.append("      explanation:")
            lines += ["        " + line for line in r.explanation.rstrip().splitlines()]
        lines.append("")
    lines.append(f"{report.passed} passed, {report.failed} failed"
                 + (f", {len(report.errors)} file error{'s' * (len(report.errors) != 1)}" if report.errors else ""))
    return "\n".join(lines)
