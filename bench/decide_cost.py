"""What one Decide costs the server in CPU instructions, stage by stage.

    python -m bench.decide_cost [--customers 300] [--jobs 2]

Runs the served Decide path in process (the reference pack, its store data,
synthetic customers with inline profiles, hot) under ``valgrind --tool=
callgrind`` and counts the instructions per call of each stage: parsing the
request, translating it, deciding, encoding the answer, and the whole of
what ``maple serve`` runs for one Decide (``served``; ``handled`` adds the
handler's metrics) -- beside the same whole path answering through the
protobuf runtime (``result_to_pb`` + ``SerializeToString``), the baseline
the wire encoder replaced.

Instruction counts are what this shared, noisy machine cannot disturb: the
same code and inputs give the same count whatever else runs, so two
commits can be compared by running this at each.  They predict the hot,
in-process time (and DecideBatch's, whose items run back to back), not
the server's: there a Decide runs with cold caches and costs mostly what
refilling them costs (``bench.layers``; docs/service.md, "Where the time
goes").  Needs valgrind.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.callgrind import instructions, require_valgrind

ROOT = Path(__file__).resolve().parents[1]

STAGES = {
    "read": "wire.decide_request (C: request bytes -> DecideQuery, profile JSON included)",
    "parse": "DecideRequest.FromString (the runtime's path, for what the C reader hands back)",
    "query": "convert.query_from_pb (parsed request -> DecideQuery, profile JSON included)",
    "decide": "Decider.decide (rules, typed results, nearby stores)",
    "encode": "wire.encode_result (C encoder)",
    "encode_runtime": "result_to_pb + SerializeToString (baseline)",
    "served": "the whole Decide as served: wire.decide_request, decide_bytes",
    "handled": "served + what maple serve's handler adds: metrics (engine.server.app.raw_unary)",
    "served_runtime": "the whole Decide through the protobuf runtime (baseline)",
}


class _NoDeadline:
    def time_remaining(self):
        return None


def _stage_calls(stage: str, customers: int):
    """(function, inputs) for one stage, warmed up."""
    sys.path.insert(0, str(ROOT))
    from bench import profiles as bench_profiles
    from engine.ruleset import load
    from engine.server import convert, wire
    from engine.server import metrics
    from engine.server.app import _metrics_on_result, raw_unary, settle_heap
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    from engine.server.servicers import DecisionServicer
    from engine.service import Decider, RulesetHolder
    from engine.service.inventory import InventoryHolder, InventoryStores

    decider = Decider(RulesetHolder(load(ROOT / "rules")),
                      stores=InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")))
    servicer, ctx = DecisionServicer(decider), _NoDeadline()
    measured = DecisionServicer(decider, _metrics_on_result(metrics))
    handle = raw_unary("Decide", pb.DecideRequest, None, measured.decide_bytes, metrics.RECORDER, True,
                       wire.decide_request).unary_unary
    raw = bench_profiles.decide_requests(bench_profiles.synthetic(customers), by_id=False)
    requests = [pb.DecideRequest.FromString(b) for b in raw]
    queries = [convert.query_from_pb(r) for r in requests]
    results = [decider.decide(q) for q in queries]
    settle_heap()
    parse = pb.DecideRequest.FromString
    read = wire.decide_request
    table = {
        "read": (read, raw),
        "parse": (parse, raw),
        "query": (convert.query_from_pb, requests),
        "decide": (decider.decide, queries),
        "encode": (wire.encode_result, results),
        "encode_runtime": (lambda r: convert.result_to_pb(r).SerializeToString(), results),
        "served": (lambda b: servicer.decide_bytes(read(b), ctx), raw),
        "served_runtime": (lambda b: servicer.Decide(parse(b), ctx).SerializeToString(), raw),
        "handled": (lambda b: handle(b, ctx), raw),
    }
    fn, inputs = table[stage]
    for x in inputs:
        fn(x)
    return fn, inputs


def child(stage: str, customers: int) -> None:
    fn, inputs = _stage_calls(stage, customers)
    # callgrind counts only inside functools.reduce (--toggle-collect): the calls, nothing else
    functools.reduce(lambda _, x: fn(x), inputs, None)


def measure(stage: str, customers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        n = instructions(["bench.decide_cost", "--child", stage, "--customers", str(customers)], tmp,
                         f"decide_cost {stage}")
    return n / customers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decide_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=300, help="distinct requests, each called once")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="stages measured at once")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.customers)
        return 0
    require_valgrind("decide_cost")
    stages = args.stages.split(",")
    print(f"callgrind: instructions per call, reference pack, {args.customers} customers (hot, in process)",
          file=sys.stderr)
    with ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(stages, pool.map(lambda s: measure(s, args.customers), stages)))
    width = max(map(len, stages))
    for s in stages:
        print(f"{s:<{width}}  {counts[s]:>10,.0f}  {STAGES[s]}")
    for fast, slow in (("encode", "encode_runtime"), ("served", "served_runtime")):
        if fast in counts and slow in counts:
            print(f"{fast} / {slow}: {counts[fast] / counts[slow]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
