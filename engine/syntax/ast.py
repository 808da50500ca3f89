"""The abstract syntax tree of a rule file.

Frozen dataclasses, one per construct; every node keeps its :class:`Span`.
Expression nodes carry a ``nid`` unique within a parse, so later stages keep
their findings in side tables keyed by node id instead of rewriting the tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..source import SourceFile, Span


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    span: Span


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True, slots=True, eq=False)
class Expr:
    nid: int
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Number(Expr):
    value: float


@dataclass(frozen=True, slots=True, eq=False)
class Quantity(Expr):
    """``14 days``, ``25 km``: value in the unit's base (seconds, km)."""
    value: float
    kind: str          # "duration" | "distance"
    unit: str


@dataclass(frozen=True, slots=True, eq=False)
class String(Expr):
    value: str


@dataclass(frozen=True, slots=True, eq=False)
class Bool(Expr):
    value: bool


@dataclass(frozen=True, slots=True, eq=False)
class Now(Expr):
    pass


@dataclass(frozen=True, slots=True, eq=False)
class Name(Expr):
    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Attr(Expr):
    obj: Expr
    name: Ident


@dataclass(frozen=True, slots=True, eq=False)
class Index(Expr):
    obj: Expr
    key: Expr


@dataclass(frozen=True, slots=True, eq=False)
class Call(Expr):
    func: Ident
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ListLit(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Unary(Expr):
    op: str            # "not" | "neg"
    operand: Expr


@dataclass(frozen=True, slots=True, eq=False)
class Binary(Expr):
    """Arithmetic (+ - * /), comparisons (== != < <= > >=), membership
    (in, not in), string tests (starts_with, ends_with, contains) and
    ``within``."""
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, eq=False)
class Logic(Expr):
    op: str            # "and" | "or"
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Presence(Expr):
    operand: Expr
    present: bool      # True: ``is set``; False: ``is missing``


@dataclass(frozen=True, slots=True, eq=False)
class Ago(Expr):
    operand: Expr


# ---------------------------------------------------------------- types
@dataclass(frozen=True, slots=True)
class SimpleTypeExpr:
    name: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class EnumTypeExpr:
    members: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class SetTypeExpr:
    elem: "TypeExpr"
    span: Span


@dataclass(frozen=True, slots=True)
class MapTypeExpr:
    value: "TypeExpr"
    span: Span


@dataclass(frozen=True, slots=True)
class RecordTypeExpr:
    fields: tuple["FieldDecl", ...]
    span: Span


TypeExpr = Union[SimpleTypeExpr, EnumTypeExpr, SetTypeExpr, MapTypeExpr, RecordTypeExpr]


@dataclass(frozen=True, slots=True)
class FieldDecl:
    name: Ident
    type: TypeExpr
    default: Expr | None
    span: Span


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True, slots=True)
class Assignment:
    target: Ident
    field: Ident | None
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Cap:
    count: int
    window: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class SchemaDecl:
    root: Ident
    fields: tuple[FieldDecl, ...]
    span: Span
    kind = "schema"


@dataclass(frozen=True, slots=True)
class DecisionDecl:
    name: Ident
    type: TypeExpr | None
    policy: Ident | None
    default: Expr | None
    top: int | None
    caps: tuple[Cap, ...]
    fields: tuple[FieldDecl, ...] | None
    span: Span
    kind = "decision"


@dataclass(frozen=True, slots=True)
class RuleDecl:
    name: Ident
    priority: int
    when: Expr | None
    assignments: tuple[Assignment, ...]
    score: Expr | None
    because: str | None
    span: Span
    kind = "rule"


@dataclass(frozen=True, slots=True)
class OfferDecl:
    name: Ident
    decision: Ident | None
    priority: int
    when: Expr | None
    score: Expr | None
    caps: tuple[Cap, ...]
    channels: tuple[Ident, ...] | None
    message: String | None
    assignments: tuple[Assignment, ...]
    because: str | None
    span: Span
    kind = "offer"


@dataclass(frozen=True, slots=True)
class SegmentDecl:
    name: Ident
    expr: Expr
    span: Span
    kind = "segment"


@dataclass(frozen=True, slots=True)
class ConstDecl:
    name: Ident
    expr: Expr
    span: Span
    kind = "const"


@dataclass(frozen=True, slots=True)
class Variant:
    name: Ident
    percent: float
    span: Span


@dataclass(frozen=True, slots=True)
class ExperimentDecl:
    name: Ident
    on: tuple[Ident, ...]
    salt: str | None
    holdout: float
    variants: tuple[Variant, ...]
    span: Span
    kind = "experiment"


Decl = Union[SchemaDecl, DecisionDecl, RuleDecl, OfferDecl, SegmentDecl, ConstDecl, ExperimentDecl]


@dataclass(frozen=True, slots=True)
class Module:
    source: SourceFile
    decls: tuple[Decl, ...]
    #: names of declarations that failed to parse: later stages do not report
    #: references to them as unknown (that would only repeat the syntax error)
    broken: tuple[str, ...] = ()
    #: whether some of the file did not parse: what is missing may have used
    #: a segment or constant, so "never used" warnings would be guesses
    incomplete: bool = False


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of an expression, in source order."""
    if isinstance(e, (Attr, Ago)):
        return (e.obj,) if isinstance(e, Attr) else (e.operand,)
    if isinstance(e, Index):
        return (e.obj, e.key)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, ListLit):
        return e.items
    if isinstance(e, (Unary, Presence)):
        return (e.operand,)
    if isinstance(e, Binary):
        return (e.left, e.right)
    if isinstance(e, Logic):
        return e.operands
    return ()


def walk(e: Expr):
    """Every expression node below (and including) ``e``, pre-order."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))
