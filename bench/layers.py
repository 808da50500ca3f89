"""Where a Decide's server time goes, layer by layer, beside the echo floor.

    python -m bench.layers [--requests 3000] [--rounds 7] [--interleave] [--spin] [--chase N,...]
                           [--scan N,...] [--base REF | --base-dir DIR]

Starts the echo server and one server per layer of the Decide path, each a
process of its own on maple's server stack (``make_server``, ``raw_unary``)
with the reference pack and its store data, each answering the same
request bytes:

    stack   fixed answer bytes: the handler and nothing else
    read    + the C request reader (the profile's JSON included)
    decide  + Decider.decide (rules, typed results, nearby stores)
    encode  + the C encoder: the whole Decide, no metrics
    served  + the metrics: the handler ``maple serve`` registers

and with ``--spin`` one more, beside ``stack``:

    spin    fixed answer bytes after ``sum(range(n))``, n set at start so
            that it takes the whole Decide's hot time in process (bytes to
            bytes, the same request; ``spin_size``): as much work as a
            Decide, done in a few cache lines, the best a denser decision
            path could do

and with ``--chase N,...`` one per N, beside ``stack``:

    chase:N fixed answer bytes after walking a ring of N one-item lists,
            linked in random order (``node = node[0]``, N steps): a
            Python object graph of N nodes read the way a Decide reads its
            profile, rules and stores; how a server's cost grows with the
            memory a call touches (``python -m bench.layers --chase
            500,1000,2000 --interleave``)

and with ``--scan N,...`` one per N:

    scan:N  fixed answer bytes after reading N cache lines in a row
            (``bytes.find``, a memchr, over N x 64 zero bytes): lines laid
            out as a flat array's are, which the CPU fetches ahead

and sends them the same requests in a closed loop from this process,
reading each server's CPU time (every thread) from /proc, and each server
times its own handler call by call (from the request's bytes to the answer's,
as ``maple_request_seconds`` does, to the nanosecond instead of in buckets;
``maple_decide_seconds`` starts after the read, and the served layer's
times from there are printed below the table):
the table's p50 and p99 are the server-side time of every layer, the spin's
and the probes' included, beside Decide's.  The servers
take turns, in a new order each round, for ``--rounds`` rounds of
``--requests`` calls; with
``--interleave`` they take turns call by call instead, so each call finds
the caches as the other servers left them (the cold case; CPU per call is
then higher for every server).  What a layer adds is its CPU per call
minus the previous layer's.  ``--base REF`` adds the decide and served
layers running the engine's Python files as of REF (as ``bench.server_cpu
--base`` lays them over this checkout), in the same rounds; for a change
to compiled code, ``--base-dir DIR`` runs the engine package in DIR
instead, compiled modules included (a worktree of the base built in place
as this checkout is: ``git worktree add DIR REF && cd DIR && python -m
bench.pgo``, or ``python setup.py build_ext --inplace`` in both).

Why this exists: in-process instruction counts (``bench.decide_cost``)
stopped predicting the server's cost.  On 2026-12-02 the served path went
from ~192k to ~152k instructions (hot, in process) and the server's CPU
per Decide did not move (``bench.server_cpu --base``, and this bench run
against the parent); this bench shows the decide layer costing the server
several times its hot in-process time.  Linux only (/proc).
"""
from __future__ import annotations

import argparse
import array
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = ("stack", "read", "decide", "encode", "served")
SPIN_CALLS = 2000           # in-process calls timing the whole Decide and sum(range(n)), --spin
METHOD = "/maple.v1.DecisionService/Decide"
#: where a layer's server writes its handler times when it stops (an
#: environment variable, not an option: a --base-dir worktree's older
#: bench.layers ignores it, and its columns are left empty)
TIMES_ENV = "MAPLE_LAYERS_TIMES"
PARSED_SUFFIX = ".parsed"        # beside it, the served layer's times from the request parsed


# ---------------------------------------------------------------- one layer's server (a child process)
def spin_size(decide) -> tuple[int, float, float]:
    """(n, the whole Decide's hot time, sum(range(n))'s) in µs: n such that
    ``sum(range(n))`` (a C loop over a few objects) takes as long in process
    as ``decide()``, medians of SPIN_CALLS calls of each, the two taking
    turns call by call so that a change of the machine's speed falls on
    both; three passes, each correcting n by the ratio found."""
    n = 1000
    for _ in range(3):
        d, s = [], []
        for _ in range(SPIN_CALLS):
            t0 = time.perf_counter_ns()
            decide()
            t1 = time.perf_counter_ns()
            sum(range(n))
            t2 = time.perf_counter_ns()
            d.append(t1 - t0)
            s.append(t2 - t1)
        dm, sm = statistics.median(d), statistics.median(s)
        n = max(1, round(n * dm / sm))
    return n, dm / 1e3, sm / 1e3


def hot_us(fn) -> float:
    """``fn()``'s median time in process over SPIN_CALLS calls, µs."""
    times = []
    for _ in range(SPIN_CALLS):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def chase_ring(n: int) -> list:
    """The first node of a ring of ``n`` one-item lists, each holding the
    next, linked in a random order: walking it is a chain of dependent
    loads over ~2n scattered cache lines (the list and its item array)."""
    nodes = [[None] for _ in range(n)]
    order = list(range(n))
    random.Random(n).shuffle(order)
    for i, j in enumerate(order):
        nodes[j][0] = nodes[order[(i + 1) % n]]
    return nodes[order[0]]


def chase(head: list, n: int) -> list:
    node = head
    for _ in range(n):
        node = node[0]
    return node


class _Times:
    """Times in ns, written to a file at the end (``write``; read_times reads it)."""

    def __init__(self):
        self.times = array.array("q")

    def write(self, path: str) -> None:
        with open(path, "wb") as f:
            self.times.tofile(f)


class HandlerTimes(_Times):
    """The server-side time of each call of one method, in ns: wraps the
    method's handler (``timed``) as a generic handler that passes every other
    method through, and writes the times to a file at the end (``write``)."""

    def __init__(self, method: str):
        super().__init__()
        self.method = method

    def timed(self, generic):
        """``generic`` (a grpc.GenericRpcHandler) with this method's calls timed."""
        import grpc

        times, now, method = self.times, time.perf_counter_ns, self.method

        def wrap(inner):
            def unary_unary(request, context):
                t0 = now()
                try:
                    return inner(request, context)
                finally:
                    times.append(now() - t0)
            return unary_unary

        class Timed(grpc.GenericRpcHandler):
            def service(self, details):
                handler = generic.service(details)
                if handler is None or details.method != method:
                    return handler
                return handler._replace(unary_unary=wrap(handler.unary_unary))
        return Timed()


class ParsedTimes(_Times):
    """A recorder for ``raw_unary`` that keeps each answered Decide's time
    from the request parsed (``maple_decide_seconds``' span, issue 3's
    server-side time) in ns, and passes everything on to ``recorder``."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def request(self, rpc, code, seconds, decide_seconds=-1.0):
        if decide_seconds >= 0:
            self.times.append(round(decide_seconds * 1e9))
        self.recorder.request(rpc, code, seconds, decide_seconds)

    def __getattr__(self, name):
        return getattr(self.recorder, name)


def read_times(path: Path, skip: int) -> tuple[float, float] | None:
    """(p50, p99) in µs of a server's handler times, the first ``skip``
    calls (the warm-up) left out; None when the file holds none."""
    times = array.array("q")
    try:
        with open(path, "rb") as f:
            times.frombytes(f.read())
    except FileNotFoundError:
        return None
    kept = sorted(times[skip:])
    if not kept:
        return None
    return kept[len(kept) // 2] / 1e3, kept[min(len(kept) - 1, len(kept) * 99 // 100)] / 1e3


def serve(layer: str, first: bytes, engine_dir: str) -> None:
    import grpc

    import engine
    if Path(engine.__file__).resolve().parent != Path(engine_dir).resolve():     # the code asked for, or nothing
        raise SystemExit(f"layers: engine imported from {engine.__file__}, not {engine_dir}")
    from engine.ruleset import load
    from engine.server import metrics, wire
    from engine.server.app import _metrics_on_result, decision_handler, make_server, raw_unary, settle_heap
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    from engine.server.servicers import DecisionServicer
    from engine.service import Decider, RulesetHolder
    from engine.service.inventory import InventoryHolder, InventoryStores

    decider = Decider(RulesetHolder(load(ROOT / "rules")),
                      stores=InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")))
    announce = {}
    parsed = None
    if layer == "served":                         # as DecisionNode wires it
        parsed = ParsedTimes(metrics.RECORDER)
        handler = decision_handler(DecisionServicer(decider, _metrics_on_result(metrics)), parsed)
    else:
        servicer = DecisionServicer(decider)

        class _Context:
            def time_remaining(self):
                return None

        fixed = servicer.decide_bytes(wire.decide_request(first), _Context())
        probe = None                    # a probe layer's work, done before answering the fixed bytes
        if layer == "spin":
            n, decide_us, spin_us = spin_size(lambda: servicer.decide_bytes(wire.decide_request(first), _Context()))
            announce = {"decide_hot_us": decide_us, "spin_n": n, "spin_hot_us": spin_us}
            probe = lambda: sum(range(n))                                   # noqa: E731
        elif layer.startswith("chase:"):
            steps = int(layer.split(":", 1)[1])
            head = chase_ring(steps)
            probe = lambda: chase(head, steps)                              # noqa: E731
        elif layer.startswith("scan:"):
            area = bytes(int(layer.split(":", 1)[1]) * 64)
            probe = lambda: area.find(b"\x01")                             # noqa: E731
        if probe is not None:
            announce.setdefault("hot_us", hot_us(probe))
            method, parse = (lambda raw, context: (probe(), fixed)[1]), (lambda raw: raw)
        else:
            method = {
                "stack": lambda raw, context: fixed,
                "read": lambda q, context: fixed,
                "decide": lambda q, context: (servicer._decide(q, context), fixed)[1],
                "encode": servicer.decide_bytes,
            }[layer]
            parse = (lambda raw: raw) if layer == "stack" else wire.decide_request
        handler = grpc.method_handlers_generic_handler("maple.v1.DecisionService", {
            "Decide": raw_unary("Decide", pb.DecideRequest, None, method, None, True, parse)})
    server = make_server(8, 512, 4 * 1024 * 1024, reuseport=True)
    timer = HandlerTimes(METHOD)
    server.add_generic_rpc_handlers((timer.timed(handler),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    settle_heap()
    print(json.dumps({"listening": f"127.0.0.1:{port}", **announce}), flush=True)
    from engine.server.app import stop_event
    stop = stop_event()         # wakes for a signal whichever thread gets it (engine.server.app.Stop)
    stop.wait()
    server.stop(0)
    if os.environ.get(TIMES_ENV):
        timer.write(os.environ[TIMES_ENV])
        if parsed is not None:
            parsed.write(os.environ[TIMES_ENV] + PARSED_SUFFIX)


# ---------------------------------------------------------------- the measurement
def start_layer(layer: str, first: bytes, code: Path | None = None,
                times: Path | None = None) -> tuple[subprocess.Popen, dict]:
    """A layer's server and what it announced (``listening``: its address);
    ``code``: a directory whose ``engine`` package it runs instead of this
    checkout's (first on the path: the child runs there, with this checkout
    after it for ``bench``); ``times``: the file its handler's times go to
    when it stops."""
    where = code or ROOT
    env = dict(os.environ)
    if times is not None:
        env[TIMES_ENV] = str(times)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(where), str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "bench.layers", "--serve", layer, "--first", first.hex(),
                             "--engine-dir", str(where / "engine")],
                            stdout=subprocess.PIPE, text=True, cwd=where, env=env)
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)
    raise SystemExit(f"layers: the {layer} server did not start (exit {proc.wait()})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="calls per server per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--interleave", action="store_true", help="servers take turns call by call (cold caches)")
    base = ap.add_mutually_exclusive_group()
    base.add_argument("--base", help="also the decide and served layers with the engine's Python files of this git ref")
    base.add_argument("--base-dir", metavar="DIR",
                      help="also the decide and served layers with the engine package in DIR, compiled modules "
                           "included (a worktree built as this checkout is: python -m bench.pgo there after make here)")
    ap.add_argument("--spin", action="store_true",
                    help="also a server doing the whole Decide's hot time of compact work (sum(range(n)))")
    ap.add_argument("--chase", type=lambda s: [int(x) for x in s.split(",")], default=[],
                    help="also servers walking a ring of N scattered Python objects per call, one per N")
    ap.add_argument("--scan", type=lambda s: [int(x) for x in s.split(",")], default=[],
                    help="also servers reading N cache lines in a row per call, one per N")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--first", help=argparse.SUPPRESS)
    ap.add_argument("--engine-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, bytes.fromhex(args.first), args.engine_dir)
        return 0
    from bench import loadgen
    from bench import profiles as bench_profiles
    from bench.server_cpu import WARMUP_CALLS, base_code, connect, cpu_seconds

    payloads = bench_profiles.decide_requests(bench_profiles.synthetic(2000), by_id=False)
    procs, targets = [], {}
    tmp = tempfile.TemporaryDirectory(prefix="maple-layers-")
    try:
        echo, address = loadgen.start_echo(1)
        procs.append(echo)
        targets["echo"] = (echo.pid, address, "/maple.bench.Echo/Echo")
        spin = None
        hot = {}
        for layer in (LAYERS + (("spin",) if args.spin else ()) + tuple(f"chase:{n}" for n in args.chase)
                      + tuple(f"scan:{n}" for n in args.scan)):
            proc, info = start_layer(layer, payloads[0], times=Path(tmp.name) / f"{layer}.times")
            procs.append(proc)
            targets[layer] = (proc.pid, info["listening"], METHOD)
            spin = info if layer == "spin" else spin
            if "hot_us" in info and layer != "spin":
                hot[layer] = info["hot_us"]
        if args.base or args.base_dir:
            code = Path(args.base_dir).resolve() if args.base_dir else base_code(args.base, Path(tmp.name))
            if not (code / "engine" / "__init__.py").is_file():
                raise SystemExit(f"layers: {code} holds no engine package")
            for layer in ("decide", "served"):
                proc, info = start_layer(layer, payloads[0], code, Path(tmp.name) / f"{layer}@base.times")
                procs.append(proc)
                targets[f"{layer}@base"] = (proc.pid, info["listening"], METHOD)
        channels = []
        calls = connect(targets, payloads, channels)
        cpu = {name: [] for name in targets}
        wall = {name: [] for name in targets}
        names = list(targets)
        for _ in range(args.rounds):
            if args.interleave:
                c0 = {k: cpu_seconds(targets[k][0]) for k in names}
                spent = dict.fromkeys(names, 0.0)
                for i in range(args.requests):
                    b = payloads[i % len(payloads)]
                    for k in names:
                        t = time.perf_counter()
                        calls[k](b, timeout=10)
                        spent[k] += time.perf_counter() - t
                for k in names:
                    cpu[k].append((cpu_seconds(targets[k][0]) - c0[k]) / args.requests * 1e6)
                    wall[k].append(spent[k] / args.requests * 1e6)
            else:
                for k in random.Random(len(cpu["echo"])).sample(names, len(names)):   # drift falls on all alike
                    c0, t0 = cpu_seconds(targets[k][0]), time.perf_counter()
                    for i in range(args.requests):
                        calls[k](payloads[i % len(payloads)], timeout=10)
                    wall[k].append((time.perf_counter() - t0) / args.requests * 1e6)
                    cpu[k].append((cpu_seconds(targets[k][0]) - c0) / args.requests * 1e6)
        for ch in channels:
            ch.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        # the handlers' times, written as each server stopped; the warm-up's calls left out
        skip = min(WARMUP_CALLS, len(payloads))
        served_times = {k: read_times(Path(tmp.name) / f"{k}.times", skip) for k in targets}
        parsed_times = {k: read_times(Path(tmp.name) / f"{k}.times{PARSED_SUFFIX}", skip) for k in targets}
        tmp.cleanup()
    how = "call by call (cold)" if args.interleave else "in turns"
    print(f"server CPU per call, {args.rounds} rounds of {args.requests} calls, servers {how} "
          f"({os.cpu_count()} cores); medians of the rounds\n")
    print(f"{'':12} {'CPU µs':>7} {'adds':>6} {'× echo':>7} {'wall µs':>8} {'server-side p50':>16} {'p99 µs':>7}")
    prev = None
    echo_cpu = statistics.median(cpu["echo"])     # 0 in a run too short for /proc's clock ticks
    for k in names:
        c, w = statistics.median(cpu[k]), statistics.median(wall[k])
        if k == "decide@base":                  # what the base's decide adds to the same reader
            prev = statistics.median(cpu["read"])
        if k == "spin" or k.startswith(("chase:", "scan:")):      # what its work adds to the fixed answer
            prev = statistics.median(cpu["stack"])
        adds = "" if prev is None else f"{c - prev:+.0f}"
        side = served_times.get(k)
        side = f"{side[0]:>16.1f} {side[1]:>7.1f}" if side else f"{'-':>16} {'-':>7}"
        times_echo = f"{c / echo_cpu:>7.2f}" if echo_cpu else f"{'-':>7}"
        print(f"{k:12} {c:>7.0f} {adds:>6} {times_echo} {w:>8.0f} {side}")
        prev = c
    for k, t in parsed_times.items():
        if t is not None:
            print(f"{k}, from the request parsed (maple_decide_seconds' span, issue 3's server-side time): "
                  f"p50 {t[0]:.1f}, p99 {t[1]:.1f} µs")
    if spin:
        print(f"\nspin: sum(range({spin['spin_n']:,})) per call, {spin['spin_hot_us']:.1f} µs in process; "
              f"the whole Decide in process, hot: {spin['decide_hot_us']:.1f} µs (medians)")
    for k, us in hot.items():
        print(f"{k}: {us:.1f} µs a call in process, hot (median)")
    if args.base:
        print(f"\n@base: the engine's Python files as of {args.base}")
    elif args.base_dir:
        print(f"\n@base: the engine package in {args.base_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
