"""What the checker hands the compiler: declarations resolved and typed.

The AST is not rewritten.  The checker's findings live in side tables keyed
by expression node id (``types``, ``refs``), next to a summary of every
declaration (:class:`DecisionInfo`, :class:`Candidate`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..source import Span
from ..syntax import ast
from .types import Type


# ---------------------------------------------------------------- references
@dataclass(frozen=True)
class AttrRef:
    """A schema attribute: ``profile.last_view.category`` is
    ``AttrRef("profile", ("last_view", "category"), STRING)``."""
    root: str
    path: tuple[str, ...]
    type: Type

    @property
    def dotted(self) -> str:
        return ".".join((self.root,) + self.path)


@dataclass(frozen=True)
class RootRef:
    root: str


@dataclass(frozen=True)
class SegmentRef:
    name: str


@dataclass(frozen=True)
class ConstRef:
    name: str


@dataclass(frozen=True)
class EnumRef:
    value: str


@dataclass(frozen=True)
class ExperimentRef:
    name: str


Ref = AttrRef | RootRef | SegmentRef | ConstRef | EnumRef | ExperimentRef


# ---------------------------------------------------------------- declarations
@dataclass
class FieldInfo:
    name: str
    type: Type
    default: ast.Expr | None
    span: Span


@dataclass
class Candidate:
    """A rule or an offer: one way a decision can be answered."""
    kind: str                      # "rule" | "offer"
    name: str
    decision: str
    priority: int
    order: int                     # position in the pack (files by path, then source order)
    when: ast.Expr | None
    score: ast.Expr | None
    assignments: list[tuple[str | None, ast.Expr]]   # (field or None for the whole value, value)
    because: str | None
    span: Span
    name_span: Span
    # offers only
    caps: list[tuple[int, ast.Expr, Span]] = field(default_factory=list)
    channels: tuple[str, ...] | None = None
    channels_span: Span | None = None
    message: list[str | ast.Expr] | None = None

    @property
    def rank_key(self) -> tuple[int, int]:
        """Evaluation order: higher priority first, then pack order."""
        return (-self.priority, self.order)


@dataclass
class DecisionInfo:
    name: str
    kind: str                      # "value" | "record" | "offer"
    policy: str                    # "first" | "best" | "all"
    type: Type                     # value type; record type; OFFER
    default: ast.Expr | None
    fields: dict[str, FieldInfo]
    top: int
    caps: list[tuple[int, ast.Expr, Span]]
    span: Span
    order: int
    candidates: list[Candidate] = field(default_factory=list)

    def ranked(self) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: c.rank_key)


@dataclass
class SegmentInfo:
    name: str
    expr: ast.Expr
    span: Span
    used: bool = False


@dataclass
class ConstInfo:
    name: str
    expr: ast.Expr
    type: Type
    span: Span
    used: bool = False


@dataclass
class ExperimentInfo:
    name: str
    on: tuple[str, ...]
    salt: str
    holdout: float                  # percent
    variants: tuple[tuple[str, float], ...]   # (name, percent) in declaration order
    span: Span

    @property
    def variant_type_members(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.variants) + ("holdout",)


@dataclass
class CheckedPack:
    schema: dict[str, Type]                           # root -> record type
    decisions: dict[str, DecisionInfo]
    segments: dict[str, SegmentInfo]
    consts: dict[str, ConstInfo]
    experiments: dict[str, ExperimentInfo]
    types: dict[int, Type]
    refs: dict[int, Ref]
    candidates: list[Candidate]                       # pack order
    sources: list                                     # SourceFile, sorted by path

    def type_of(self, e: ast.Expr) -> Type:
        return self.types[e.nid]
