"""One caller's Decide and echo with idle cores halting or polling, alternated in one run.

    python -m bench.idle_cores [--rounds 4] [--calls 1500] [--limit-us 0]

Starts one echo server and two ``maple serve`` (the profile inline; by
customer id from a ``jsonl:`` store of the same synthetic profiles), then
for ``--rounds`` rounds, in a new order each round, holds the machine's CPU
wake-up latency limit (``/dev/cpu_dma_latency``, what ``maple serve
--cpu-latency-us`` holds) at ``--limit-us`` or leaves it alone, and sends
``--calls`` calls from one caller to each target in turn.  The echo answers
the same request bytes as Decide.  It prints each setting's end-to-end
percentiles, Decide's ratios to the echo and the server-side
``maple_decide_seconds`` percentiles (bucket upper bounds, from the
servers' metrics before and after each turn).  Needs root for the device.

Why it exists: docs/service.md, "Idle cores".  The two settings take turns
within one run because this VM's speed drifts by half from one minute to
the next: two runs cannot be compared.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("halt", "poll")
KINDS = ("inline", "by id")


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def one_caller_row(echo: list[float], decide: list[float], buckets: dict, digits: int = 2) -> dict:
    """A row's end-to-end figures from one caller's round trips (seconds):
    the echo's and Decide's p50 and p99 in µs, Decide's ratios to the echo
    (to ``digits``), and the server-side bucket bounds of ``buckets``
    (maple_decide_seconds over the same calls)."""
    from bench import loadgen
    echo_l, dec_l = sorted(echo), sorted(decide)
    srv = loadgen.bucket_percentiles({}, buckets)
    e50, e99, d50, d99 = (percentile(v, p) * 1e6 for v, p in ((echo_l, 50), (echo_l, 99), (dec_l, 50), (dec_l, 99)))
    return {"echo_p50_us": round(e50), "echo_p99_us": round(e99), "decide_p50_us": round(d50),
            "decide_p99_us": round(d99), "ratio_p50": round(d50 / e50, digits), "ratio_p99": round(d99 / e99, digits),
            "server_p50_le_us": srv["p50_le_us"], "server_p99_le_us": srv["p99_le_us"]}


def time_calls(call, bodies: list[bytes], n: int, out: list[float]) -> None:
    """``n`` calls of ``call`` one after another over ``bodies`` in turn,
    each one's seconds appended to ``out``."""
    perf = time.perf_counter
    for i in range(n):
        t0 = perf()
        call(bodies[i % len(bodies)], timeout=10)
        out.append(perf() - t0)


def close_all(channels, procs, tmp) -> None:
    """A bench's channels closed, its servers stopped, its directory gone."""
    for ch in channels:
        ch.close()
    for proc in procs:
        proc.terminate()
        proc.wait(30)
    tmp.cleanup()


def rounds_parser(prog: str, doc: str, rounds: int, calls: int, calls_help: str) -> argparse.ArgumentParser:
    """The arguments this bench and bench.affinity share: --rounds, --calls,
    --customers and --json (add the bench's own, then ``parse_rounds``)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--calls", type=int, default=calls, help=calls_help)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--json", help="also write the figures here")
    return ap


def parse_rounds(ap: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.calls < 1 or args.customers < 1:
        ap.error("--rounds, --calls and --customers: 1 or more")
    return args


def main(argv=None) -> int:
    ap = rounds_parser("python -m bench.idle_cores", __doc__, 4, 1500, "calls per target per setting per round")
    ap.add_argument("--limit-us", type=int, default=0, help="the limit held in the 'poll' turns (µs)")
    args = parse_rounds(ap, argv)
    sys.path.insert(0, str(ROOT))
    import grpc

    from bench import loadgen
    from bench import profiles as prof
    from engine.server.cpu_latency import CpuLatency, CpuLatencyError

    try:                                        # fail before starting anything
        CpuLatency(args.limit_us).open().close()
    except (CpuLatencyError, ValueError) as err:
        print(f"idle_cores: --limit-us {args.limit_us}: {err}", file=sys.stderr)
        return 2
    people = prof.synthetic(args.customers)
    tmp = tempfile.TemporaryDirectory(prefix="maple-idle-")
    store = Path(tmp.name) / "profiles.jsonl"
    prof.write_jsonl(people, store)
    payloads = {"inline": prof.decide_requests(people, False), "by id": prof.decide_requests(people, True)}
    procs, channels = [], []
    try:
        rules = loadgen.default_pack()
        servers = {}
        for kind, store_url in (("inline", None), ("by id", f"jsonl:{store}")):
            proc, info = loadgen.start_maple(rules, 1, store_url)
            procs.append(proc)
            servers[kind] = info
        echo_proc, echo = loadgen.start_echo(1)
        procs.append(echo_proc)
        calls = {}
        for kind in KINDS:
            for target, address, method in (("decide", servers[kind]["decisions"], loadgen.DECIDE),
                                            ("echo", echo, loadgen.ECHO)):
                ch = grpc.insecure_channel(address)
                channels.append(ch)
                call = calls[(target, kind)] = ch.unary_unary(method)
                for body in payloads[kind][:500]:            # warm up: connections, caches, first compiles
                    call(body, timeout=10)
        latency = {(mode, target, kind): [] for mode in MODES for (target, kind) in calls}
        server_side = {(mode, kind): {} for mode in MODES for kind in KINDS}
        rng = random.Random(7)
        for _ in range(args.rounds):
            for mode in rng.sample(MODES, len(MODES)):
                held = CpuLatency(args.limit_us).open() if mode == "poll" else None
                try:
                    for target, kind in rng.sample(list(calls), len(calls)):
                        call, bodies, out = calls[(target, kind)], payloads[kind], latency[(mode, target, kind)]
                        port = servers[kind]["metrics"] if target == "decide" else None
                        before = loadgen.scrape_decide_buckets(port)
                        time_calls(call, bodies, args.calls, out)
                        if port is not None:
                            loadgen.add_buckets(server_side[(mode, kind)], before, loadgen.scrape_decide_buckets(port))
                finally:
                    if held is not None:
                        held.close()
    finally:
        close_all(channels, procs, tmp)

    rows = []
    for mode in MODES:
        for kind in KINDS:
            rows.append({"idle cores": mode if mode == "halt" else f"poll ({args.limit_us} µs)", "profile": kind,
                         **one_caller_row(latency[(mode, "echo", kind)], latency[(mode, "decide", kind)],
                                          server_side[(mode, kind)])})
    print(f"one caller; {args.rounds} rounds x {args.calls} calls per target and setting, alternated "
          f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)\n")
    head = ("idle cores", "profile", "echo p50/p99", "Decide p50/p99", "Decide÷echo p50/p99",
            "server-side p50/p99 (≤ bucket)")
    print(f"{head[0]:<14} {head[1]:<7} {head[2]:>13} {head[3]:>15} {head[4]:>20} {head[5]:>31}")
    for r in rows:
        print(f"{r['idle cores']:<14} {r['profile']:<7} {r['echo_p50_us']:>6} / {r['echo_p99_us']:<4}"
              f" {r['decide_p50_us']:>7} / {r['decide_p99_us']:<5} {r['ratio_p50']:>11.2f} / {r['ratio_p99']:<6.2f}"
              f" {r['server_p50_le_us']:>21g} / {r['server_p99_le_us']:<g}")
    print("\nµs, end to end at the client; server-side: maple_decide_seconds, request parsed to response ready")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "calls": args.calls,
                                               "limit_us": args.limit_us, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
