"""Build AST nodes while the LALR parser reduces (no parse tree is kept).

The builder is embedded in the Lark parser, so it receives each rule's
children as the parser reduces it.  The parser keeps every token
(``keep_all_tokens``), so a node's span runs from its first token to its last,
keywords and brackets included; callbacks skip the punctuation they do not
need.  Per-parse state (the source, the offset of the chunk being parsed, the
diagnostics, the node-id counter) lives in a thread-local :class:`Context`.
"""
from __future__ import annotations

import re
import threading
from itertools import count

from lark import Token, Transformer

from .. import limits
from ..diagnostics import Diagnostics, q
from ..source import SourceFile, Span
from . import ast

#: tokens that carry a value; every other token is punctuation or a keyword
VALUE_TOKENS = frozenset({"NAME", "NUMBER", "STRING", "QUANTITY", "PERCENT", "COMPARE"})

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



def unescape(raw: str) -> str:
    """The value of a STRING token (quotes removed, escapes resolved)."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])


class Context:
    """What one parse needs: its source, chunk offset, diagnostics, node ids."""

    def __init__(self, source: SourceFile, base: int, diags: Diagnostics, ids: count):
        self.source, self.base, self.diags, self.ids = source, base, diags, ids


class Seq(tuple):
    """A list of children that remembers where it was written."""

    span: Span

    def __new__(cls, items, span):
        obj = super().__new__(cls, items)
        obj.span = span
        return obj


class Clause(tuple):
    """(key, value, span) of one clause of a declaration."""

    def __new__(cls, key, value, span):
        return super().__new__(cls, (key, value, span))

    @property
    def span(self) -> Span:
        return self[2]


_local = threading.local()


def _start(x) -> int:
    if isinstance(x, Token):
        return x.start_pos
    return x.span.start


def _end(x) -> int:
    if isinstance(x, Token):
        return x.end_pos
    return x.span.end


def _values(c) -> list:
    """The children that carry meaning (no punctuation or keywords)."""
    return [x for x in c if not isinstance(x, Token) or x.type in VALUE_TOKENS]


class Builder(Transformer):
    """Callbacks per grammar rule; see maple.lark."""

    # -- context and helpers
    @property
    def ctx(self) -> Context:
        return _local.ctx

    @staticmethod
    def bind(ctx: Context) -> None:
        _local.ctx = ctx

    def _span(self, c) -> Span:
        base = _local.ctx.base
        return Span(_local.ctx.source, _start(c[0]) + base if isinstance(c[0], Token) else _start(c[0]),
                    _end(c[-1]) + base if isinstance(c[-1], Token) else _end(c[-1]))

    def _tok_span(self, tok: Token) -> Span:
        base = _local.ctx.base
        return Span(_local.ctx.source, tok.start_pos + base, tok.end_pos + base)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tok_span(tok))

    def _node(self, cls, c, *args):
        return cls(next(_local.ctx.ids), self._span(c), *args)

    def _number(self, tok: Token, what: str, whole: bool = False) -> float:
        value = float(tok)
        if whole and value != int(value):
            _local.ctx.diags.add("E107", self._tok_span(tok), what=what, value=q(tok))
        return value

    def _clauses(self, kind: str, name: ast.Ident, clauses) -> dict:
        """Clause tuples -> dict; a repeated clause is E105 (then and cap add up)."""
        found: dict = {}
        for key, value, span in clauses:
            if key in ("then", "cap") and key in found:
                found[key] = found[key] + value
                continue
            if key in found:
                _local.ctx.diags.add("E105", span, clause=q(key), kind=kind,
                                     name=q(name.name))
                continue
            found[key] = value
        return found

    # -- file
    def start(self, c):
        return list(c)

    # -- schema and types
    def schema_decl(self, c):
        v = _values(c)
        return ast.SchemaDecl(self._ident(v[0]), tuple(v[1]), self._span(c))

    def record_body(self, c):
        return Seq(_values(c), self._span(c))

    def field_decl(self, c):
        v = _values(c)
        return ast.FieldDecl(self._ident(v[0]), v[1], None, self._span(c))

    def simple_type(self, c):
        return ast.SimpleTypeExpr(self._ident(c[0]), self._span(c))

    def enum_type(self, c):
        members = tuple(ast.Ident(unescape(t) if t.type == "STRING" else str(t), self._tok_span(t))
                        for t in _values(c))
        return ast.EnumTypeExpr(members, self._span(c))

    def set_type(self, c):
        return ast.SetTypeExpr(_values(c)[0], self._span(c))

    def map_type(self, c):
        return ast.MapTypeExpr(_values(c)[0], self._span(c))

    def record_type(self, c):
        return ast.RecordTypeExpr(tuple(c[0]), self._span(c))

    # -- decisions
    def decision_decl(self, c):
        v = _values(c)
        name = self._ident(v[0])
        type_ = next((x for x in v if isinstance(x, Seq) and getattr(x, "is_type", False)), None)
        fields = next((x for x in v if isinstance(x, Seq) and getattr(x, "is_fields", False)), None)
        cl = self._clauses("decision", name, [x for x in v if isinstance(x, Clause)])
        return ast.DecisionDecl(name, type_[0] if type_ else None, cl.get("pick"), cl.get("default"),
                                cl.get("top"), tuple(cl.get("cap", ())),
                                tuple(fields) if fields is not None else None, self._span(c))

    def decision_type(self, c):
        seq = Seq(_values(c), self._span(c))
        seq.is_type = True
        return seq

    def pick_clause(self, c):
        return Clause("pick", self._ident(_values(c)[0]), self._span(c))

    def default_clause(self, c):
        return Clause("default", _values(c)[0], self._span(c))

    def top_clause(self, c):
        return Clause("top", int(self._number(_values(c)[0], "top", whole=True)), self._span(c))

    def cap_clause(self, c):
        v = _values(c)
        n = int(self._number(v[0], "a cap's count", whole=True))
        span = self._span(c)
        return Clause("cap", (ast.Cap(n, v[1], span),), span)

    def decision_fields(self, c):
        seq = Seq(_values(c), self._span(c))
        seq.is_fields = True
        return seq

    def decision_field(self, c):
        v = _values(c)
        return ast.FieldDecl(self._ident(v[0]), v[1], v[2], self._span(c))

    # -- rules
    def rule_decl(self, c):
        v = _values(c)
        name = self._ident(v[0])
        cl = self._clauses("rule", name, v[1:])
        return ast.RuleDecl(name, int(cl.get("priority", 0)), cl.get("when"), tuple(cl.get("then", ())),
                            cl.get("score"), cl.get("because"), self._span(c))

    def priority_clause(self, c):
        v = c[-1]
        value = self._number(v, "priority", whole=True) if isinstance(v, Token) else v[0]
        if abs(value) > limits.MAX_PRIORITY:
            _local.ctx.diags.add("E409", self._span(c), what="priority", low=-limits.MAX_PRIORITY,
                                 high=limits.MAX_PRIORITY, value=int(value))
        return Clause("priority", value, self._span(c))

    def negative(self, c):
        return Seq([-self._number(_values(c)[0], "priority", whole=True)], self._span(c))

    def when_clause(self, c):
        return Clause("when", _values(c)[0], self._span(c))

    def then_clause(self, c):
        return Clause("then", tuple(_values(c)), self._span(c))

    def assignment(self, c):
        v = _values(c)
        field = self._ident(v[1]) if len(v) == 3 else None
        return ast.Assignment(self._ident(v[0]), field, v[-1], self._span(c))

    def score_clause(self, c):
        return Clause("score", _values(c)[0], self._span(c))

    def because_clause(self, c):
        return Clause("because", unescape(_values(c)[0]), self._span(c))

    # -- segments, constants
    def segment_decl(self, c):
        v = _values(c)
        return ast.SegmentDecl(self._ident(v[0]), v[1], self._span(c))

    def const_decl(self, c):
        v = _values(c)
        return ast.ConstDecl(self._ident(v[0]), v[1], self._span(c))

    # -- offers
    def offer_decl(self, c):
        v = _values(c)
        name = self._ident(v[0])
        cl = self._clauses("offer", name, v[1:])
        return ast.OfferDecl(name, cl.get("for"), int(cl.get("priority", 0)), cl.get("when"), cl.get("score"),
                             tuple(cl.get("cap", ())), cl.get("channels"), cl.get("message"),
                             tuple(cl.get("then", ())), cl.get("because"), self._span(c))

    def for_clause(self, c):
        return Clause("for", self._ident(_values(c)[0]), self._span(c))

    def channels_clause(self, c):
        names = tuple(ast.Ident(unescape(t) if t.type == "STRING" else str(t), self._tok_span(t))
                      for t in _values(c))
        return Clause("channels", names, self._span(c))

    def message_clause(self, c):
        tok = _values(c)[0]
        return Clause("message", ast.String(next(_local.ctx.ids), self._tok_span(tok), unescape(tok)),
                      self._span(c))

    # -- experiments
    def experiment_decl(self, c):
        v = _values(c)
        name = self._ident(v[0])
        variants = tuple(x[1] for x in v[1:] if x[0] == "variant")
        cl = self._clauses("experiment", name, [x for x in v[1:] if x[0] != "variant"])
        return ast.ExperimentDecl(name, tuple(cl.get("on", ())), cl.get("salt"), cl.get("holdout", 0.0),
                                  variants, self._span(c))

    def on_clause(self, c):
        return Clause("on", tuple(self._ident(t) for t in _values(c)), self._span(c))

    def salt_clause(self, c):
        return Clause("salt", unescape(_values(c)[0]), self._span(c))

    def holdout_clause(self, c):
        return Clause("holdout", float(str(_values(c)[0]).rstrip("% \t")), self._span(c))

    def variant_clause(self, c):
        v = _values(c)
        span = self._span(c)
        return Clause("variant", ast.Variant(self._ident(v[0]), float(str(v[1]).rstrip("% \t")), span), span)

    # -- expressions
    def or_(self, c):
        return self._node(ast.Logic, c, "or", tuple(_values(c)))

    def and_(self, c):
        return self._node(ast.Logic, c, "and", tuple(_values(c)))

    def not_(self, c):
        return self._node(ast.Unary, c, "not", c[-1])

    def neg(self, c):
        return self._node(ast.Unary, c, "neg", c[-1])

    def compare(self, c):
        return self._node(ast.Binary, c, str(c[1]), c[0], c[2])

    def _binary(op):  # noqa: N805 - a factory for the methods below
        def method(self, c):
            return self._node(ast.Binary, c, op, c[0], c[-1])
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

    def is_set(self, c):
        return self._node(ast.Presence, c, c[0], True)

    def is_missing(self, c):
        return self._node(ast.Presence, c, c[0], False)

    def attr(self, c):
        return self._node(ast.Attr, c, c[0], self._ident(c[2]))

    def index(self, c):
        return self._node(ast.Index, c, c[0], c[2])

    def ago(self, c):
        return self._node(ast.Ago, c, c[0])

    def number(self, c):
        return self._node(ast.Number, c, float(c[0]))

    def quantity(self, c):
        m = _QUANTITY.fullmatch(str(c[0]))
        kind, factor = UNITS[m.group(2)]
        return self._node(ast.Quantity, c, float(m.group(1)) * factor, kind, m.group(2))

    def string(self, c):
        return self._node(ast.String, c, unescape(c[0]))

    def true(self, c):
        return self._node(ast.Bool, c, True)

    def false(self, c):
        return self._node(ast.Bool, c, False)

    def now(self, c):
        return self._node(ast.Now, c)

    def name(self, c):
        return self._node(ast.Name, c, str(c[0]))

    def call(self, c):
        v = _values(c)
        return self._node(ast.Call, c, self._ident(v[0]), tuple(v[1:]))

    def list(self, c):
        items = tuple(_values(c))
        if len(items) > limits.MAX_LIST_ITEMS:
            _local.ctx.diags.add("E504", self._span(c), what="items in this list", count=len(items),
                                 limit=limits.MAX_LIST_ITEMS)
        return self._node(ast.ListLit, c, items)

    def paren(self, c):
        return c[1]
