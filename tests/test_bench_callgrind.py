"""bench.callgrind reads callgrind's counts by event name (no valgrind needed:
the text is what valgrind 3.19 wrote for a --cache-sim=yes run)."""
from __future__ import annotations

import pytest

from bench.callgrind import parse_collected, parse_out_file
from bench.decide_cost import CACHES, cache_args, parse_annotate, readable

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


def test_cython_names_readable():
    assert readable("__pyx_pw_6engine_7service_7_decide_1decide_one") == "engine.service._decide.decide_one"
    assert readable("__pyx_f_6engine_6server_5_wire__query") == "engine.server._wire._query"
    assert readable("__pyx_pf_6engine_7service_9_assemble_map_raw.constprop.0") == "engine.service._assemble.map_raw"
    assert readable("__pyx_pw_6engine_4eval_7_kernel_6Kernel_5run") == "engine.eval._kernel.Kernel.run"
    assert readable("JSONDecoder_decode") == "JSONDecoder_decode"


PY = "/tmp/python-build/Python-3.11.7"
SO = "cpython-311-x86_64-linux-gnu.so"
ANNOTATE = f"""\
ILmr             DLmr             DLmw            Ir                   file:function
--------------------------------------------------------------------------------
63,915 (100.0%) 50,338 (100.0%) 16,877 (100.0%) 4,505,803 (100.0%)  PROGRAM TOTALS
148,875 (232.9%) 122,023 (242.4%) 39,637 (234.9%) 10,702,217 (237.5%)  \
{PY}/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/py/lib/libpython3.11.so.1.0]
 63,915 (100.0%)  50,338 (100.0%) 16,877 (100.0%)  4,505,803 (100.0%)  \
{PY}/Python/ceval.c:_PyEval_EvalFrameDefault [/py/lib/libpython3.11.so.1.0]
 63,915 (100.0%)  50,338 (100.0%) 16,877 (100.0%)  4,505,803 (100.0%)  \
{PY}/./Include/internal/pycore_ceval.h:PyEval_EvalCode
 39,933 (62.48%)  32,708 (64.98%)  8,194 (48.55%)  2,415,432 (53.61%)  \
/m/engine/service/_decide.c:__Pyx_CyFunction_Vectorcall_FASTCALL_KEYWORDS [/w/engine/service/_decide.{SO}]
 39,873 (62.38%)  32,648 (64.86%)  8,194 (48.55%)  2,415,132 (53.60%)  \
/m/engine/service/_decide.c:__pyx_pw_6engine_7service_7_decide_1decide_one [/w/engine/service/_decide.{SO}]
 39,000 (61.00%)  32,000 (64.00%)  8,000 (48.00%)  2,400,000 (53.00%)  \
/m/engine/service/_decide.c:__pyx_pf_6engine_7service_7_decide_decide_one [/w/engine/service/_decide.{SO}]
  6,396 (10.01%)   4,694 ( 9.32%)  3,694 (21.89%)  1,019,600 (22.63%)  \
???:JSONDecoder_decode [/v/site-packages/msgspec/_core.{SO}]
  1,189 ( 1.86%)     546 ( 1.08%)      .              15,870 ( 0.35%)  \
/m/engine/eval/_kernel.c:__pyx_f_6engine_4eval_7_kernel_6Kernel__compute'2 [/w/engine/eval/_kernel.{SO}]
      .                .               .               2,968 ( 0.07%)  /m/engine/eval/_kernel.c:__pyx_f_6engine_4eval_7_kernel_3_ok [/w/engine/eval/_kernel.{SO}]
"""


def test_annotate_compiled_functions_only():
    """Recursion levels, the interpreter, Cython's glue out; pw and pf of one function as one."""
    assert parse_annotate(ANNOTATE) == {
        "engine.service._decide.decide_one": {"ILmr": 39873, "DLmr": 32648, "DLmw": 8194, "Ir": 2415132},
        "JSONDecoder_decode [msgspec/_core]": {"ILmr": 6396, "DLmr": 4694, "DLmw": 3694, "Ir": 1019600},
        "engine.eval._kernel._ok": {"ILmr": 0, "DLmr": 0, "DLmw": 0, "Ir": 2968},
    }


def test_the_stored_stages_decide_from_the_cache_not_a_degraded_fallback():
    """decide_cost's by-id stages measure what they say: each call is a
    fresh cache hit answered STORED (a profile the lifecycle refresh cannot
    read would make every call the degraded error path, ~15x the cost)."""
    from bench.decide_cost import _stage_calls
    from engine.service.model import ProfileStatus
    fn, queries = _stage_calls("decide_stored", 40)
    results = [fn(q) for q in queries]
    assert {r.profile_status for r in results} == {ProfileStatus.STORED}
    assert not any(r.degraded for r in results)
    assert [r.customer_id for r in results] == [q.customer_id for q in queries]


def test_the_stored_batch_stage_answers_every_item_from_the_cache():
    """batch_stored: DecideBatch by id, each item a STORED answer for its
    own customer (not an item error, not degraded)."""
    from bench.decide_cost import _stage_calls
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    fn, batches = _stage_calls("batch_stored", 200)
    assert len(batches) == 2
    items = [item for b in batches for item in pb.DecideBatchResponse.FromString(fn(b)).results]
    assert len(items) == 200 and all(i.WhichOneof("result") == "response" for i in items)
    answers = [i.response for i in items]
    assert {a.profile_status for a in answers} == {pb.PROFILE_STATUS_STORED}
    assert not any(a.degraded for a in answers)
    asked = [r.customer_id for b in batches for r in pb.DecideBatchRequest.FromString(b).requests]
    assert [a.customer_id for a in answers] == asked


def _without_lines(calls: dict[str, float]) -> dict[str, float]:
    """python_calls' names as ``path name`` (line numbers move with edits)."""
    return {f"{name.split(':')[0]} {name.split(' ', 1)[1]}": n for name, n in calls.items()}


def test_the_decision_path_runs_no_python_function_of_the_engine():
    """In the server each Python function on the path is a frame run with
    cold caches (its code object, bytecode, globals): a Decide, inline or
    by id, as maple serve's handler runs it, runs none of the engine's; a
    DecideBatch runs a few a batch and, per item, only the reader's
    PendingJson for an inline snapshot."""
    from bench.decide_cost import python_calls
    for stage in ("handled", "served_stored"):
        assert python_calls(stage, 20) == {}, stage
    for stage, expected in (("batch", {"engine/service/model.py __init__": 20.0}), ("batch_stored", {})):
        calls = _without_lines(python_calls(stage, 20, batch_size=20))
        assert {name: n for name, n in calls.items() if n >= 20} == expected, stage
        assert "engine/server/servicers.py decide_batch_bytes" in calls         # (the hook sees the engine)
