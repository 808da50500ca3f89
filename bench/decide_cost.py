"""What one Decide costs the server in CPU instructions, stage by stage;
with ``--cold``, in cache misses too.

    python -m bench.decide_cost [--customers 300] [--jobs 2]
    python -m bench.decide_cost --cold [--stages read,decide,encode,served] [--customers 150] [--llc-kib 1024]
                                [--breakdown [--top 15]]

Runs the served Decide path in process (the reference pack, its store data,
synthetic customers with inline profiles, hot) under ``valgrind --tool=
callgrind`` and counts the instructions per call of each stage: parsing the
request, translating it, deciding, encoding the answer, and the whole of
what ``maple serve`` runs for one Decide (``served``; ``handled`` adds the
handler's metrics) -- beside the same whole path answering through the
protobuf runtime (``result_to_pb`` + ``SerializeToString``), the baseline
the wire encoder replaced.  ``decide_stored``, ``served_stored`` and ``batch_stored`` ask for
the same customers by id, their profiles fresh in a profile store's cache
(``StoredProfiles``), as a frontend that sends only the id is answered.

Instruction counts are what this shared, noisy machine cannot disturb: the
same code and inputs give the same count whatever else runs, so two
commits can be compared by running this at each.  They predict the hot,
in-process time (and DecideBatch's, whose items run back to back), not
the server's: there a Decide runs with cold caches and costs mostly what
refilling them costs (``bench.layers``; docs/performance.md, "Where the
time goes").  Needs valgrind.

``--cold`` counts that cost, as repeatably: callgrind simulates this VM's
caches (``CACHES``: L1i, L1d and the per-core L2 as the last level, LL),
and before each measured call the child writes a buffer of 4x the LL,
uncounted, which evicts every line of code and data the previous call
left in the LL and the L1d, as the gRPC stack, the kernel and the client
do between two calls in the server.  Per call it prints the instructions,
the LL misses (64-byte lines fetched from L3 or memory) split into
instruction and data lines, and the L1 misses.  The same code and inputs
give the same counts (the child's str hashes seeded alike,
``PYTHONHASHSEED=0``); the cold path's cost is mostly its LL misses, and
code and data the path touches (not only instructions it runs) show up
there.  The I1 is not flushed (the buffer is data): the previous call's
code it still holds is not missed, so instruction lines are undercounted
by at most the I1's 512 lines.  ``--breakdown`` adds each stage's compiled
functions by LL misses, inclusive (``callgrind_annotate``); what no
compiled function holds is the interpreter's own work.  Figures:
bench/README.md, "Cold caches".

``--python-calls`` (no valgrind) lists instead the Python functions each
call of a stage still runs, the engine's and its libraries', and how
often: in the server each is a frame run cold (its code object,
bytecode, globals).  A Decide runs none (tests/test_bench_callgrind.py
holds it so).
"""
from __future__ import annotations

import argparse
import atexit
import collections
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.callgrind import counts, instructions, require_valgrind

ROOT = Path(__file__).resolve().parents[1]

# --cold simulates this VM's caches (AMD EPYC; /sys/devices/system/cpu/cpu0/
# cache/index*, lscpu counts both cores): per core L1i 32 KiB 8-way, L1d
# 48 KiB 12-way, L2 1 MiB 16-way, 64-byte lines.  The 32 MiB L3 is shared
# with other VMs and whatever they leave in it is noise, so the L2 stands as
# the last level (LL): a miss there is a trip to L3 or memory.
# (size in bytes, associativity, line size), as valgrind's --I1/--D1/--LL take them.
CACHES = {"I1": (32 * 1024, 8, 64), "D1": (48 * 1024, 12, 64), "LL": (1024 * 1024, 16, 64)}
FLUSH_FACTOR = 4  # the buffer written between two calls, in LL sizes: enough to evict the whole LL
# str hashes are seeded per process, and the seed moves dict probes and layouts: ~0.2 % of the
# instructions and a few misses per call from run to run; one seed makes a run repeat exactly
COLD_ENV = {"PYTHONHASHSEED": "0"}

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
    "batch": "DecideBatch as served, batches of 100 (--batch-size), per decision (wire.batch_request, "
             "decide_batch_bytes)",
    "batch_handled": "batch + what maple serve's handler adds: metrics, per decision",
    "decide_stored": "Decider.decide by customer id, the profile from the store's cache (a fresh hit)",
    "served_stored": "the whole Decide as served by customer id, the profile from the store's cache",
    "batch_stored": "DecideBatch as served by customer id, batches of 100 (--batch-size), per decision "
                    "(profiles cached)",
    "served_miss": "the whole Decide as served by customer id, the profile read from a SQLite store (a cache "
                   "miss: what most Decides by id were at the default 1 s ttl without the change feed)",
    "served_feed": "the whole Decide as served by customer id, the profile from the cache of a SQLite store, "
                   "held as bytes and valid by the change feed (what most Decides by id are with it)",
}


class _NoDeadline:
    def time_remaining(self):
        return None


def _as_folded(profile: dict) -> dict:
    """A synthetic profile with the fields the fold writes beside those
    ``synthetic()`` makes (the lifecycle refresh of a stored profile reads
    them): the first purchase and the last time seen."""
    out = dict(profile)
    from bench.profiles import NOW
    bought = list(out.get("purchased_at", {}).values()) or [out.get("last_purchase_at") or NOW]
    if out.get("orders_count"):
        out.setdefault("first_purchase_at", min(bought))
        out.setdefault("last_purchase_at", max(bought))
    if out.get("last_seen"):
        out.setdefault("last_seen_at", max(out["last_seen"].values()))
    return out


class _HeldProfiles:
    """A profile store holding the synthetic profiles in a dict: what
    ``StoredProfiles`` reads on a cache miss (the stored stages prime the
    cache, so the measured calls are fresh hits and never get here)."""

    def __init__(self, profiles: list[dict]):
        from engine.profiles.fold import DEFAULT_CONFIG
        self.fold_config = DEFAULT_CONFIG
        self.profiles = {p["customer_id"]: _as_folded(p) for p in profiles}

    def get(self, customer_id: str) -> dict | None:
        return self.profiles.get(customer_id)


def _stage_calls(stage: str, customers: int, batch_size: int = 100):
    """(function, inputs) for one stage, warmed up; the batch stages send
    ``batch_size`` items a call."""
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

    from engine.service.stored import StoredProfiles

    holder = RulesetHolder(load(ROOT / "rules"))
    stores = InventoryStores(InventoryHolder.open(ROOT / "rules" / "data"))
    decider = Decider(holder, stores=stores)
    servicer, ctx = DecisionServicer(decider), _NoDeadline()
    measured = DecisionServicer(decider, _metrics_on_result(metrics))
    handle = raw_unary("Decide", pb.DecideRequest, None, measured.decide_bytes, metrics.RECORDER, True,
                       wire.decide_request).unary_unary
    handle_batch = raw_unary("DecideBatch", pb.DecideBatchRequest, None, measured.decide_batch_bytes,
                             metrics.RECORDER, parse=wire.batch_request).unary_unary
    people = bench_profiles.synthetic(customers)
    raw = bench_profiles.decide_requests(people, by_id=False)
    requests = [pb.DecideRequest.FromString(b) for b in raw]
    queries = [convert.query_from_pb(r) for r in requests]
    results = [decider.decide(q) for q in queries]
    # the same customers and requests by id, their profiles in the cache of a store
    held = StoredProfiles(_HeldProfiles(people), cache_ttl=1e9, cache_size=customers + 10)
    stored = Decider(holder, held, stores)
    raw_by_id = bench_profiles.decide_requests(people, by_id=True)
    queries_by_id = [convert.query_from_pb(pb.DecideRequest.FromString(b)) for b in raw_by_id]
    for q in queries_by_id:
        held.lookup(q.customer_id, None, None)
    stored_servicer = DecisionServicer(stored)
    raw_miss, miss_servicer = [], None
    if stage in ("served_miss", "served_feed"):   # a SQLite file of what a month of events folds into
        from bench.loadgen import store_ids
        tmp = Path(tempfile.mkdtemp(prefix="maple-decide-cost-"))
        ids = bench_profiles.sqlite_store_of_month(tmp / "profiles.db", 10 * customers, customers,
                                                   bench_profiles.NOW, store_ids(str(ROOT / "rules")))
        feed = stage == "served_feed"
        missing = StoredProfiles.open(f"sqlite://{tmp / 'profiles.db'}", cache_ttl=1.0 if feed else 0.0)
        atexit.register(shutil.rmtree, tmp, True)
        atexit.register(missing.close)      # (registered last: runs first)
        miss_servicer = DecisionServicer(Decider(holder, missing, stores))
        raw_miss = bench_profiles.decide_requests([{"customer_id": c} for c in ids], by_id=True)
        raw_miss = [raw_miss[i % len(raw_miss)] for i in range(customers)]     # per call: measure() divides by it
        if feed:        # (the entries fetched after the first sync are the ones it vouches for)
            cache = missing.cache
            cache.sync()
            for c in ids:
                missing.read_lookup(c, None)
            with cache._lock:                   # past their first ttl: held as bytes ...
                cache._entries.settle(float("inf"))
            cache._feed_until = float("inf")    # ... and valid, as while syncs keep coming
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
        # one input per batch, but measure() divides by --customers: per decision
        "batch": (lambda b: servicer.decide_batch_bytes(wire.batch_request(b), ctx),
                  bench_profiles.batch_requests(raw, batch_size)),
        "batch_handled": (lambda b: handle_batch(b, ctx), bench_profiles.batch_requests(raw, batch_size)),
        "decide_stored": (stored.decide, queries_by_id),
        "served_stored": (lambda b: stored_servicer.decide_bytes(read(b), ctx), raw_by_id),
        "batch_stored": (lambda b: stored_servicer.decide_batch_bytes(wire.batch_request(b), ctx),
                         bench_profiles.batch_requests(raw_by_id, batch_size)),
        "served_miss": (lambda b: miss_servicer.decide_bytes(read(b), ctx), raw_miss),
        "served_feed": (lambda b: miss_servicer.decide_bytes(read(b), ctx), raw_miss),
    }
    fn, inputs = table[stage]
    for x in inputs:
        fn(x)
    return fn, inputs


def python_calls(stage: str, customers: int = 50, batch_size: int = 100) -> dict[str, float]:
    """The Python functions one call of ``stage`` runs (the engine's and
    the libraries'; the harness's own left out), each as ``path:line
    name`` -> calls per call of the stage (a batch stage's call is a
    batch): the stage's calls made once more, warm, under
    ``sys.setprofile``.  Paths are the checkout's, or a library's from its
    package on."""
    fn, inputs = _stage_calls(stage, customers, batch_size)      # each input called once already
    harness = str(ROOT / "bench") + os.sep
    found: collections.Counter[str] = collections.Counter()

    def hook(frame, event, arg):
        if event != "call" or frame.f_code.co_filename.startswith(harness):
            return
        code = frame.f_code
        path = Path(code.co_filename)
        if "site-packages" in path.parts:
            where = Path(*path.parts[path.parts.index("site-packages") + 1:])
        else:
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path(*path.parts[-2:])
        found[f"{where}:{code.co_firstlineno} {code.co_name}"] += 1

    sys.setprofile(hook)
    try:
        for x in inputs:
            fn(x)
    finally:
        sys.setprofile(None)
    return {name: n / len(inputs) for name, n in found.most_common()}


def child(stage: str, customers: int, flush_kib: int = 0, batch_size: int = 100) -> None:
    fn, inputs = _stage_calls(stage, customers, batch_size)
    call = lambda _, x: fn(x)  # noqa: E731
    if not flush_kib:
        # callgrind counts only inside functools.reduce (--toggle-collect): the calls, nothing else
        functools.reduce(call, inputs, None)
        return
    buf = bytearray(flush_kib * 1024)
    line = CACHES["LL"][2]
    ones = b"\x01" * (len(buf) // line)
    reduce = functools.reduce
    for x in inputs:
        # one write per cache line, uncounted: evicts the D1 and the whole LL (code and data);
        # the I1 keeps what this loop leaves of the previous call's code
        buf[::line] = ones
        reduce(call, (x,), None)  # one call, counted


def measure(stage: str, customers: int, batch_size: int = 100) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        n = instructions(["bench.decide_cost", "--child", stage, "--customers", str(customers),
                          "--batch-size", str(batch_size)], tmp, f"decide_cost {stage}")
    return n / customers


def cache_args(llc_kib: int) -> list[str]:
    caches = dict(CACHES, LL=(llc_kib * 1024, *CACHES["LL"][1:]))
    return ["--cache-sim=yes", *(f"--{name}={size},{assoc},{line}" for name, (size, assoc, line) in caches.items())]


def measure_cold(stage: str, customers: int, llc_kib: int, keep: str | None = None,
                 batch_size: int = 100) -> dict[str, float]:
    """Events per call of ``stage`` with the caches flushed before each call
    (callgrind's cache simulator), by callgrind's event names; with ``keep``,
    callgrind's output file is copied there."""
    with tempfile.TemporaryDirectory() as tmp:
        n = counts(["bench.decide_cost", "--child", stage, "--customers", str(customers),
                    "--flush-kib", str(FLUSH_FACTOR * llc_kib), "--batch-size", str(batch_size)], tmp,
                   f"decide_cost --cold {stage}",
                   cache_args(llc_kib), COLD_ENV)
        if keep:
            shutil.copy(Path(tmp) / "cg.out", keep)
    return {k: v / customers for k, v in n.items()}


_COUNT = r"(\.|[\d,]+ \(\s*[\d.]+%\))"
_ANNOTATE_LINE = re.compile(r"^\s*" + r"\s+".join([_COUNT] * 4) + r"\s+(\S.*)$")
# the interpreter, libc, the loader: inclusively they hold everything (the path is Python calling C)
_PLUMBING = ("libpython", "python3", "libc.so", "ld-linux", "???")


def readable(function: str) -> str:
    """A Cython function's C name as module.function
    (``__pyx_pw_6engine_7service_7_decide_1decide_one`` -> ``engine.service._decide.decide_one``);
    other names as they are, without gcc's ``.constprop.0`` and the like."""
    function = function.split(".")[0]
    m = re.match(r"__pyx_(?:pw|pf|f)_(.*)$", function)
    if not m:
        return function
    rest, parts = m.group(1), []
    while (n := re.match(r"\d+", rest)) is not None:
        size, after = int(n.group()), rest[n.end():]
        if len(after) > size and after[size] == "_":  # a length-prefixed module or class name
            parts.append(after[:size])
            rest = after[size + 1:]
        else:  # a def's index before its name
            rest = after
            break
    return ".".join(parts + [rest])


def parse_annotate(text: str) -> dict[str, dict[str, int]]:
    """``callgrind_annotate --inclusive=yes --show=ILmr,DLmr,DLmw,Ir`` output
    as {readable name: counts}: recursion levels (``'2``), the interpreter's
    own functions and Cython's call glue left out, a name's several entries
    (one per source file gcc inlined into it) reduced to the largest."""
    found: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        m = _ANNOTATE_LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        where = m.group(5)
        name, _, obj = where.partition(" [")
        function, obj = name.rsplit(":", 1)[-1], Path(obj.rstrip("]"))
        if ("'" in function or function.startswith(("__Pyx_", "0x")) or not obj.name
                or obj.name.startswith(_PLUMBING)):
            continue
        n = dict(zip(("ILmr", "DLmr", "DLmw", "Ir"), (0 if c == "." else int(c.split()[0].replace(",", ""))
                                                     for c in m.group(1, 2, 3, 4))))
        key = readable(function) if function.startswith("__pyx_") else f"{function} [{obj.parent.name}/{obj.name.split('.')[0]}]"
        if key not in found or found[key]["ILmr"] + found[key]["DLmr"] < n["ILmr"] + n["DLmr"]:
            found[key] = n
    return found


def breakdown(stage: str, out_file: str, customers: int, top: int) -> None:
    if not shutil.which("callgrind_annotate"):
        raise SystemExit("decide_cost --breakdown: needs callgrind_annotate (valgrind's)")
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100",
                           "--show=ILmr,DLmr,DLmw,Ir", out_file], capture_output=True, text=True, check=True).stdout
    rows = sorted(parse_annotate(text).items(), key=lambda kv: -(kv[1]["ILmr"] + kv[1]["DLmr"] + kv[1]["DLmw"]))
    print(f"\n{stage}: compiled functions by LL misses per call, inclusive (what they call counted in; "
          "the rest is the interpreter's own)")
    width = max([len(k) for k, _ in rows[:top]] + [8])
    print(f"{'function':<{width}}  {'LL miss':>8}  {'LL instr':>8}  {'LL data':>8}  {'instr':>9}")
    for name, n in rows[:top]:
        ll_d = n["DLmr"] + n["DLmw"]
        print(f"{name:<{width}}  {(n['ILmr'] + ll_d) / customers:>8,.0f}  {n['ILmr'] / customers:>8,.0f}  "
              f"{ll_d / customers:>8,.0f}  {n['Ir'] / customers:>9,.0f}")


def cold(args, stages: list[str]) -> int:
    customers = args.customers or 150
    print(f"callgrind --cache-sim: per call, reference pack, {customers} customers, caches flushed before each "
          f"call (LL {args.llc_kib} KiB; I1 {CACHES['I1'][0] // 1024} KiB, D1 {CACHES['D1'][0] // 1024} KiB); "
          "LL misses are 64-byte lines fetched from beyond the LL: instruction lines + data lines read or written",
          file=sys.stderr)
    keep = tempfile.mkdtemp(prefix="maple-decide-cost-") if args.breakdown else None
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            found = dict(zip(stages, pool.map(
                lambda s: measure_cold(s, customers, args.llc_kib, keep and f"{keep}/{s}.out", args.batch_size),
                stages)))
        _cold_table(stages, found)
        for s in stages if keep else ():
            breakdown(s, f"{keep}/{s}.out", customers, args.top)
    finally:
        if keep:
            shutil.rmtree(keep)
    return 0


def _cold_table(stages: list[str], found: dict[str, dict[str, float]]) -> None:
    width = max(map(len, stages + ["stage"]))
    print(f"{'stage':<{width}}  {'instr':>9}  {'LL miss':>8}  {'LL instr':>8}  {'LL data':>8}  "
          f"{'I1 miss':>8}  {'D1 miss':>8}")
    for s in stages:
        c = found[s]
        ll_i, ll_d = c["ILmr"], c["DLmr"] + c["DLmw"]
        print(f"{s:<{width}}  {c['Ir']:>9,.0f}  {ll_i + ll_d:>8,.0f}  {ll_i:>8,.0f}  {ll_d:>8,.0f}  "
              f"{c['I1mr']:>8,.0f}  {c['D1mr'] + c['D1mw']:>8,.0f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decide_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=None,
                    help="distinct requests, each called once (default 300; 150 with --cold)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="stages measured at once")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--cold", action="store_true",
                    help="cache misses per call, caches flushed before each call (callgrind's cache simulator)")
    ap.add_argument("--llc-kib", type=int, default=CACHES["LL"][0] // 1024,
                    help="with --cold: the simulated last-level cache's size (default this VM's L2)")
    ap.add_argument("--breakdown", action="store_true",
                    help="with --cold: each stage's compiled functions by LL misses, inclusive (callgrind_annotate)")
    ap.add_argument("--top", type=int, default=15, help="with --breakdown: functions shown per stage")
    ap.add_argument("--batch-size", type=int, default=100,
                    help="items a DecideBatch call in the batch stages (default 100; --customers should be a "
                         "multiple: with --cold the caches are flushed before each call, not each item)")
    ap.add_argument("--python-calls", action="store_true",
                    help="instead: the Python functions each call of a stage runs (no valgrind)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--flush-kib", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.customers or 300, args.flush_kib, args.batch_size)
        return 0
    stages = args.stages.split(",")
    if args.python_calls:
        for stage in stages:
            calls = python_calls(stage, args.customers or 50, args.batch_size)
            print(f"{stage}: the Python functions a call runs"
                  + ("" if calls else ": none"))
            for name, n in calls.items():
                print(f"  {n:8.2f}  {name}")
        return 0
    require_valgrind("decide_cost")
    if args.cold:
        return cold(args, stages)
    args.customers = args.customers or 300
    print(f"callgrind: instructions per call, reference pack, {args.customers} customers (hot, in process)",
          file=sys.stderr)
    with ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(stages, pool.map(lambda s: measure(s, args.customers, args.batch_size), stages)))
    width = max(map(len, stages))
    for s in stages:
        print(f"{s:<{width}}  {counts[s]:>10,.0f}  {STAGES[s]}")
    for fast, slow in (("encode", "encode_runtime"), ("served", "served_runtime")):
        if fast in counts and slow in counts:
            print(f"{fast} / {slow}: {counts[fast] / counts[slow]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
