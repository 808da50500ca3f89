"""The TextMate grammar (editors/maple.tmLanguage.json) and the VS Code extension.

The grammar must be valid JSON, its regexes must compile in Oniguruma (what
VS Code, Sublime Text and JetBrains run) and in Python's ``re`` and find the
same matches in both, and every keyword of the language must be highlighted.
A small TextMate tokenizer below (match, begin/end, captures, includes; the
end pattern wins ties, as in TextMate) runs the grammar over sample rules.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
from pathlib import Path

import pytest

from engine.check.builtins import BUILTINS
from engine.syntax import KEYWORDS

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_PATH = ROOT / "editors" / "maple.tmLanguage.json"
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = json.loads(GRAMMAR_PATH.read_text())

SAMPLE = '''\
# a comment: rule r when x
schema profile {
  lifecycle: enum(new, active, "lapsed")
  tags: set<string>
  sizes: map<set<string>>
  channels: set<string>
  seen: timestamp
}
decision nbo: offer pick best top 3 cap 3 per 1 day default "none"
segment vip = profile.lifecycle == vip
const shoes = ["running-shoes", "sneakers"]
rule r priority -5
  when profile.s starts with "a\\"b" and profile.s ends with "b" or not (profile.tags contains "x")
       and profile.seen within 14 days and profile.seen > 2.5 hours ago and request.category in shoes
       and profile.n is set and profile.m is missing and profile.b == true and profile.c != false
       and profile.seen < now and profile.set is not set and size(profile.tags) >= 1e3
  then d.radius = 25 km, d.count = count(profile.visits["app"], 30 days)
  score 2 * (1 + profile.score / 10)
  because "why: {not a placeholder}"
offer o for nbo eligible when vip and experiment.offer_copy == urgent
  channels web, app
  message "Hi {profile.name}, {size(profile.cart.skus)} items"
experiment e on nbo, homepage
  salt "s"
  holdout 10%
  variant a 90 %
'''


# ---------------------------------------------------------------- a small TextMate tokenizer
def _flatten(patterns, seen=()):
    out = []
    for p in patterns:
        if "include" in p:
            name = p["include"]
            target = GRAMMAR if name == "$self" else GRAMMAR["repository"][name[1:]]
            if "match" in target or "begin" in target:
                out.append(target)
            elif name not in seen:
                out.extend(_flatten(target["patterns"], seen + (name,)))
        else:
            out.append(p)
    return out


def _paint(scopes, line_start, m, name, captures, base):
    for i in range(m.start(), m.end()):
        scopes[line_start + i] = base + ([name] if name else [])
    for group, cap in (captures or {}).items():
        g = int(group)
        if m.group(g) is not None:
            for i in range(m.start(g), m.end(g)):
                scopes[line_start + i] = scopes[line_start + i] + [cap["name"]]


def highlight(text: str) -> list[list[str]]:
    """The scopes of every character of ``text``."""
    scopes: list[list[str]] = [[] for _ in text]
    stack = [(None, GRAMMAR["patterns"], ["source.maple"])]
    offset = 0
    for line in text.split("\n"):
        pos, steps = 0, 0
        while pos <= len(line) and steps < 1000:
            steps += 1
            rule, patterns, base = stack[-1]
            best = None
            if rule is not None:
                m = re.compile(rule["end"]).search(line, pos)
                if m:
                    best = (m, "end", rule)
            for p in _flatten(patterns):
                m = re.compile(p.get("match") or p["begin"]).search(line, pos)
                if m and (best is None or m.start() < best[0].start()):
                    best = (m, "match" if "match" in p else "begin", p)
            if best is None:
                break
            m, kind, p = best
            for i in range(pos, m.start()):
                scopes[offset + i] = base
            if kind == "end":
                _paint(scopes, offset, m, None, p.get("endCaptures"), base[:-1] if p.get("contentName") else base)
                stack.pop()
            elif kind == "match":
                _paint(scopes, offset, m, p.get("name"), p.get("captures"), base)
            else:
                _paint(scopes, offset, m, p.get("name"), p.get("beginCaptures"), base)
                inner = base + ([p["name"]] if p.get("name") else []) + ([p["contentName"]] if p.get("contentName") else [])
                stack.append((p, p.get("patterns", []), inner))
            pos = m.end() if m.end() > pos else pos + 1
        for i in range(pos, len(line)):
            scopes[offset + i] = stack[-1][2]
        offset += len(line) + 1
    return scopes


def scopes_at(text: str, needle: str, nth: int = 0) -> list[str]:
    starts = [m.start() for m in re.finditer(re.escape(needle), text)]
    return highlight(text)[starts[nth]]


def has(scopes: list[str], prefix: str) -> bool:
    return any(s.startswith(prefix) or f" {prefix}" in s for s in scopes)


# ---------------------------------------------------------------- the grammar file
def _regexes(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end") and isinstance(value, str):
                yield value
            else:
                yield from _regexes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regexes(item)


def test_the_grammar_is_json_for_source_maple_and_every_include_resolves():
    assert GRAMMAR["scopeName"] == "source.maple" and "rules" in GRAMMAR["fileTypes"]
    includes = re.findall(r'"include": "#([\w-]+)"', GRAMMAR_PATH.read_text())
    assert includes and all(name in GRAMMAR["repository"] for name in includes)


@pytest.mark.parametrize("pattern", sorted(set(_regexes(GRAMMAR))))
def test_every_regex_compiles_in_python(pattern):
    re.compile(pattern)


class Onig:
    """Oniguruma through ctypes, as VS Code's vscode-oniguruma calls it."""

    class Region(ctypes.Structure):
        _fields_ = [("allocated", ctypes.c_int), ("num_regs", ctypes.c_int),
                    ("beg", ctypes.POINTER(ctypes.c_int)), ("end", ctypes.POINTER(ctypes.c_int)),
                    ("history_root", ctypes.c_void_p)]

    def __init__(self, path: str):
        lib = self.lib = ctypes.CDLL(path)
        self.enc = ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigEncodingUTF8"))
        self.syntax = ctypes.c_void_p.in_dll(lib, "OnigDefaultSyntax").value
        lib.onig_initialize((ctypes.c_void_p * 1)(self.enc), 1)
        lib.onig_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint,
                                 ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.onig_search.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.POINTER(self.Region), ctypes.c_uint]
        lib.onig_region_new.restype = ctypes.POINTER(self.Region)
        lib.onig_free.argtypes = [ctypes.c_void_p]

    def compile(self, pattern: str):
        raw = pattern.encode()
        buf = ctypes.create_string_buffer(raw)
        reg, einfo = ctypes.c_void_p(), (ctypes.c_void_p * 3)()
        code = self.lib.onig_new(ctypes.byref(reg), buf, ctypes.addressof(buf) + len(raw), 256,  # CAPTURE_GROUP
                                 self.enc, self.syntax, einfo)
        if code != 0:
            msg = ctypes.create_string_buffer(256)
            self.lib.onig_error_code_to_str(msg, code, einfo)
            raise AssertionError(f"Oniguruma rejects {pattern!r}: {msg.value.decode()}")
        return reg

    def search(self, reg, text: str, pos: int):
        raw = text.encode()
        buf = ctypes.create_string_buffer(raw)
        base, region = ctypes.addressof(buf), self.lib.onig_region_new()
        at = self.lib.onig_search(reg, buf, base + len(raw), base + pos, base + len(raw), region, 0)
        return None if at < 0 else (at, region.contents.end[0])


@pytest.fixture(scope="module")
def onig():
    path = ctypes.util.find_library("onig")
    if path is None:
        pytest.skip("libonig (Oniguruma) is not installed")
    return Onig(path)


def test_every_regex_compiles_in_oniguruma_and_matches_as_in_python(onig):
    lines = SAMPLE.split("\n")
    for pattern in sorted(set(_regexes(GRAMMAR))):
        reg, py = onig.compile(pattern), re.compile(pattern)
        for line in lines:
            for pos in range(0, len(line) + 1, 3):
                m = py.search(line, pos)
                assert onig.search(reg, line, pos) == (m.span() if m else None), (pattern, line, pos)
        onig.lib.onig_free(reg)


# ---------------------------------------------------------------- what gets highlighted
def test_every_keyword_of_the_language_is_highlighted():
    painted = highlight(SAMPLE)
    for kw in KEYWORDS:
        # not next to a dot (attributes, experiment.x) or before a colon
        # (field names), nor in strings and comments
        hits = [m.start() for m in re.finditer(rf"(?<![.\w]){kw}\b(?!\s*[:.])", SAMPLE)
                if not has(painted[m.start()], "string") and not has(painted[m.start()], "comment")]
        assert hits, f"the sample does not use the keyword {kw!r}"
        for at in hits:
            allowed = ("keyword.", "storage.type", "constant.language")
            if SAMPLE[:at].rstrip().endswith(":"):
                allowed += ("support.type",)          # decision nbo: offer (a type there)
            assert any(has(painted[at], p) for p in allowed), (kw, at, painted[at])


@pytest.mark.parametrize("needle, nth, prefix", [
    ("# a comment", 0, "comment.line.number-sign"),
    ("rule r when x", 0, "comment.line"),                    # keywords inside a comment stay comment
    ("profile {", 0, "entity.name.type"),
    ("nbo:", 0, "entity.name.type"),
    ("r priority", 0, "entity.name.function"),
    ("vip =", 0, "variable.other.constant"),
    ("lifecycle:", 0, "variable.other.property"),
    ("channels:", 0, "variable.other.property"),              # a keyword as a field name
    ("string>", 0, "support.type"),
    ("timestamp", 0, "support.type"),
    ("offer pick", 0, "support.type"),
    ("profile.s", 0, "variable.language"),
    ("request.category", 0, "variable.language"),
    ("experiment.offer_copy", 0, "variable.language"),
    ("set is not", 0, "variable.other.property"),             # profile.set: an attribute
    ("score /", 0, "variable.other.property"),                # profile.score
    ("size(", 0, "support.function.builtin"),
    ("count(", 0, "support.function.builtin"),
    ("14", 0, "constant.numeric"),
    ("hours ago", 0, "constant.numeric.unit"),
    ("2.5", 0, "constant.numeric"),
    ("km", 0, "constant.numeric.unit"),
    ("1e3", 0, "constant.numeric"),
    ("10%", 0, "constant.numeric"),
    ("%", 0, "keyword.other.unit.percent"),
    ("90 %", 0, "constant.numeric"),
    ("-5", 0, "keyword.operator.arithmetic"),
    ("==", 0, "keyword.operator.comparison"),
    (">=", 0, "keyword.operator.comparison"),
    ("= 25", 0, "keyword.operator.assignment"),
    ('\\"', 0, "constant.character.escape"),
    ('"running-shoes"', 0, "string.quoted.double"),
    ("{profile.name}", 0, "meta.interpolation"),
    ("name}", 0, "variable.other.property"),
    ("size(profile.cart", 0, "support.function.builtin"),
    ("{not a placeholder}", 0, "string.quoted.double"),
])
def test_highlighting(needle, nth, prefix):
    assert has(scopes_at(SAMPLE, needle, nth), prefix), (needle, scopes_at(SAMPLE, needle, nth))


def test_only_messages_have_placeholders():
    assert not has(scopes_at(SAMPLE, "{not a placeholder}"), "meta.interpolation")
    assert has(scopes_at(SAMPLE, "Hi {"), "string.quoted.double")
    assert has(scopes_at(SAMPLE, '"\n', 3), "punctuation.definition.string.end")


def test_every_builtin_function_is_highlighted():
    text = "segment s = " + " and ".join(f"{name}(profile.x)" for name in BUILTINS)
    painted = highlight(text)
    for name in BUILTINS:
        assert has(painted[text.index(f" {name}(") + 1], "support.function.builtin"), name


# ---------------------------------------------------------------- the VS Code extension
def test_the_extension_contributes_the_language_and_ships_the_same_grammar():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "maple" and ".rules" in language["extensions"]
    assert grammar["scopeName"] == "source.maple"
    shipped = (EXTENSION / grammar["path"]).resolve()
    assert EXTENSION.resolve() in shipped.parents, "VS Code loads grammars only from inside the extension"
    assert shipped.read_text() == GRAMMAR_PATH.read_text(), \
        "copy editors/maple.tmLanguage.json to editors/vscode/syntaxes/ after editing it"
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert ["{", "}"] in config["brackets"] and ["(", ")"] in config["brackets"] and ["[", "]"] in config["brackets"]
    assert any(p["open"] == '"' and p["close"] == '"' for p in config["autoClosingPairs"])
