"""Parse rule files into the AST, reporting every syntax error with a position.

The grammar lives in ``maple.lark`` (LALR(1), contextual lexer).  A Lark
transformer embedded in the parser builds :mod:`.ast` nodes directly, so no
parse tree is kept.  When a file has a syntax error, it is parsed again one
declaration at a time (a declaration starts with its keyword at the start of a
line), so one mistake does not hide the errors, or the valid rules, after it.
"""
from __future__ import annotations

import re
import threading
from importlib import resources
from itertools import count

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .. import limits
from ..diagnostics import Diagnostics, did_you_mean, q
from ..source import SourceFile, Span
from . import ast

DECLARATION_KEYWORDS = ("schema", "decision", "rule", "segment", "offer", "experiment", "const")

#: Every keyword of the language (for "did you mean" and the editor grammar).
KEYWORDS = DECLARATION_KEYWORDS + (
    "pick", "default", "top", "priority", "when", "eligible", "then", "score", "because",
    "for", "cap", "per", "channels", "message", "on", "salt", "holdout", "variant",
    "and", "or", "not", "in", "is", "set", "missing", "starts", "ends", "with", "contains",
    "within", "ago", "true", "false", "now", "enum", "map",
)

UNITS = {
    "week": ("duration", 604800.0), "weeks": ("duration", 604800.0),
    "day": ("duration", 86400.0), "days": ("duration", 86400.0),
    "hour": ("duration", 3600.0), "hours": ("duration", 3600.0),
    "minute": ("duration", 60.0), "minutes": ("duration", 60.0),
    "min": ("duration", 60.0), "mins": ("duration", 60.0),
    "second": ("duration", 1.0), "seconds": ("duration", 1.0),
    "sec": ("duration", 1.0), "secs": ("duration", 1.0),
    "km": ("distance", 1.0), "m": ("distance", 0.001), "mi": ("distance", 1.609344),
}

_QUANTITY = re.compile(r"(\d+(?:\.\d+)?|\.\d+)[ \t]*([a-z]+)")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_OPEN_QUOTE = re.compile(r'"[^"\n]*\b(?:then|when|because|score|and|or|priority)\b[^"\n]*"$')
_DECL_START = re.compile(r"^(?:%s)\b" % "|".join(DECLARATION_KEYWORDS), re.M)

_TERMINAL_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a string ("...")',
    "QUANTITY": "a duration or distance (14 days, 25 km)", "PERCENT": "a percentage (10%)",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)", "$END": "the end of the file",
}


def unescape(raw: str) -> str:
    """The value of a STRING token (quotes removed, escapes resolved)."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])


class _Context:
    """Per-parse state the embedded transformer reads (guarded by a lock)."""

    def __init__(self, source: SourceFile, base: int, diags: Diagnostics, ids: count):
        self.source, self.base, self.diags, self.ids = source, base, diags, ids

    def span(self, start: int, end: int) -> Span:
        return Span(self.source, start + self.base, end + self.base)


_CLAUSE_TITLES = {
    "priority": "priority", "when": "when", "then": "then", "score": "score",
    "because": "because", "for": "for", "channels": "channels", "message": "message",
    "pick": "pick", "default": "default", "top": "top", "on": "on", "salt": "salt",
    "holdout": "holdout",
}


@v_args(meta=True)
class _Builder(Transformer):
    """Builds AST nodes from the parser's reductions."""

    def __init__(self, ctx: _Context):
        super().__init__()
        self.ctx = ctx

    # -- helpers
    def _span(self, meta) -> Span:
        return self.ctx.span(meta.start_pos, meta.end_pos)

    def _tok_span(self, tok: Token) -> Span:
        return self.ctx.span(tok.start_pos, tok.end_pos)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tok_span(tok))

    def _nid(self) -> int:
        return next(self.ctx.ids)

    def _expr(self, cls, meta, *args):
        node = cls(self._nid(), self._span(meta), *args)
        return node

    def _number(self, tok: Token, what: str, whole: bool = False) -> float:
        value = float(tok)
        if whole and value != int(value):
            self.ctx.diags.add("E107", self._tok_span(tok), what=what, value=q(tok))
        return value

    def _clauses(self, kind: str, name: ast.Ident, clauses) -> dict:
        """Clause tuples (key, value, span) -> dict; a repeated clause is E105."""
        found: dict = {}
        for key, value, span in clauses:
            if key in ("then", "cap") and key in found:
                found[key] = found[key] + value
                continue
            if key in found:
                self.ctx.diags.add("E105", span, clause=q(_CLAUSE_TITLES.get(key, key)),
                                   kind=kind, name=q(name.name))
                continue
            found[key] = value
        return found

    # -- file
    def start(self, meta, decls):
        return list(decls)

    # -- schema and types
    def schema_decl(self, meta, c):
        return ast.SchemaDecl(self._ident(c[0]), c[1], self._span(meta))

    def record_body(self, meta, fields):
        return tuple(fields)

    def field_decl(self, meta, c):
        return ast.FieldDecl(self._ident(c[0]), c[1], None, self._span(meta))

    def simple_type(self, meta, c):
        return ast.SimpleTypeExpr(self._ident(c[0]), self._span(meta))

    def enum_type(self, meta, c):
        members = tuple(ast.Ident(unescape(t) if t.type == "STRING" else str(t), self._tok_span(t))
                        for t in c)
        return ast.EnumTypeExpr(members, self._span(meta))

    def set_type(self, meta, c):
        return ast.SetTypeExpr(c[0], self._span(meta))

    def map_type(self, meta, c):
        return ast.MapTypeExpr(c[0], self._span(meta))

    def record_type(self, meta, c):
        return ast.RecordTypeExpr(c[0], self._span(meta))

    # -- decisions
    def decision_decl(self, meta, c):
        name = self._ident(c[0])
        type_ = c[1]
        fields = c[-1]
        cl = self._clauses("decision", name, [x for x in c[2:-1]])
        return ast.DecisionDecl(name, type_, cl.get("pick"), cl.get("default"), cl.get("top"),
                                tuple(cl.get("cap", ())), fields, self._span(meta))

    def pick_clause(self, meta, c):
        return ("pick", self._ident(c[0]), self._span(meta))

    def default_clause(self, meta, c):
        return ("default", c[0], self._span(meta))

    def top_clause(self, meta, c):
        return ("top", int(self._number(c[0], "top", whole=True)), self._span(meta))

    def cap_clause(self, meta, c):
        n = int(self._number(c[0], "a cap's count", whole=True))
        return ("cap", (ast.Cap(n, c[1], self._span(meta)),), self._span(meta))

    def decision_fields(self, meta, fields):
        return tuple(fields)

    def decision_field(self, meta, c):
        return ast.FieldDecl(self._ident(c[0]), c[1], c[2], self._span(meta))

    # -- rules
    def rule_decl(self, meta, c):
        name = self._ident(c[0])
        cl = self._clauses("rule", name, c[1:])
        return ast.RuleDecl(name, int(cl.get("priority", 0)), cl.get("when"),
                            tuple(cl.get("then", ())), cl.get("score"), cl.get("because"),
                            self._span(meta))

    def priority_clause(self, meta, c):
        value = c[0]
        if isinstance(value, Token):
            value = self._number(value, "priority", whole=True)
        if abs(value) > limits.MAX_PRIORITY:
            self.ctx.diags.add("E409", self._span(meta), what="priority", low=-limits.MAX_PRIORITY,
                               high=limits.MAX_PRIORITY, value=int(value))
        return ("priority", value, self._span(meta))

    def negative(self, meta, c):
        return -self._number(c[0], "priority", whole=True)

    def when_clause(self, meta, c):
        return ("when", c[0], self._span(meta))

    def then_clause(self, meta, c):
        return ("then", tuple(c), self._span(meta))

    def assignment(self, meta, c):
        field = self._ident(c[1]) if c[1] is not None else None
        return ast.Assignment(self._ident(c[0]), field, c[2], self._span(meta))

    def score_clause(self, meta, c):
        return ("score", c[0], self._span(meta))

    def because_clause(self, meta, c):
        return ("because", unescape(c[0]), self._span(meta))

    # -- segments, constants
    def segment_decl(self, meta, c):
        return ast.SegmentDecl(self._ident(c[0]), c[1], self._span(meta))

    def const_decl(self, meta, c):
        return ast.ConstDecl(self._ident(c[0]), c[1], self._span(meta))

    # -- offers
    def offer_decl(self, meta, c):
        name = self._ident(c[0])
        cl = self._clauses("offer", name, c[1:])
        return ast.OfferDecl(name, cl.get("for"), int(cl.get("priority", 0)), cl.get("when"),
                             cl.get("score"), tuple(cl.get("cap", ())), cl.get("channels"),
                             cl.get("message"), tuple(cl.get("then", ())), cl.get("because"),
                             self._span(meta))

    def for_clause(self, meta, c):
        return ("for", self._ident(c[0]), self._span(meta))

    def channels_clause(self, meta, c):
        names = tuple(ast.Ident(unescape(t) if t.type == "STRING" else str(t), self._tok_span(t))
                      for t in c)
        return ("channels", names, self._span(meta))

    def message_clause(self, meta, c):
        tok = c[0]
        return ("message", ast.String(self._nid(), self._tok_span(tok), unescape(tok)), self._span(meta))

    # -- experiments
    def experiment_decl(self, meta, c):
        name = self._ident(c[0])
        variants = tuple(x[1] for x in c[1:] if x[0] == "variant")
        cl = self._clauses("experiment", name, [x for x in c[1:] if x[0] != "variant"])
        return ast.ExperimentDecl(name, tuple(cl.get("on", ())), cl.get("salt"),
                                  cl.get("holdout", 0.0), variants, self._span(meta))

    def on_clause(self, meta, c):
        return ("on", tuple(self._ident(t) for t in c), self._span(meta))

    def salt_clause(self, meta, c):
        return ("salt", unescape(c[0]), self._span(meta))

    def holdout_clause(self, meta, c):
        return ("holdout", float(str(c[0]).rstrip("% \t")), self._span(meta))

    def variant_clause(self, meta, c):
        span = self._span(meta)
        return ("variant", ast.Variant(self._ident(c[0]), float(str(c[1]).rstrip("% \t")), span), span)

    # -- expressions
    def or_(self, meta, c):
        return self._expr(ast.Logic, meta, "or", tuple(c))

    def and_(self, meta, c):
        return self._expr(ast.Logic, meta, "and", tuple(c))

    def not_(self, meta, c):
        return self._expr(ast.Unary, meta, "not", c[0])

    def neg(self, meta, c):
        return self._expr(ast.Unary, meta, "neg", c[0])

    def compare(self, meta, c):
        return self._expr(ast.Binary, meta, str(c[1]), c[0], c[2])

    def _binary(op):  # noqa: N805 - a factory for the methods below
        def method(self, meta, c):
            return self._expr(ast.Binary, meta, op, c[0], c[1])
        return method

    in_ = _binary("in")
    not_in = _binary("not in")
    starts_with = _binary("starts with")
    ends_with = _binary("ends with")
    contains = _binary("contains")
    within = _binary("within")
    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    del _binary

    def is_set(self, meta, c):
        return self._expr(ast.Presence, meta, c[0], True)

    def is_missing(self, meta, c):
        return self._expr(ast.Presence, meta, c[0], False)

    def attr(self, meta, c):
        return self._expr(ast.Attr, meta, c[0], self._ident(c[1]))

    def index(self, meta, c):
        return self._expr(ast.Index, meta, c[0], c[1])

    def ago(self, meta, c):
        return self._expr(ast.Ago, meta, c[0])

    def number(self, meta, c):
        return self._expr(ast.Number, meta, float(c[0]))

    def quantity(self, meta, c):
        m = _QUANTITY.fullmatch(str(c[0]))
        kind, factor = UNITS[m.group(2)]
        return self._expr(ast.Quantity, meta, float(m.group(1)) * factor, kind, m.group(2))

    def string(self, meta, c):
        return self._expr(ast.String, meta, unescape(c[0]))

    def true(self, meta, c):
        return self._expr(ast.Bool, meta, True)

    def false(self, meta, c):
        return self._expr(ast.Bool, meta, False)

    def now(self, meta, c):
        return self._expr(ast.Now, meta)

    def name(self, meta, c):
        return self._expr(ast.Name, meta, str(c[0]))

    def call(self, meta, c):
        return self._expr(ast.Call, meta, self._ident(c[0]), tuple(x for x in c[1:] if x is not None))

    def list(self, meta, c):
        items = tuple(x for x in c if x is not None)
        if len(items) > limits.MAX_LIST_ITEMS:
            self.ctx.diags.add("E504", self._span(meta), what="items in this list",
                               count=len(items), limit=limits.MAX_LIST_ITEMS)
        return self._expr(ast.ListLit, meta, items)


#: Words that may never name a segment or constant: in a position where an
#: expression starts they are read as the keyword, so ``when a and then`` is
#: reported at ``then`` (the contextual lexer would otherwise take it as a name).
RESERVED = ("schema", "decision", "rule", "segment", "offer", "const", "pick", "default", "priority",
            "when", "eligible", "then", "score", "because", "cap", "channels", "message")
_EXPRESSION_STARTERS = ("and", "or", "not", "in", "+", "-", "*", "/", "(", "[", "=",
                        "when", "score", "default", "per", "with", "contains", "within")

_lock = threading.Lock()
_parser: Lark | None = None
_last = threading.local()


_PREVIOUS = re.compile(r"(==|!=|<=|>=|[-+*/(\[=<>]|[A-Za-z_][A-Za-z0-9_]*)\s*$")


def _make_callbacks(grammar: str) -> dict:
    """A lexer callback that reads a reserved word as its keyword where an
    expression starts (after an operator or an opening bracket)."""
    probe = Lark(grammar, parser="lalr", lexer="contextual", start=["start", "expr"])
    literal = {t.pattern.value: t.name for t in probe.terminals if t.pattern.type == "str"}
    reserved = {w: literal[w] for w in RESERVED if w in literal}
    starters = set(_EXPRESSION_STARTERS) | {"==", "!=", "<=", ">=", "<", ">"}

    def name(tok: Token) -> Token:
        kw = reserved.get(str(tok))
        if kw is None:
            return tok
        text = getattr(_last, "text", "")
        if text[tok.end_pos:tok.end_pos + 1] == ".":     # experiment.offer_copy: a name
            return tok
        m = _PREVIOUS.search(text, max(0, tok.start_pos - 40), tok.start_pos)
        if m and m.group(1) in starters:
            return Token(kw, str(tok), tok.start_pos, tok.line, tok.column, tok.end_line,
                         tok.end_column, tok.end_pos)
        return tok

    return {"NAME": name}


def _get_parser() -> Lark:
    global _parser
    with _lock:
        if _parser is None:
            grammar = resources.files(__package__).joinpath("maple.lark").read_text(encoding="utf-8")
            _parser = Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                           maybe_placeholders=True, start=["start", "expr"],
                           lexer_callbacks=_make_callbacks(grammar))
    return _parser


# Labelled bad examples: a syntax error at the same parser state as one of
# these gets the friendlier message (Lark's match_examples).
_BAD_EXAMPLES = {
    "use == to compare two values (a single = assigns, in then)": [
        "rule r when profile.a = 1",
        "rule r when profile.a and profile.b = 1",
        "segment s = profile.a = 1",
        "offer o when profile.a = 1",
    ],
    "use = to assign a value in then (== compares)": [
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
    parser = _get_parser()
    if _example_index is None:
        index: dict = {}
        for label, examples in _BAD_EXAMPLES.items():
            for text in examples:
                try:
                    _last.text = text
                    parser.parse(text, start="start")
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
        end = base + len(chunk.rstrip())
        span = Span(source, max(base, end - 1), end)
        kw = chunk.lstrip().split(None, 1)[0] if chunk.strip() else "the file"
        expected, _ = _describe_expected(parser, err.expected)
        where = f"{q(kw)} declaration" if kw in DECLARATION_KEYWORDS else "a declaration"
        diags.add("E102", span, where=where, expected=expected, help=label)
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
        expected, keywords = _describe_expected(parser, err.expected)
        help_ = None
        before = chunk[:tok.start_pos].rstrip()
        m = _OPEN_QUOTE.search(before)
        if m and before.endswith('"'):
            help_ = f"is a closing quote missing? the text {m.group(0)} runs on into the next clause"
        elif tok.type == "NAME":
            help_ = did_you_mean(str(tok), keywords, cutoff=0.6)
            if help_ is None and str(tok) in UNITS:
                help_ = f"a unit needs a number before it, e.g. 14 {tok}"
        if label and help_ is None:
            diags.add("E106", span, message=label)
            return
        diags.add("E101", span, found=_found(tok), expected=expected, help=help_)
        return
    raise err  # pragma: no cover


def _run(text: str, source: SourceFile, base: int, diags: Diagnostics, ids: count, start: str):
    _last.text = text
    tree = _get_parser().parse(text, start=start)
    return _Builder(_Context(source, base, diags, ids)).transform(tree)


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
        return ast.Module(source, ())
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
        name = _chunk_name(chunk)
        if name:
            broken.append(name)
    return ast.Module(source, tuple(decls), tuple(broken))


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
