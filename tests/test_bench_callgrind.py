"""bench.callgrind reads callgrind's counts by event name (no valgrind needed:
the text is what valgrind 3.19 wrote for a --cache-sim=yes run)."""
from __future__ import annotations

import pytest

from bench.callgrind import parse_collected, parse_out_file
from bench.decide_cost import CACHES, cache_args

EVENTS = ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]

STDERR = """\
==31397== Callgrind, a call-graph generating cache profiler
--31397-- warning: L3 cache found, using its data for the LL simulation.
==31397== Events    : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
==31397== Collected : 60072 17624 10099 427 534 54 427 534 54
==31397==
==31397== I   refs:      60,072
==31397== I1  misses:       427
"""

OUT_FILE = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
desc: LL cache: 1048576 B, 64 B, 16-way associative
positions: line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 60072 17624 10099 427 534 54 427 534 54
fn=(1) functools_reduce
0 12 4
totals: 60072 17624 10099 427 534 54 427 534 54
"""

EXPECTED = dict(zip(EVENTS, [60072, 17624, 10099, 427, 534, 54, 427, 534, 54]))


def test_collected_lines_on_stderr():
    assert parse_collected(STDERR) == EXPECTED


def test_instructions_only():
    assert parse_collected("==7== Events    : Ir\n==7== Collected : 152000\n") == {"Ir": 152000}


def test_out_file_header_and_totals():
    assert parse_out_file(OUT_FILE) == EXPECTED
    # a file cut before its totals still has the header's summary
    assert parse_out_file(OUT_FILE.split("fn=")[0]) == EXPECTED


def test_trailing_zero_counts_left_out():
    assert parse_out_file("events: Ir Dr Dw I1mr\ntotals: 10 3\n") == {"Ir": 10, "Dr": 3, "Dw": 0, "I1mr": 0}


def test_missing_or_mismatched():
    assert parse_collected("==7== I   refs: 10\n") is None
    assert parse_out_file("events: Ir\n") is None
    with pytest.raises(ValueError):
        parse_out_file("events: Ir\ntotals: 1 2\n")


def test_cache_args():
    args = cache_args(CACHES["LL"][0] // 1024)
    assert args == ["--cache-sim=yes", "--I1=32768,8,64", "--D1=49152,12,64", "--LL=1048576,16,64"]
    assert cache_args(32 * 1024)[-1] == "--LL=33554432,16,64"
