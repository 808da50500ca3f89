"""Parse rule files into the AST, reporting every syntax error with a position.

The grammar lives in ``maple.lark`` (LALR(1), contextual lexer).  A Lark
transformer embedded in the parser builds :mod:`.ast` nodes directly, so no
parse tree is kept.  When a file has a syntax error, it is parsed again one
declaration at a time (a declaration starts with its keyword at the start of a
line), so one mistake does not hide the errors, or the valid rules, after it.
"""
from __future__ import annotations

import difflib
import re
import threading
from importlib import resources
from itertools import count

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .. import limits
from ..diagnostics import Diagnostics, did_you_mean, q
from ..source import SourceFile, Span
from . import ast
from .builder import UNITS, Builder, Context
from .lexer import MASTER, MapleLexer

DECLARATION_KEYWORDS = ("schema", "decision", "rule", "segment", "offer", "experiment", "const")

#: Every keyword of the language (for "did you mean" and the editor grammar).
KEYWORDS = DECLARATION_KEYWORDS + (
    "pick", "default", "top", "priority", "when", "eligible", "then", "score", "because",
    "for", "cap", "per", "channels", "message", "on", "salt", "holdout", "variant",
    "and", "or", "not", "in", "is", "set", "missing", "starts", "ends", "with", "contains",
    "within", "ago", "true", "false", "now", "enum", "map",
)

_OPEN_QUOTE = re.compile(r'"[^"\n]*\b(?:then|when|because|score|and|or|priority)\b[^"\n]*"$')
_DECL_START = re.compile(r"^(?:%s)\b" % "|".join(DECLARATION_KEYWORDS), re.M)

_TERMINAL_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a string ("...")',
    "QUANTITY": "a duration or distance (14 days, 25 km)", "PERCENT": "a percentage (10%)",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)", "$END": "the end of the file",
}


#: Words that may never name a segment or constant: where an expression
#: starts they are read as the keyword (see lexer.py), so ``when a and then``
#: is reported at ``then``.
RESERVED = ("schema", "decision", "rule", "segment", "offer", "const", "pick", "default", "priority",
            "when", "eligible", "then", "score", "because", "cap", "channels", "message")

_lock = threading.Lock()
_parser: Lark | None = None


def _get_parser() -> Lark:
    global _parser
    with _lock:
        if _parser is None:
            grammar = resources.files(__package__).joinpath("maple.lark").read_text(encoding="utf-8")
            MapleLexer.reserved = frozenset(RESERVED)
            _parser = Lark(grammar, parser="lalr", lexer=MapleLexer, transformer=Builder(),
                           keep_all_tokens=True, maybe_placeholders=False, start=["start", "expr"])
    return _parser


#: the label of the bad examples a then clause without its `=` fails like (see _assign_label)
ASSIGN_LABEL = "use = to assign a value in then (== compares)"

_BAD_EXAMPLES = {
    "use == to compare two values (a single = assigns, in then)": [
        "rule r when profile.a = 1",
        "rule r when profile.a and profile.b = 1",
        "segment s = profile.a = 1",
        "offer o when profile.a = 1",
    ],
    ASSIGN_LABEL: [
        "rule r then d == 1",
        "rule r then d.f == 1",
    ],
    "a variant's weight is a percentage: write it with % (variant a 50%)": [
        "experiment e variant a 50",
    ],
    "the holdout is a percentage: write it with % (holdout 10%)": [
        "experiment e holdout 10",
    ],
    "separate the items of a list with commas: [a, b, c]": [
        'rule r when x in ["a" "b"]',
        "rule r when x in [a b]",
    ],
    "the condition ends with and/or/not: add the part it combines with": [
        "rule r when profile.a and then",
        "rule r when profile.a or then",
        "rule r when not then",
        "rule r when profile.a and because",
        "offer o when profile.a and score",
    ],
    "a rule's name comes right after rule: rule my_rule priority 10 ...": [
        "rule priority",
        "rule 10",
    ],
    "because takes a quoted text: because \"Continue where you left off\"": [
        "rule r because x",
    ],
}


_example_index: dict | None = None


def _example_label(err: UnexpectedInput) -> str | None:
    """The label of the bad example that fails in the same parser state (and,
    preferably, on the same kind of token) as ``err``."""
    global _example_index
    if _example_index is None:
        index: dict = {}
        for label, examples in _BAD_EXAMPLES.items():
            for text in examples:
                try:
                    _run(text, SourceFile("<example>", text), 0, Diagnostics(), count(), "start")
                except UnexpectedToken as ex:
                    index.setdefault((ex.state.position, ex.token.type), label)
                    index.setdefault((ex.state.position, None), label)
                except UnexpectedInput:  # pragma: no cover - examples fail on tokens
                    pass
        _example_index = index
    state = getattr(err, "state", None)
    if state is None:
        return None
    token = getattr(err, "token", None)
    key_type = token.type if token is not None else None
    return _example_index.get((state.position, key_type)) or _example_index.get((state.position, None))


def _describe_expected(parser: Lark, expected) -> tuple[str, list[str]]:
    """Human names for a set of expected terminals, and the keywords among them."""
    names, keywords, punct, decls = [], [], [], []
    for term in sorted(expected):
        if term in _TERMINAL_NAMES:
            names.append(_TERMINAL_NAMES[term])
            continue
        try:
            pattern = parser.get_terminal(term).pattern
        except KeyError:
            continue
        value = getattr(pattern, "value", None)
        if isinstance(value, str) and pattern.type == "str":
            if value in DECLARATION_KEYWORDS:
                decls.append(value)
            (keywords if value.isalpha() else punct).append(value)
        else:  # pragma: no cover - every regexp terminal is named above
            names.append(term)
    items = ([q(k) for k in sorted(keywords) if k not in decls] + [q(p) for p in sorted(punct)]
             + sorted(set(names)))
    if decls:
        items.append("a new declaration (" + ", ".join(sorted(decls)[:3]) + ", …)")
    if len(items) > 9:
        items = items[:8] + ["…"]
    if not items:
        return "something else", keywords
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
    return text, keywords


#: clause keywords that belong to one kind of declaration only; LALR states
#: shared by rules and offers (after `when ...`) accept both, so the
#: reporter leaves out the other kind's clauses
_OFFER_ONLY = {"CAP", "CHANNELS", "FOR", "MESSAGE"}
_DECISION_ONLY = {"PICK", "DEFAULT", "TOP", "LBRACE"}
_CANDIDATE_ONLY = {"WHEN", "ELIGIBLE", "THEN", "SCORE", "BECAUSE", "PRIORITY"}
_ONLY = {"rule": _OFFER_ONLY | _DECISION_ONLY, "segment": _OFFER_ONLY | _DECISION_ONLY,
         "const": _OFFER_ONLY | _DECISION_ONLY, "offer": _DECISION_ONLY,
         "decision": (_OFFER_ONLY - {"CAP"}) | _CANDIDATE_ONLY}


def _for_declaration(expected, chunk: str):
    kw = chunk.lstrip().split(None, 1)[0] if chunk.strip() else ""
    drop = _ONLY.get(kw, set())
    return {t for t in expected if t not in drop}


#: `=>` and `=<`: a comparison written the wrong way round
_REVERSED = {"=>": ">=", "=<": "<="}
_REVERSED_WORDS = {"=>": "greater than or equal", "=<": "less than or equal"}

_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_CLAUSE_WORD = re.compile(r"\b(then|when|eligible|score|because|priority|message|cap|per|for|channels|default|"
                          r"pick|top|on|salt|holdout|variant|schema|decision|rule|segment|offer|experiment|const)\b")
_TARGET = re.compile(r"([A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)?)\s*$")
_OPERATOR_CHARS = "=<>-:!+*/"


def _clause_before(chunk: str, pos: int) -> str | None:
    """The keyword of the clause ``pos`` is in (strings and comments
    skipped): ``then`` in ``then homepage_category => "x"``."""
    words = _CLAUSE_WORD.findall(_STRING_OR_COMMENT.sub('""', chunk[:pos]))
    return words[-1] if words else None


def _assign_mistake(tok: Token, chunk: str) -> tuple[int, int, str] | None:
    """Where an assignment or definition goes wrong at its `=` and how to
    say so: (start, end, message) in ``chunk``.  ``=>`` (an arrow
    from another language) is read as `=` and then an unexpected `>`; the
    message says `=` was what belongs there."""
    at = tok.start_pos
    if str(tok) not in (">", "<") or at < 1 or chunk[at - 1] != "=" or (at >= 2 and chunk[at - 2] in "=!<>"):
        return None
    arrow = chunk[at - 1:at + 1]
    clause = _clause_before(chunk, at - 1)
    target = _TARGET.search(chunk[:at - 1])
    if clause == "then" and target is not None:         # `then homepage_category => "x"`
        name = re.sub(r"\s+", "", target.group(1))
        return at - 1, at + 1, f"use = to assign a value in then, not {q(arrow)} ({name} = ...)"
    kw = chunk.lstrip().split(None, 1)[0] if chunk.strip() else ""
    decl = _chunk_name(chunk)
    if clause == kw and kw in ("segment", "const") and decl:
        return at - 1, at + 1, f"use = to define {kw} {decl}, not {q(arrow)} ({kw} {decl} = ...)"
    return at - 1, at + 1, f"{q(arrow)} is not an operator: write = here"


def _assign_label(tok: Token, chunk: str) -> tuple[int, int, str]:
    """ASSIGN_LABEL for what was really found instead of a then clause's
    `=`: ``==`` (the label), another operator (``->``, ``:``, ``:=``) or a
    value right after the decision's name."""
    at = tok.start_pos
    if str(tok) == "==":
        return at, tok.end_pos, ASSIGN_LABEL
    op = ""
    while at + len(op) < len(chunk) and chunk[at + len(op)] in _OPERATOR_CHARS:
        op += chunk[at + len(op)]
    if op:
        return at, at + len(op), f"use = to assign a value in then, not {q(op)}"
    target = _TARGET.search(chunk[:at])
    name = re.sub(r"\s+", "", target.group(1)) if target else "the decision"
    return at, tok.end_pos, f"expected = after {q(name)}: use = to assign a value in then ({name} = ...)"


#: a message whose text ends inside a placeholder: `message "{profile.sizes["`
_OPEN_PLACEHOLDER = re.compile(r'\bmessage[ \t\r\n]+"(?:[^"\\\n]|\\.)*?\{([^{}"\n]*)"$')


def _quote_in_placeholder(source: SourceFile, base: int, chunk: str, pos: int, diags: Diagnostics) -> bool:
    """``message "{profile.sizes["t-shirts"]}"``: the quote inside the
    placeholder ends the message.  Say so, and show the documented way out
    (a const for the key)."""
    before = chunk[:pos].rstrip()
    m = _OPEN_PLACEHOLDER.search(before)
    if m is None:
        return False
    quote = len(before) - 1
    inside = m.group(1)
    rest = chunk[quote + 1:].split("\n", 1)[0]
    key = rest.split('"', 1)[0] if '"' in rest else "..."
    example = inside + "key" + ("]" if inside.rstrip().endswith("[") else "")
    diags.add("E106", Span(source, base + quote, base + quote + 1),
              message="a placeholder cannot contain a quoted text: this quote ends the message",
              help=f'name the text with a const: const key = "{key}", then write {{{example}}}')
    return True


_NUMBER_BEFORE = re.compile(r"(?:^|[^\w.])(\d+(?:\.\d+)?|\.\d+)[ \t]*$")


def _unit_suggestion(word: str, before: str) -> str | None:
    """'did you mean `days`?' for a word right after a number that is close
    to a unit name (``30 dayz``), in the number's form (1 day, 30 days)."""
    m = _NUMBER_BEFORE.search(before)
    if m is None:
        return None
    matches = difflib.get_close_matches(word.lower(), sorted(UNITS), n=1, cutoff=0.6)
    if not matches:
        return None
    unit = matches[0]
    singular = unit[:-1] if unit.endswith("s") and unit[:-1] in UNITS else unit
    plural = singular + "s" if singular + "s" in UNITS else singular
    unit = singular if float(m.group(1)) == 1 else plural
    return f"did you mean {q(unit)}? ({m.group(1)} {unit})"


def _unclosed_bracket(chunk: str) -> tuple[int, str] | None:
    """The position and character of the innermost ( or [ that is still open
    at the end of ``chunk`` (strings and comments skipped), if any."""
    stack: list[tuple[int, str]] = []
    pos = 0
    while pos < len(chunk):
        m = MASTER.match(chunk, pos)
        if m is None:
            pos += 1
            continue
        value = m.group()
        if m.lastgroup == "OP":
            if value in "([":
                stack.append((pos, value))
            elif value in ")]" and stack:
                stack.pop()
        pos = m.end()
    return stack[-1] if stack else None


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    text = str(tok)
    if tok.type == "STRING":
        return "the string " + text
    if tok.type in ("NUMBER", "QUANTITY", "PERCENT"):
        return q(text)
    if tok.type == "NAME":
        return q(text)
    return q(text)


def _report_syntax_error(err: UnexpectedInput, source: SourceFile, base: int, chunk: str,
                         diags: Diagnostics) -> None:
    parser = _get_parser()
    if isinstance(err, VisitError):  # pragma: no cover - builder bugs surface as errors
        raise err.orig_exc
    pos = getattr(err, "pos_in_stream", None)
    label = _example_label(err) if isinstance(err, UnexpectedToken) else None
    if isinstance(err, UnexpectedToken) and err.token.type == "$END":
        err = UnexpectedEOF(err.expected)
    if isinstance(err, UnexpectedEOF):
        unclosed = _unclosed_bracket(chunk)
        if unclosed is not None:
            at, ch = unclosed
            closer = {"(": ")", "[": "]"}[ch]
            kw = chunk.lstrip().split(None, 1)[0] if chunk.strip() else ""
            where = f"the {kw} declaration" if kw in DECLARATION_KEYWORDS else "the declaration"
            diags.add("E109", Span(source, base + at, base + at + 1), bracket=q(ch),
                      help=f"add a {q(closer)} where it ends; {where} ends before one")
            return
        end = base + len(chunk.rstrip())
        span = Span(source, max(base, end - 1), end)
        kw = chunk.lstrip().split(None, 1)[0] if chunk.strip() else "the file"
        expected, _ = _describe_expected(parser, err.expected)
        where = f"{q(kw)} declaration" if kw in DECLARATION_KEYWORDS else "a declaration"
        diags.add("E102", span, where=where, expected=expected, help=label)
        return
    where = err.token.start_pos if isinstance(err, UnexpectedToken) else pos
    if where is not None and _quote_in_placeholder(source, base, chunk, where, diags):
        return
    if isinstance(err, UnexpectedCharacters):
        start = base + (pos or 0)
        span = Span(source, start, start + 1)
        ch = chunk[pos] if pos is not None and pos < len(chunk) else "?"
        if ch == '"':
            diags.add("E104", Span(source, start, start + len(chunk[pos:].split("\n", 1)[0])))
            return
        help_ = {"&": "write `and` instead of &&", "|": "write `or` instead of ||",
                 "!": "write `not` (or `!=` to compare)", "'": 'strings use double quotes: "like this"',
                 "%": "a percentage needs a number before it: 10%",
                 "{": "braces belong to schema and decision field lists"}.get(ch)
        diags.add("E103", span, char=q(ch), help=help_)
        return
    if isinstance(err, UnexpectedToken):
        tok = err.token
        span = Span(source, base + tok.start_pos, base + tok.end_pos)
        reversed_op = chunk[tok.start_pos:tok.start_pos + 2]
        if str(tok) == "=" and reversed_op in _REVERSED:
            diags.add("E106", Span(source, span.start, span.start + 2),
                      message=f"{q(reversed_op)} is not a comparison",
                      help=f"did you mean {q(_REVERSED[reversed_op])}? ({_REVERSED_WORDS[reversed_op]})")
            return
        arrow = _assign_mistake(tok, chunk)
        if arrow is not None:
            start, end, message = arrow
            diags.add("E106", Span(source, base + start, base + end), message=message)
            return
        expected, keywords = _describe_expected(parser, _for_declaration(err.expected, chunk))
        help_ = None
        before = chunk[:tok.start_pos].rstrip()
        m = _OPEN_QUOTE.search(before)
        if m and before.endswith('"'):
            help_ = f"is a closing quote missing? the text {m.group(0)} runs on into the next clause"
        elif tok.type == "NAME" and str(tok) in ("month", "months", "year", "years"):
            help_ = "months and years vary in length: write days or weeks (30 days, 52 weeks)"
        elif tok.type == "PERCENT":
            help_ = "percentages are for experiment weights; elsewhere write a number (0.1 or 10)"
        elif tok.type == "NAME" and _unit_suggestion(str(tok), before):
            help_ = _unit_suggestion(str(tok), before)      # `30 dayz`: a misspelt unit
        elif tok.type == "NAME":
            help_ = did_you_mean(str(tok), keywords, cutoff=0.6)
            if help_ is None and str(tok) in UNITS:
                help_ = f"a unit needs a number before it, e.g. 14 {tok}"
        if label and help_ is None:
            if label == ASSIGN_LABEL:
                start, end, label = _assign_label(tok, chunk)
                span = Span(source, base + start, base + end)
            diags.add("E106", span, message=label)
            return
        diags.add("E101", span, found=_found(tok), expected=expected, help=help_)
        return
    raise err  # pragma: no cover


def _run(text: str, source: SourceFile, base: int, diags: Diagnostics, ids: count, start: str):
    parser = _get_parser()
    Builder.bind(Context(source, base, diags, ids))
    return parser.parse(text, start=start)


def _chunks(text: str) -> list[tuple[int, str]]:
    starts = [m.start() for m in _DECL_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    starts.append(len(text))
    return [(a, text[a:b]) for a, b in zip(starts, starts[1:]) if text[a:b].strip()]


def _chunk_name(chunk: str) -> str | None:
    m = re.match(r"\s*(\w+)\s+(\w+)", chunk)
    return m.group(2) if m and m.group(1) in DECLARATION_KEYWORDS else None


def parse(source: SourceFile, diags: Diagnostics, ids: count | None = None) -> ast.Module:
    """Parse one file.  Syntax errors go to ``diags``; the returned module
    holds every declaration that parsed, and ``broken`` names the ones that
    did not (so later stages do not report them as unknown)."""
    ids = ids if ids is not None else count()
    size = len(source.text.encode("utf-8"))
    if size > limits.MAX_FILE_BYTES:
        diags.add("E501", Span(source, 0, 0), path=source.path, size=size, limit=limits.MAX_FILE_BYTES)
        return ast.Module(source, (), incomplete=True)
    try:
        decls = _run(source.text, source, 0, diags, ids, "start")
        return ast.Module(source, tuple(decls))
    except VisitError as err:
        if not isinstance(err.orig_exc, RecursionError):  # pragma: no cover - builder bugs are bugs
            raise err.orig_exc
    except (UnexpectedInput, RecursionError):
        pass
    decls: list = []
    broken: list[str] = []
    incomplete = False
    for base, chunk in _chunks(source.text):
        try:
            decls.extend(_run(chunk, source, base, diags, ids, "start"))
            continue
        except VisitError as err:
            if not isinstance(err.orig_exc, RecursionError):  # pragma: no cover
                raise err.orig_exc
            _report_too_deep(source, base, chunk, diags)
        except RecursionError:
            _report_too_deep(source, base, chunk, diags)
        except UnexpectedInput as err:
            _report_syntax_error(err, source, base, chunk, diags)
        incomplete = True
        name = _chunk_name(chunk)
        if name:
            broken.append(name)
    return ast.Module(source, tuple(decls), tuple(broken), incomplete)


def _report_too_deep(source: SourceFile, base: int, chunk: str, diags: Diagnostics) -> None:
    depth = max(_nesting(chunk), limits.MAX_DEPTH + 1)
    first_line = chunk.split("\n", 1)[0]
    diags.add("E502", Span(source, base, base + len(first_line)), depth=depth, limit=limits.MAX_DEPTH)


def _nesting(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "([":
            depth += 1
            best = max(best, depth)
        elif ch in ")]":
            depth -= 1
    return best


def parse_expression(text: str, source: SourceFile, base: int, diags: Diagnostics,
                     ids: count) -> ast.Expr | None:
    """Parse one expression (used for ``{...}`` placeholders in messages)."""
    try:
        return _run(text, source, base, diags, ids, "expr")
    except UnexpectedInput as err:
        _report_syntax_error(err, source, base, text, diags)
        return None
