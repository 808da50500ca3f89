"""``maple fmt``: rule files in one canonical layout, every comment kept.

How it works
------------
The formatter prints the *concrete* syntax tree, not the AST.  The AST is
built for meaning: it drops parentheses, the spelling of numbers, the order
of clauses and every comment, so printing it would lose what the author
wrote.  A purely token-based formatter would have to rediscover the structure
(which word is a keyword depends on the parser state, see lexer.py).  So the
file is parsed by the very same LALR grammar and lexer as ``maple check``,
minus the AST builder, which keeps every token in a tree (a concrete tree
for this module only: the rest of the pipeline never sees it); comments,
which the lexer skips, are re-attached by position to the tokens around
them.

* A comment on the same line as the token before it is that token's
  *trailing* comment; any other comment *leads* the token after it.  Leading
  comments are printed on their own lines before the line their token starts;
  a comment whose token lands in the middle of a line moves to just above
  that line (a trailing one to its end), so none is ever dropped.  Trailing
  comments line up in one column per declaration (and per run of one-line
  declarations not separated by a blank line).
* Blank lines survive between declarations and between fields (a run of them
  becomes one); a declaration of more than one line always has a blank line
  on each side.  Inside a declaration, other blank lines are removed.

The layout
----------
* Declarations start at column 1.  ``rule``, ``offer`` and ``experiment`` are
  always broken: the header line holds the name and the clauses that qualify
  it (``priority``, an offer's ``for``, an experiment's ``on``); every other
  clause has its own line, indented 2, in the order written.  A ``decision``
  stays on one line when its clauses fit in :data:`WIDTH` columns and were
  written on the line of its name; otherwise each clause gets its own line.
  Schema and decision field lists have one field per line.
* A ``segment`` or ``const`` stays on one line when it fits and its
  condition is not broken (below); otherwise its expression moves to the
  next line, indented 4.
* An ``and``/``or`` chain is broken before every operator when it does not
  fit, or when the author broke a line next to one of its operators (or of
  a chain inside it: an inner break is kept only if the outer chain breaks
  too).  One such break is enough, and once broken a chain stays broken, so
  formatting is idempotent; a line break anywhere else is not a reason.
  Continuation lines line up with the start of the condition; a chain
  inside parentheses lines up inside them, and an ``and`` chain inside an
  ``or`` chain is indented past the ``or``.  A ``then`` list follows the same
  rule (and breaks when one of its values does), one assignment a line,
  aligned after ``then``.  Nothing else is ever broken.
* Single spaces around binary operators and after commas, none inside
  brackets; ``14days`` becomes ``14 days`` and ``10 %`` becomes ``10%``;
  optional commas are dropped (list and enum trailing commas, field
  separators) or added (between ``then`` assignments), except a comma before
  a decision field named like an expression word (``in``, ``ago``, ...),
  where it is what keeps the field apart from the value before it.

Safety: :func:`format_text` refuses a file with syntax errors (the
diagnostics ``maple check`` gives), and before returning it parses its own
output and compares the AST with the input's (positions aside) and the
comments with the input's; any difference is a bug, raised as
:class:`FormatterBug`, and nothing is written.
"""
from __future__ import annotations

import dataclasses
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources

from lark import Lark, Token, Tree

from ..diagnostics import Diagnostics
from ..source import SourceFile
from .lexer import MASTER, MapleLexer
from .parser import RESERVED, parse

WIDTH = 80
CLAUSE_INDENT = 2
BODY_INDENT = 4               # a segment's expression when it moves below the name
MAX_GROUP_DEPTH = 24          # deeper and/or groups are printed on one line

#: clauses printed on a declaration's header line
HEADER_CLAUSES = {"rule_decl": {"priority_clause"}, "offer_decl": {"for_clause", "priority_clause"},
                  "experiment_decl": {"on_clause"}}
#: words a value can be followed by: a field named so needs the comma before it
EXPRESSION_WORDS = frozenset({"and", "or", "not", "in", "is", "starts", "ends", "contains", "within", "ago"})

_LOGIC = ("and_", "or_")
_COMMENT = re.compile(r"#[^\n]*")
_QUANTITY = re.compile(r"([\d.]+)[ \t]*([a-z]+)")
_VALUE_END = frozenset({"NAME", "NUMBER", "QUANTITY", "PERCENT", "STRING", "RPAR", "RSQB",
                        "TRUE", "FALSE", "NOW", "AGO"})
_NO_SPACE_BEFORE = frozenset({"RPAR", "RSQB", "COMMA", "DOT", "COLON", "LESSTHAN", "MORETHAN"})
_NO_SPACE_AFTER = frozenset({"LPAR", "LSQB", "DOT", "LESSTHAN"})


class FormatError(Exception):
    """The file has syntax errors; ``diagnostics`` says where."""

    def __init__(self, diagnostics: Diagnostics):
        super().__init__(f"{len(diagnostics.errors)} syntax error(s)")
        self.diagnostics = diagnostics


class FormatterBug(RuntimeError):
    """The formatted text would mean something else: never written."""


# ---------------------------------------------------------------- entry points
def format_text(text: str, path: str = "<input>") -> str:
    """``text`` in canonical layout; raises :class:`FormatError` on syntax errors."""
    source = SourceFile(path, text)
    diags = Diagnostics()
    module = parse(source, diags)
    if diags.has_errors:
        raise FormatError(diags)
    tree = _cst_parser().parse(text, start="start")
    out = _Printer(text, tree).render()
    _verify(module, text, out, path)
    return out


def ast_shape(node) -> list:
    """A flat, comparable picture of an AST: node types and values, without
    positions or node ids (two files mean the same when their shapes match)."""
    out, stack = [], [node]
    while stack:
        x = stack.pop()
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            names = [f.name for f in dataclasses.fields(x) if f.name not in ("span", "nid", "source")]
            out.append(type(x).__name__)
            stack.extend(reversed([getattr(x, n) for n in names]))
        elif isinstance(x, (tuple, list)):
            out.append(("seq", len(x)))
            stack.extend(reversed(x))
        else:
            out.append(x)
    return out


def comments_of(text: str) -> Counter:
    """Every comment of a file (its text, trailing blanks aside), counted.
    Comments are lexical (the lexer's one regex finds them whatever the
    parser state), so no parse is needed."""
    return Counter(m.group().rstrip() for m in MASTER.finditer(text) if m.lastgroup == "COMMENT")


def _verify(module, text: str, out: str, path: str) -> None:
    diags = Diagnostics()
    again = parse(SourceFile(path, out), diags)
    if diags.has_errors or ast_shape(again) != ast_shape(module):
        raise FormatterBug(f"{path}: formatting would change the meaning of the file; it was left as it is")
    if comments_of(out) != comments_of(text):
        raise FormatterBug(f"{path}: formatting would lose or change a comment; the file was left as it is")


_lock = threading.Lock()
_parser: Lark | None = None


def _cst_parser() -> Lark:
    """The grammar and lexer of ``maple check``, building a tree of every token."""
    global _parser
    with _lock:
        if _parser is None:
            grammar = resources.files(__package__).joinpath("maple.lark").read_text(encoding="utf-8")
            MapleLexer.reserved = frozenset(RESERVED)
            _parser = Lark(grammar, parser="lalr", lexer=MapleLexer, keep_all_tokens=True,
                           maybe_placeholders=False, start=["start", "expr"])
    return _parser


# ---------------------------------------------------------------- tree helpers
def _leaves(node):
    """The tokens below ``node``, in source order (no recursion: expressions
    may be thousands deep)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Token):
            yield n
        else:
            stack.extend(reversed(n.children))


def _first(node) -> Token:
    while not isinstance(node, Token):
        node = node.children[0]
    return node


def _last(node) -> Token:
    while not isinstance(node, Token):
        node = node.children[-1]
    return node


def _is(node, *kinds) -> bool:
    return isinstance(node, Tree) and node.data in kinds


def _spaced(a: Token | None, b: Token, unary: set) -> bool:
    """Whether a space separates ``a`` and the ``b`` printed after it."""
    if a is None or b.type in _NO_SPACE_BEFORE or a.type in _NO_SPACE_AFTER:
        return False
    if b.type == "LPAR" and a.type in ("NAME", "ENUM"):
        return False                       # a call, enum(...)
    if b.type == "LSQB" and a.type in _VALUE_END:
        return False                       # an index
    if a.type == "LBRACE" and b.type == "RBRACE":
        return False
    return not (a.type == "MINUS" and a.start_pos in unary)


def _text(tok: Token) -> str:
    if tok.type == "QUANTITY":
        number, unit = _QUANTITY.fullmatch(str(tok)).groups()
        return f"{number} {unit}"
    if tok.type == "PERCENT":
        return re.sub(r"[ \t]+", "", str(tok))
    return str(tok)


# ---------------------------------------------------------------- comments
@dataclass(frozen=True)
class Comment:
    text: str
    blank_before: bool         # a blank line separates it from what precedes it


class Comments:
    """Comments keyed by the start of the token they belong to; ``None``
    keys the comments after the last token."""

    def __init__(self, text: str, tokens: list[Token]):
        self.lead: dict = {}
        self.blank: dict = {}
        self.trail: dict = {}
        prev, end = None, 0
        for tok in tokens + [None]:
            stop = tok.start_pos if tok is not None else len(text)
            key = tok.start_pos if tok is not None else None
            found, last = [], end
            for m in _COMMENT.finditer(text, end, stop):
                newlines = text.count("\n", last, m.start())
                if newlines == 0 and prev is not None and last == end:
                    self.trail[prev.start_pos] = m.group().rstrip()
                else:
                    found.append(Comment(m.group().rstrip(), newlines >= 2))
                last = m.end()
            self.lead[key] = found
            self.blank[key] = text.count("\n", last, stop) >= 2
            if tok is not None:
                prev, end = tok, tok.end_pos


# ---------------------------------------------------------------- output lines
@dataclass
class Line:
    indent: int
    kind: str = "plain"        # "decl" | "field" | "first" (field) | "close" (brace) | "plain"
    note_indent: int | None = None
    parts: list = field(default_factory=list)
    lead: list = field(default_factory=list)      # Comments before the line's first token
    lead_blank: bool = False                      # a blank line between them and the code
    notes: list = field(default_factory=list)     # (text, trailing?) met once the line began

    @property
    def code(self) -> str:
        return " " * self.indent + "".join(self.parts)

    def split_notes(self) -> tuple[list[str], str | None]:
        """Comments to print above the line, and the one to print at its end."""
        if self.notes and self.notes[-1][1]:
            return [t for t, _ in self.notes[:-1]], self.notes[-1][0]
        return [t for t, _ in self.notes], None

    def separated(self) -> bool:
        """A field (or the comments before a closing brace) written after a
        blank line keeps it."""
        if self.kind == "close":
            return bool(self.lead) and self.lead[0].blank_before
        if self.kind != "field":
            return False
        return self.lead[0].blank_before if self.lead else self.lead_blank


class Writer:
    """Lines under construction; every token passes through :meth:`tok`, which
    places its comments and the space before it."""

    def __init__(self, comments: Comments, unary: set):
        self.lines: list[Line] = []
        self.comments = comments
        self.unary = unary
        self.prev: Token | None = None

    def line(self, indent: int, kind: str = "plain", note_indent: int | None = None) -> None:
        self.lines.append(Line(indent, kind, note_indent))

    @property
    def col(self) -> int:
        cur = self.lines[-1]
        return cur.indent + sum(map(len, cur.parts))

    def pad(self, tok: Token) -> None:
        """The space that goes before ``tok``, now (so ``col`` is where it starts)."""
        cur = self.lines[-1]
        if cur.parts and cur.parts[-1] != " " and _spaced(self.prev, tok, self.unary):
            cur.parts.append(" ")

    def tok(self, tok: Token, text: str | None = None) -> None:
        cur = self.lines[-1]
        lead = self.comments.lead.pop(tok.start_pos, [])
        if cur.parts:
            cur.notes.extend((c.text, False) for c in lead)
        else:
            cur.lead.extend(lead)
        text = _text(tok) if text is None else text
        if text:
            if not cur.parts:
                cur.lead_blank = self.comments.blank.get(tok.start_pos, False)
            self.pad(tok)
            cur.parts.append(text)
            self.prev = tok
        trail = self.comments.trail.pop(tok.start_pos, None)
        if trail is not None:
            cur.notes.append((trail, True))

    def drop(self, tok: Token) -> None:
        """A token left out of the output (an optional comma); its comments stay."""
        self.tok(tok, "")

    def text(self, text: str) -> None:
        self.lines[-1].parts.append(text)


# ---------------------------------------------------------------- the printer
class _Printer:
    def __init__(self, text: str, tree: Tree):
        self.src = text
        self.tree = tree
        tokens = list(_leaves(tree))
        unary, self.dropped = set(), set()
        for sub in tree.iter_subtrees():
            if sub.data in ("neg", "negative"):
                unary.add(sub.children[0].start_pos)
            elif sub.data in ("list", "enum_type") and len(sub.children) > 2 \
                    and isinstance(sub.children[-2], Token) and sub.children[-2].type == "COMMA":
                self.dropped.add(sub.children[-2].start_pos)
        self.w = Writer(Comments(text, tokens), unary)
        self._flat: dict = {}

    # -- measuring
    def flat(self, node) -> str:
        """``node`` on one line."""
        key = id(node)
        if key not in self._flat:
            parts, prev = [], None
            for tok in _leaves(node):
                if tok.start_pos in self.dropped:
                    continue
                if _spaced(prev, tok, self.w.unary):
                    parts.append(" ")
                parts.append(_text(tok))
                prev = tok
            self._flat[key] = "".join(parts)
        return self._flat[key]

    def broken_by_author(self, nodes) -> bool:
        """Whether the source has a line break between two of these siblings."""
        return any("\n" in self.src[_last(a).end_pos:_first(b).start_pos] for a, b in zip(nodes, nodes[1:]))

    def chain_broken_by_author(self, node, depth: int = 0) -> bool:
        """Whether the author broke this and/or chain around one of its
        operators, or a chain :meth:`expr` would lay out inside it (an
        operand, in parentheses or after ``not``): an inner break can only be
        kept if the chains around it break too."""
        core = self.logic_core(node)
        if core is None or depth >= MAX_GROUP_DEPTH:
            return False
        return self.broken_by_author(core.children) or any(
            self.chain_broken_by_author(kid, depth + 1) for kid in core.children if isinstance(kid, Tree))

    def breaks(self, node, col: int, trail: int = 0) -> bool:
        """An and/or chain breaks when it does not fit or the author broke it."""
        return col + len(self.flat(node)) + trail > WIDTH or self.chain_broken_by_author(node)

    # -- expressions
    def inline(self, node) -> None:
        for tok in _leaves(node):
            if tok.start_pos in self.dropped:
                self.w.drop(tok)
            else:
                self.w.tok(tok)

    def expr(self, node, trail: int = 0, cont: int | None = None, depth: int = 0) -> None:
        """An expression at the current column; and/or chains may break."""
        w = self.w
        w.pad(_first(node))
        col = w.col
        if depth < MAX_GROUP_DEPTH:
            if _is(node, *_LOGIC) and self.breaks(node, col, trail):
                cont = col if cont is None else cont
                inner = cont + len(str(node.children[1])) + 1
                kids = node.children
                for i, kid in enumerate(kids):
                    if isinstance(kid, Token):
                        w.line(cont)
                        w.tok(kid)
                    else:
                        self.expr(kid, trail if i == len(kids) - 1 else 0,
                                  inner if _is(kid, *_LOGIC) else None, depth + 1)
                return
            if _is(node, "paren"):
                lpar, inside, rpar = node.children
                w.tok(lpar)
                self.expr(inside, trail + 1, None, depth + 1)
                w.tok(rpar)
                return
            if _is(node, "not_"):
                w.tok(node.children[0])
                self.expr(node.children[1], trail, None, depth + 1)
                return
        self.inline(node)

    @staticmethod
    def logic_core(node):
        """The and/or chain :meth:`expr` would break first, if any."""
        for _ in range(MAX_GROUP_DEPTH):
            if _is(node, *_LOGIC):
                return node
            if not _is(node, "paren", "not_"):
                return None
            node = node.children[1]
        return None

    # -- declarations
    def render(self) -> str:
        blocks = []
        for decl in self.tree.children:
            start = len(self.w.lines)
            getattr(self, "_" + decl.data)(decl)
            blocks.append(self.w.lines[start:])
        return _Assembler(blocks, self.w.comments.lead.get(None, [])).text()

    def _header(self, t: Tree) -> None:
        self.w.line(0, "decl")
        self.w.tok(t.children[0])
        self.w.tok(t.children[1])

    def _schema_decl(self, t: Tree) -> None:
        self._header(t)
        self.record(t.children[2], 0)

    def record(self, body: Tree, indent: int, keep_comma=lambda nxt: False) -> None:
        """``{`` fields ``}``, one field a line."""
        kids = body.children
        self.w.tok(kids[0])
        inner = kids[1:-1]
        for i, kid in enumerate(inner):
            if isinstance(kid, Token):               # an optional comma
                nxt = inner[i + 1] if i + 1 < len(inner) else None
                if nxt is not None and keep_comma(nxt):
                    self.w.tok(kid)
                else:
                    self.w.drop(kid)
                continue
            self.w.line(indent + 2, "first" if i == 0 else "field")
            self.field(kid, indent + 2)
        if inner:
            self.w.line(indent, "close", note_indent=indent + 2)
        self.w.tok(kids[-1])

    def field(self, f: Tree, indent: int) -> None:
        name, colon, type_ = f.children[:3]
        self.w.tok(name)
        self.w.tok(colon)
        self.type_expr(type_, indent)
        if len(f.children) > 3:                      # a decision field's default
            self.w.tok(f.children[3])
            self.expr(f.children[4])

    def type_expr(self, t, indent: int) -> None:
        if _is(t, "record_type"):
            self.w.pad(_first(t))
            self.record(t.children[0], indent)
        else:
            self.inline(t)

    def _decision_decl(self, t: Tree) -> None:
        w = self.w
        self._header(t)
        rest = list(t.children[2:])
        type_ = rest.pop(0) if rest and _is(rest[0], "decision_type") else None
        fields = rest.pop() if rest and _is(rest[-1], "decision_fields") else None
        if type_ is not None:
            w.tok(type_.children[0])
            self.type_expr(type_.children[1], 0)
        one_line = True
        if rest:
            record = type_ is not None and any(_is(s, "record_type") for s in type_.iter_subtrees())
            width = w.col + sum(1 + len(self.flat(c)) for c in rest) + (2 if fields is not None else 0)
            written = [t.children[1]] + ([type_] if type_ is not None else []) + rest
            one_line = not record and width <= WIDTH and not self.broken_by_author(written) and not any(
                self.chain_broken_by_author(k) for c in rest for k in c.children if isinstance(k, Tree))
        for clause in rest:
            if not one_line:
                w.line(CLAUSE_INDENT)
            self.clause(clause)
        if fields is not None:
            if not one_line:
                w.line(0)
            self.record(fields, 0, keep_comma=lambda nxt: str(nxt.children[0]) in EXPRESSION_WORDS)

    def _clauses_decl(self, t: Tree) -> None:
        self._header(t)
        head = HEADER_CLAUSES[t.data]
        clauses = t.children[2:]
        for clause in clauses:
            if clause.data in head:
                self.clause(clause)
        for clause in clauses:
            if clause.data not in head:
                self.w.line(CLAUSE_INDENT)
                self.clause(clause)

    _rule_decl = _offer_decl = _experiment_decl = _clauses_decl

    def _segment_decl(self, t: Tree) -> None:
        w = self.w
        self._header(t)
        w.tok(t.children[2])
        value = t.children[3]
        if w.col + 1 + len(self.flat(value)) > WIDTH or self.chain_broken_by_author(value):
            w.line(BODY_INDENT)
        self.expr(value)

    _const_decl = _segment_decl

    # -- clauses
    def clause(self, c: Tree) -> None:
        if c.data == "then_clause":
            return self.then(c)
        for kid in c.children:
            if isinstance(kid, Token):
                self.w.tok(kid)
            elif kid.data == "negative":
                self.inline(kid)
            else:
                self.expr(kid)

    def then(self, c: Tree) -> None:
        w = self.w
        w.tok(c.children[0])
        col = w.col + 1
        assigns = [k for k in c.children[1:] if isinstance(k, Tree)]
        width = col + sum(len(self.flat(a)) + 2 for a in assigns) - 2
        broken = len(assigns) > 1 and (width > WIDTH or self.broken_by_author(c.children[1:])
                                       or any(self.chain_broken_by_author(a.children[-1]) for a in assigns))
        comma = True
        for i, kid in enumerate(c.children[1:]):
            if isinstance(kid, Token):
                w.tok(kid)
                comma = True
                continue
            if i > 0:
                if not comma:
                    w.text(",")
                if broken:
                    w.line(col)
            comma = False
            for part in kid.children[:-1]:
                w.tok(part)
            self.expr(kid.children[-1])


class _Assembler:
    """Declarations' lines into text: blank lines, comments, alignment."""

    def __init__(self, blocks: list[list[Line]], tail: list[Comment]):
        self.blocks, self.tail = blocks, tail

    def text(self) -> str:
        out: list[str] = []
        prev_multi, group = False, []
        groups: list[list[Line]] = []
        seps = []
        for i, block in enumerate(self.blocks):
            first, multi = block[0], len(block) > 1
            wrote_blank = first.lead[0].blank_before if first.lead else first.lead_blank
            sep = i > 0 and (wrote_blank or multi or prev_multi)
            if i == 0 or sep or multi or prev_multi:
                group = []
                groups.append(group)
            group.extend(block)
            seps.append(sep)
            prev_multi = multi
        align = {}
        for g in groups:
            widths = [len(line.code) for line in g if line.split_notes()[1] is not None]
            for line in g:
                align[id(line)] = max(widths) + 2 if widths else 0
        for block, sep in zip(self.blocks, seps):
            if sep:
                out.append("")
            for line in block:
                self.line(line, out, align[id(line)])
        for j, c in enumerate(self.tail):
            if c.blank_before and (j > 0 or out):
                out.append("")
            out.append(c.text)
        return "\n".join(out) + "\n" if out else ""

    @staticmethod
    def line(line: Line, out: list[str], align: int) -> None:
        if line.separated():
            out.append("")
        pad = " " * (line.note_indent if line.note_indent is not None else line.indent)
        blanks = line.kind != "plain"
        for j, c in enumerate(line.lead):
            if j > 0 and c.blank_before and blanks:
                out.append("")
            out.append(pad + c.text)
        if line.lead and line.lead_blank and blanks and line.kind != "close":
            out.append("")
        above, trailing = line.split_notes()
        out.extend(pad + t for t in above)
        code = line.code
        out.append(code.ljust(align) + trailing if trailing is not None else code)
