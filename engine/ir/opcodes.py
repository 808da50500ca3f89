"""IR opcodes: the single source of truth.

The Cython kernel's ``_opcodes.pxi`` is generated from this file at build
time (see setup.py), so the numbers cannot drift apart.  Every node has four
operands ``a, b, c`` (ints) and ``k`` (a float); each entry says what they
mean.  Node results are one of four kinds: bool, num (numbers, timestamps in
seconds since the epoch, durations in seconds, distances in km), str (an
interned string id) and geo (latitude, longitude).  Any result may be
*missing*.
"""
from __future__ import annotations

import enum


class Op(enum.IntEnum):
    # constants
    CONST_NUM = 1        # k
    CONST_STR = 2        # a = string id
    CONST_BOOL = 3       # k = 0 or 1
    CONST_GEO = 4        # a = index into Program.geos
    MISSING = 5          # a missing value (the result of folding, e.g. 1 / 0)
    # inputs
    LOAD_NUM = 10        # a = slot
    LOAD_STR = 11        # a = slot
    LOAD_BOOL = 12       # a = slot
    LOAD_GEO = 13        # a = slot
    SLOT_PRESENT = 14    # a = slot (any kind): the attribute is set
    NOW = 15
    EXPERIMENT = 16      # a = experiment index: the variant's string id
    # logic (missing counts as false)
    NOT = 20             # a
    AND = 21             # args[a : a + b]
    OR = 22              # args[a : a + b]
    IS_SET = 23          # a
    IS_MISSING = 24      # a
    # comparisons (false when a side is missing; != and not-in are true then)
    EQ_NUM = 30
    NE_NUM = 31
    LT = 32
    LE = 33
    GT = 34
    GE = 35
    EQ_STR = 36
    NE_STR = 37
    EQ_BOOL = 38
    NE_BOOL = 39
    IN_LIST = 40         # a in Program.lists[b]
    IN_SET = 41          # string a is in the set attribute in slot b
    STARTS_WITH = 42     # a, b strings
    ENDS_WITH = 43
    CONTAINS_STR = 44
    # arithmetic (missing in, missing out; x / 0 and non-finite results are missing)
    ADD = 50
    SUB = 51
    MUL = 52
    DIV = 53
    NEG = 54
    ABS = 55
    MIN = 56             # args[a : a + b]; ignores missing operands
    MAX = 57
    DIST = 58            # great-circle km between geos a and b
    GEO_MAKE = 59        # geo from numbers a (lat) and b (lon)
    # collections
    SIZE = 60            # a = slot (set, map or timeline; map<timeline> keyed by node b
                         # when b >= 0); missing counts 0
    MAP_NUM = 61         # map in slot a, key node b
    MAP_STR = 62
    MAP_BOOL = 63
    MAP_GEO = 64
    MAP_HAS = 65         # map in slot a has key node b
    COUNT_TL = 66        # timeline: slot a (map<timeline> when b >= 0, keyed by node b);
                         # c = window node; how many times >= now - window
    LATEST_TL = 67       # latest time of timeline a (/ key b as above)
    COUNT_ALL = 68       # sum over keys Program.lists[b] of map<timeline> slot a, window c
    # calendar (UTC; missing outside years 1..9999)
    MONTH = 70           # 1..12 of timestamp a
    WEEKDAY = 71         # 1 (Monday) .. 7 (Sunday)
    HOUR = 72            # 0..23


class TOp(enum.IntEnum):
    """Instructions of a score template: a straight-line register program
    for a score expression shape that many candidates share (their
    constants differ, held per candidate as parameters).  Instruction i
    writes register i; each register holds a number or missing, and the
    arithmetic has exactly the node semantics."""
    PARAM = 1       # r = the candidate's parameter a
    NODE = 2        # r = the value of node a (evaluated once per call)
    ADD = 3         # r[dst] = r[a] + r[b]
    SUB = 4
    MUL = 5
    DIV = 6         # missing when r[b] == 0
    NEG = 7         # r = -r[a]
    ABS = 8
    CONST = 9       # r = the instruction's value (a parameter every candidate shares)


#: result kind of each opcode ("*" = the kind of the node, set at lowering)
BOOL_OPS = frozenset({
    Op.CONST_BOOL, Op.LOAD_BOOL, Op.SLOT_PRESENT, Op.NOT, Op.AND, Op.OR, Op.IS_SET, Op.IS_MISSING,
    Op.EQ_NUM, Op.NE_NUM, Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ_STR, Op.NE_STR, Op.EQ_BOOL, Op.NE_BOOL,
    Op.IN_LIST, Op.IN_SET, Op.STARTS_WITH, Op.ENDS_WITH, Op.CONTAINS_STR, Op.MAP_BOOL, Op.MAP_HAS})

#: ops that read inputs or the clock: never folded
IMPURE_OPS = frozenset({Op.LOAD_NUM, Op.LOAD_STR, Op.LOAD_BOOL, Op.LOAD_GEO, Op.SLOT_PRESENT, Op.NOW,
                        Op.EXPERIMENT, Op.IN_SET, Op.SIZE, Op.MAP_NUM, Op.MAP_STR, Op.MAP_BOOL,
                        Op.MAP_GEO, Op.MAP_HAS, Op.COUNT_TL, Op.LATEST_TL, Op.COUNT_ALL})

#: ops whose a/b operands are node ids (others hold slots, list indexes, ...)
NODE_OPERANDS = {
    Op.NOT: "a", Op.IS_SET: "a", Op.IS_MISSING: "a", Op.NEG: "a", Op.ABS: "a",
    Op.EQ_NUM: "ab", Op.NE_NUM: "ab", Op.LT: "ab", Op.LE: "ab", Op.GT: "ab", Op.GE: "ab",
    Op.EQ_STR: "ab", Op.NE_STR: "ab", Op.EQ_BOOL: "ab", Op.NE_BOOL: "ab", Op.IN_LIST: "a",
    Op.IN_SET: "a", Op.STARTS_WITH: "ab", Op.ENDS_WITH: "ab", Op.CONTAINS_STR: "ab",
    Op.ADD: "ab", Op.SUB: "ab", Op.MUL: "ab", Op.DIV: "ab", Op.DIST: "ab", Op.GEO_MAKE: "ab",
    Op.MAP_NUM: "b", Op.MAP_STR: "b", Op.MAP_BOOL: "b", Op.MAP_GEO: "b", Op.MAP_HAS: "b",
    Op.COUNT_TL: "bc", Op.LATEST_TL: "b", Op.COUNT_ALL: "c", Op.SIZE: "b",
    Op.MONTH: "a", Op.WEEKDAY: "a", Op.HOUR: "a",
}
#: ops whose operands are a run of the args array
VARIADIC_OPS = frozenset({Op.AND, Op.OR, Op.MIN, Op.MAX})


def pxi_source() -> str:
    """The Cython include the kernel is built with."""
    lines = ["# Generated from engine/ir/opcodes.py by setup.py: do not edit.",
             "cdef enum:"]
    lines += [f"    OP_{op.name} = {op.value}" for op in Op]
    lines += ["", "cdef enum:"]
    lines += [f"    T_{op.name} = {op.value}" for op in TOp]
    return "\n".join(lines) + "\n"
