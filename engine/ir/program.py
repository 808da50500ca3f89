"""The compiled program: the typed boundary between compiler and evaluators.

A :class:`Program` is flat, immutable data: tables of strings, slots (the
attributes read from the profile and request), constant lists and nodes
(a DAG in structure-of-arrays form, constants folded, shared sub-expressions
stored once), and one :class:`DecisionIR` per decision with its candidates in
evaluation order and its rule index.  Positions of rules live beside the
instructions (``CandidateIR.location``), never in the hot loop.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field

#: Bump when the meaning of any field or opcode changes.
FORMAT_VERSION = 1

# slot kinds
SLOT_NUM, SLOT_STR, SLOT_BOOL, SLOT_GEO, SLOT_SET, SLOT_MAP, SLOT_TIMELINE, SLOT_RECORD = range(8)
SLOT_KIND_NAMES = ("num", "str", "bool", "geo", "set", "map", "timeline", "record")

# node result kinds
K_BOOL, K_NUM, K_STR, K_GEO = range(4)
KIND_NAMES = ("bool", "num", "str", "geo")


@dataclass(frozen=True)
class Slot:
    """One attribute read from the input: ``root`` is "profile" or "request"."""
    index: int
    root: str
    path: tuple[str, ...]
    kind: int                  # SLOT_*
    value_kind: int = -1       # for maps: SLOT_NUM/STR/BOOL/GEO/TIMELINE of the values
    type_name: str = ""        # schema type, for the disassembler and docs
    timestamp: bool = False    # numbers that may also be given as ISO-8601 text

    @property
    def dotted(self) -> str:
        return ".".join((self.root,) + self.path)


@dataclass(frozen=True)
class IndexAttr:
    """One attribute the rule index partitions candidates by.

    ``kind`` is "str", "num", "bool" or "set".  For str/num/bool, a value
    falls into a class; ``class_offsets[cls]`` is the offset in ``bits`` of the
    bitset of candidates whose tests on this attribute accept that class
    (-1: all of them).  str: ``str_class`` maps string ids to classes, other
    strings fall in ``other_class``; num: ``thresholds`` sorted, value ``v``
    is in class ``2*i+1`` when it equals ``thresholds[i]`` and ``2*i``
    otherwise, with ``i = bisect_left(thresholds, v)``; bool: false 0, true 1.
    Missing values fall in ``missing_class``.  set: candidates anchored on a
    member ``s`` are in ``postings[s]``; the rest in ``base_offset``
    (-2: none of them).
    """
    slot: int
    kind: str
    class_offsets: tuple[int, ...] = ()
    missing_class: int = -1
    other_class: int = -1
    str_class: dict = field(default_factory=dict)   # string id -> class
    thresholds: tuple[float, ...] = ()
    postings: dict = field(default_factory=dict)    # str value -> bitset offset
    base_offset: int = -1
    constrained: int = 0                            # candidates with a test on it


@dataclass(frozen=True)
class IndexIR:
    n_words: int
    attrs: tuple[IndexAttr, ...]
    bits: array                                     # uint64 words


@dataclass(frozen=True)
class CandidateIR:
    rank: int                   # evaluation order within the decision (bit index)
    name: str
    kind: str                   # "rule" | "offer"
    priority: int
    cond: int                   # node id of the whole condition (-1: always)
    residual: int               # what the index leaves to evaluate (-1: nothing)
    exact: bool                 # the index alone decides the condition
    score: int                  # node id, -1 if none
    outputs: tuple[tuple[str | None, int], ...]     # (field or None, node id)
    required: tuple[int, ...]   # output nodes that must be set for the rule to fire
    message: tuple = ()         # literal str parts and int node ids
    emits: tuple[int, ...] = ()  # nodes whose values the evaluator returns: outputs, then message
    score_template: int = -1    # Program.templates index computing ``score`` (-1: evaluate the node)
    score_params: tuple[float, ...] = ()   # the template's parameters for this candidate
    because: str | None = None
    location: str = ""          # path:line:col
    conjuncts: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScoreTemplate:
    """A score expression shape shared by candidates (compile/templates.py):
    TOp instructions (op, a, b, value) over ``n_regs`` registers
    (instruction i writes register i); the score is register ``result``.
    The first ``n_pro`` instructions (the prologue) are the same for every
    candidate and run once per call; the rest run per candidate with its
    ``n_params`` parameters.  Together they perform exactly the arithmetic,
    in exactly the order, of evaluating a candidate's score node."""
    code: tuple[tuple[int, int, int, float], ...]
    n_regs: int
    result: int
    n_params: int
    users: int                  # candidates that use it
    n_pro: int = 0


@dataclass(frozen=True)
class FieldIR:
    name: str
    kind: int                   # K_*
    type_name: str
    default: object             # Python value or None


@dataclass(frozen=True)
class DecisionIR:
    position: int               # in Program.decisions
    name: str
    kind: str                   # "value" | "record" | "offer"
    policy: str                 # "first" | "best" | "all"
    value_kind: int             # K_* for value decisions (-1 otherwise)
    type_name: str
    default: object             # Python value or None (value decisions)
    fields: tuple[FieldIR, ...]  # record decisions
    top: int                    # best/all: how many (0: all)
    caps: tuple[int, ...]       # node ids: the decision answers nothing when one is false
    candidates: tuple[CandidateIR, ...]
    index: IndexIR | None
    experiments: tuple[int, ...] = ()   # experiments on this decision


@dataclass(frozen=True)
class ExperimentIR:
    index: int
    name: str
    salt: str
    holdout_bp: int             # basis points [0, holdout_bp) are the holdout
    variants: tuple[tuple[str, int], ...]   # (name, upper bound in basis points)
    on: tuple[str, ...]
    node: int                   # the EXPERIMENT node


@dataclass(frozen=True)
class Program:
    format: int
    strings: tuple[str, ...]
    slots: tuple[Slot, ...]
    lists: tuple[tuple, ...]    # sorted tuples of string ids or of floats
    list_kinds: tuple[int, ...]  # K_STR or K_NUM per list
    geos: tuple[tuple[float, float], ...]
    op: array                   # int32 per node
    a: array
    b: array
    c: array
    k: array                    # float64 per node
    kind: array                 # int8 per node: K_*
    args: array                 # int32: operands of variadic nodes
    decisions: tuple[DecisionIR, ...]
    experiments: tuple[ExperimentIR, ...]
    segments: dict              # name -> node id (for the disassembler and explain)
    stats: dict
    string_ids: dict            # str -> string id
    templates: tuple = ()       # ScoreTemplate

    @property
    def n_nodes(self) -> int:
        return len(self.op)

    def decision(self, name: str) -> DecisionIR:
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(name)
