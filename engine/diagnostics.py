"""Diagnostics: one catalogue of stable codes, a collector, one renderer.

Every problem the rule pipeline finds is a :class:`Diagnostic` with a stable
code from :data:`CATALOGUE`.  Stages never stop at the first problem: they add
to a :class:`Diagnostics` collector, which caps, de-duplicates and sorts, and
:func:`render` prints each one as ``path:line:col: error[E201]: message``
followed by the source line and a caret.
"""
from __future__ import annotations

import difflib
import enum
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from .source import Span


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    template: str
    summary: str


def _e(code: str, template: str, summary: str) -> Code:
    return Code(code, Severity.ERROR, template, summary)


def _w(code: str, template: str, summary: str) -> Code:
    return Code(code, Severity.WARNING, template, summary)


#: The catalogue.  Codes are stable: never renumber or reuse one; retire a code
#: by leaving it here unused.  docs/diagnostics.md lists them for marketers.
CATALOGUE: dict[str, Code] = {c.code: c for c in [
    # --- files and packs
    _e("E001", "no rule files (*.rules) found in {path}", "empty rules directory"),
    _e("E002", "cannot read {path}: {reason}", "unreadable rule file"),
    # --- syntax
    _e("E101", "unexpected {found}; expected {expected}", "syntax error"),
    _e("E102", "the file ends in the middle of {where}; expected {expected}", "unexpected end of file"),
    _e("E103", "unexpected character {char}", "invalid character"),
    _e("E104", "this string is not closed: add a \" before the end of the line", "unterminated string"),
    _e("E105", "{clause} is given twice in {kind} {name}", "duplicate clause"),
    _e("E106", "{message}", "common mistake"),
    _e("E107", "{what} must be a whole number, got {value}", "not a whole number"),
    _e("E108", "this {brace} in the message {problem}", "unmatched brace in a message"),
    _e("E109", "this {bracket} is never closed", "unclosed bracket"),
    # --- names
    _e("E201", "unknown name {name}", "unknown name"),
    _e("E202", "{owner} has no attribute {name}", "unknown attribute"),
    _e("E203", "{kind} {name} is declared twice (first at {first})", "duplicate declaration"),
    _e("E204", "unknown decision {name}", "unknown decision"),
    _e("E205", "decision {decision} has no field {name}", "unknown decision field"),
    _e("E206", "unknown type {name}", "unknown type"),
    _e("E207", "unknown function {name}", "unknown function"),
    _e("E208", "{value} is not one of the values of {owner} ({members})", "unknown enum value"),
    _e("E209", "{kind} {name} refers to itself: {cycle}", "cyclic definition"),
    _e("E210", "unknown policy {name}", "unknown policy"),
    _e("E211", "unknown schema {name}", "unknown schema"),
    _e("E212", "{name} is not a channel ({members})", "unknown channel"),
    _e("E213", "{name} is not an attribute: name an attribute such as {example}", "bare root"),
    # --- types
    _e("E301", "{op} cannot combine {left} and {right}", "operator type mismatch"),
    _e("E302", "{clause} needs a true/false condition, but this is {got}", "condition is not true/false"),
    _e("E303", "{target} is {expected}, but this value is {got}", "assignment type mismatch"),
    _e("E304", "{name}() {problem}", "bad function call"),
    _e("E305", "[...] looks up a key in a map, but this is {got}", "not a map"),
    _e("E306", "{got} has no attributes", "not a record"),
    _e("E307", "{op} needs {needs}, but this is {got}", "bad operand"),
    _e("E308", "score needs a number, but this is {got}", "score is not a number"),
    _e("E309", "{what} must be a constant, but this depends on {depends}", "not a constant"),
    _e("E310", "a list holds values of one type, but this one mixes {first} and {other}", "mixed list"),
    _e("E311", "{what} needs {needs}, but this is {got}", "wrong kind of value"),
    # --- declarations
    _e("E401", "rule {name} has no then clause: say what it decides", "rule without then"),
    _e("E402", "rule {name} assigns to {first} and {other}; a rule decides one decision", "rule with two decisions"),
    _e("E403", "{kind} {name} needs a score clause: decision {decision} picks the best score", "missing score"),
    _e("E404", "the holdout and variants of experiment {name} add up to {total}%, not 100%", "weights do not add up"),
    _e("E405", "{problem}", "offer without a decision"),
    _e("E406", "decision `{name}` needs a type (decision {name}: string ...) or a field list {{ ... }}", "decision without type"),
    _e("E407", "decision {name}: {problem}", "policy does not fit"),
    _e("E408", "the pack declares no schema {root} {{ ... }}; rules cannot read {root} attributes", "missing schema"),
    _e("E409", "{what} must be between {low} and {high}, got {value}", "out of range"),
    _e("E410", "decision {name} is {kind}; assign its fields ({example})", "record decision assigned whole"),
    _e("E411", "cap needs the profile attribute {attr}: map<timeline> in schema profile", "cap without counters"),
    _e("E412", "{what} is not allowed here: {why}", "misplaced clause"),
    _e("E413", "experiment {name} has no variants", "experiment without variants"),
    # --- limits
    _e("E501", "{path} is {size} bytes; a rule file may be at most {limit} bytes", "file too large"),
    _e("E502", "this expression is nested {depth} levels deep; the limit is {limit}", "nesting too deep"),
    _e("E503", "the pack compiles to {count} nodes; the limit is {limit}", "pack too large"),
    _e("E504", "{what}: {count} is more than the limit of {limit}", "too many"),
    # --- warnings
    _w("W101", "segment {name} is never used", "unused segment"),
    _w("W102", "const {name} is never used", "unused constant"),
    _w("W103", "{kind} {name} can never {verb}: {reason}", "unreachable rule"),
    _w("W104", "decision {name} has {consequence}", "decision without rules"),
    _w("W105", "{clause} of {kind} {name} is ignored: {why}", "ignored clause"),
    _w("W106", "experiment {name} is not on any decision; its variants are assigned but nothing is held out", "experiment on nothing"),
]}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    help: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def severity(self) -> Severity:
        return CATALOGUE[self.code].severity

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        if self.span is None:
            return ("", 0, 0, self.code, self.message)
        return (self.span.path, self.span.start, self.span.end, self.code, self.message)

    def to_dict(self) -> dict:
        d = {"code": self.code, "severity": self.severity.value, "message": self.message}
        if self.span is not None:
            line, col = self.span.source.line_col(self.span.start)
            end_line, end_col = self.span.source.line_col(self.span.end)
            d.update(path=self.span.path, line=line, col=col, end_line=end_line, end_col=end_col)
        if self.help:
            d["help"] = self.help
        if self.notes:
            d["notes"] = list(self.notes)
        return d


def q(name: object) -> str:
    """Quote a name the way every message does: `name`."""
    return f"`{name}`"


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.7,
                 prefix: bool = False) -> str | None:
    """A 'did you mean X?' help text when one candidate is close to ``word``.

    A candidate spelt the same but for case wins (``"VIP"`` -> ``vip``).
    Names made of words (``loyal_customer``) are compared on the words they
    do not share, so a common ``_customer`` alone does not make a match.
    With ``prefix``, a lone candidate that starts with ``word`` is suggested
    too (``homepage`` -> ``homepage_category``)."""
    pool = sorted(set(candidates))
    folded = [c for c in pool if c.lower() == word.lower() and c != word]
    if folded:
        return f"did you mean {q(folded[0])}?"
    for match in difflib.get_close_matches(word, pool, n=3, cutoff=cutoff):
        if _differ_little(word, match):
            return f"did you mean {q(match)}?"
    if prefix and len(word) >= 4:
        starts = [c for c in pool if c.startswith(word) and c != word]
        if len(starts) == 1:
            return f"did you mean {q(starts[0])}?"
    return None


def containing(word: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates every word of which is in ``word`` (spelt alike:
    ``customr`` for ``customer``), the most words first: for a misspelt
    name that adds to a declared one (``vip_customr`` -> ``vip``,
    ``browsed_recently`` -> ``recent_browser``) where :func:`did_you_mean`
    finds nothing.  A candidate that shares only some of its words (a
    common ``_customer``) is none."""
    words = [w for w in word.lower().split("_") if w]
    found = []
    for c in sorted(set(candidates)):
        parts = [w for w in c.lower().split("_") if w]
        if parts and c != word and all(any(_alike(part, w) for w in words) for part in parts):
            found.append((-len(parts), -difflib.SequenceMatcher(None, word.lower(), c.lower()).ratio(), c))
    return [c for *_, c in sorted(found)[:limit]]


def _alike(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 4 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8)


def _differ_little(word: str, match: str) -> bool:
    """Whether the words ``word`` and ``match`` do not share are alike."""
    a, b = word.lower().split("_"), match.lower().split("_")
    while len(a) > 1 and len(b) > 1 and a[0] == b[0]:
        a, b = a[1:], b[1:]
    while len(a) > 1 and len(b) > 1 and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    if (a, b) == (word.lower().split("_"), match.lower().split("_")):
        return True             # no shared word: the whole-name similarity decides
    return difflib.SequenceMatcher(None, "_".join(a), "_".join(b)).ratio() >= 0.6


class Diagnostics:
    """Collects diagnostics from every stage; caps, de-duplicates and sorts."""

    def __init__(self, cap: int = 500):
        self._items: list[Diagnostic] = []
        self._seen: set[tuple] = set()
        self.cap = cap
        self.dropped = 0

    def add(self, code: str, span: Span | None, *, help: str | None = None,
            notes: Sequence[str] = (), **args: object) -> Diagnostic:
        message = CATALOGUE[code].template.format(**args)
        diag = Diagnostic(code, message, span, help, tuple(notes))
        self.append(diag)
        return diag

    def append(self, diag: Diagnostic) -> None:
        key = (diag.code, diag.message, diag.span and (diag.span.path, diag.span.start))
        if key in self._seen:
            return
        if len(self._items) >= self.cap:
            self.dropped += 1
            return
        self._seen.add(key)
        self._items.append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        for d in diags:
            self.append(d)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self._items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.sorted() if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.sorted() if not d.is_error]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self._items, key=Diagnostic.sort_key)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self.sorted())


class PackError(Exception):
    """A rule pack was rejected; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        first = render_one_line(errors[0]) if errors else "rule pack rejected"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


def render_one_line(diag: Diagnostic) -> str:
    where = f"{diag.span.location()}: " if diag.span is not None else ""
    return f"{where}{diag.severity.value}[{diag.code}]: {diag.message}"


def render(diag: Diagnostic, color: bool = False) -> str:
    """``path:line:col: error[CODE]: message``, the source line, a caret, help."""
    head = render_one_line(diag)
    if color:
        tint = "\033[1;31m" if diag.is_error else "\033[1;33m"
        head = head.replace(f"{diag.severity.value}[{diag.code}]",
                            f"{tint}{diag.severity.value}[{diag.code}]\033[0m", 1)
    lines = [head]
    if diag.span is not None:
        src = diag.span.source
        line, col = src.line_col(diag.span.start)
        end_line, end_col = src.line_col(max(diag.span.start, diag.span.end - 1))
        text = src.line_text(line).expandtabs(1)
        width = max(1, (end_col - col + 1) if end_line == line else len(text) - col + 1)
        width = min(width, 120)             # a caret, not a wall of tildes
        gutter = f"{line:>4} | "
        lines.append(gutter + text)
        lines.append(" " * (len(gutter) + col - 1) + "^" + "~" * (width - 1))
    if diag.help:
        lines.append(f"     = help: {diag.help}")
    for note in diag.notes:
        lines.append(f"     = note: {note}")
    return "\n".join(lines)


def render_all(diags: Iterable[Diagnostic], color: bool = False) -> str:
    diags = list(diags)
    parts = [render(d, color) for d in diags]
    n_err = sum(d.is_error for d in diags)
    n_warn = len(diags) - n_err
    if diags:
        parts.append(f"{n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}")
    return "\n\n".join(parts[:-1]) + ("\n\n" if len(parts) > 1 else "") + parts[-1] if parts else ""


def to_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diags], indent=2)
