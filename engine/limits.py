"""Compile-time limits that keep every rule pack bounded.

The language has no loops or recursion, so evaluation time is bounded by the
size of the compiled pack; these limits bound that size.  Each breach is a
diagnostic (E5xx), never a crash.
"""

MAX_FILE_BYTES = 2_000_000      # one .rules file
MAX_FILES = 2_000               # .rules files in one pack
MAX_DEPTH = 64                  # nesting of one expression
MAX_PACK_NODES = 2_000_000      # IR nodes for the whole pack
MAX_LIST_ITEMS = 10_000         # items in one list literal
MAX_TOP = 100                   # `top N` on an offer decision
MAX_PRIORITY = 1_000_000_000    # |priority|
