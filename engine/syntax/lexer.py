"""The lexer: one regular expression, keywords decided by the parser's state.

Lark's own contextual lexer tries terminals one by one for every token; this
one scans each token with a single compiled pattern and then, for a word,
asks the LALR state whether a keyword of that spelling is acceptable here.
So ``set`` is the keyword in ``is set`` and ``set<string>`` but an attribute
in ``profile.set``.  One exception makes errors clearer: a reserved word
(``then``, ``because``, ...) where an expression starts is always the
keyword, so ``when a and then`` fails at ``then``, not one token later.
"""
from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer

_UNITS = r"weeks?|days?|hours?|minutes?|mins?|seconds?|secs?|km|mi|m"
_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"

MASTER = re.compile(
    rf"""
    (?P<WS>[ \t\r\n\f]+)
  | (?P<COMMENT>\#[^\n]*)
  | (?P<STRING>"(?:\\[^\n]|[^"\\\n])*")
  | (?P<QUANTITY>{_NUM}[ \t]*(?:{_UNITS})\b)
  | (?P<PERCENT>{_NUM}[ \t]*%)
  | (?P<NUMBER>{_NUM}(?:[eE][+-]?\d+)?)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<OP>==|!=|<=|>=|[<>=(){{}}\[\],.:+\-*/])
    """,
    re.X,
)

#: `score.x`, `score . x`: a reserved word followed by a dot is an attribute root
_ATTRIBUTE = re.compile(r"[ \t]*\.")

#: where an expression starts: a reserved word there is read as the keyword
_STARTERS = frozenset({"AND", "OR", "NOT", "IN", "PLUS", "MINUS", "STAR", "SLASH", "LPAR", "LSQB",
                       "EQUAL", "WHEN", "SCORE", "DEFAULT", "PER", "WITH", "CONTAINS", "WITHIN", "COMPARE"})


class MapleLexer(Lexer):
    """A Lark custom lexer (interface 2: it sees the parser state)."""

    __future_interface__ = 2
    reserved: frozenset = frozenset()

    def __init__(self, lexer_conf):
        literal = {t.pattern.value: t.name for t in lexer_conf.terminals if t.pattern.type == "str"}
        self.keywords = {w: name for w, name in literal.items() if w.isalpha()}
        self.ops = {w: name for w, name in literal.items() if not w.isalpha()}
        self.reserved_types = {self.keywords[w] for w in self.reserved if w in self.keywords}

    def lex(self, lexer_state, parser_state):
        text_slice = lexer_state.text
        text = text_slice.text
        pos, end = text_slice.start, text_slice.end
        states = parser_state.parse_conf.parse_table.states
        keywords, ops, reserved = self.keywords, self.ops, self.reserved_types
        match = MASTER.match
        prev = None
        while pos < end:
            m = match(text, pos)
            if m is None:
                raise UnexpectedCharacters(text, pos, 0, 0, state=parser_state)
            kind = m.lastgroup
            value = m.group()
            start, pos = pos, m.end()
            if kind == "WS" or kind == "COMMENT":
                continue
            if kind == "NAME":
                kw = keywords.get(value)
                if kw is not None:
                    accepts = states[parser_state.position]
                    if kw in accepts:
                        kind = kw
                    elif "NAME" not in accepts or (kw in reserved and prev in _STARTERS
                                                   and not _ATTRIBUTE.match(text, pos)):
                        kind = kw          # the parser reports it, with the keyword's name
            elif kind == "OP":
                if value in ("<", ">"):
                    kind = "COMPARE" if "COMPARE" in states[parser_state.position] else ops[value]
                elif value in ("==", "!=", "<=", ">="):
                    kind = "COMPARE"
                else:
                    kind = ops[value]
            prev = kind
            yield Token(kind, value, start, None, None, None, None, pos)
