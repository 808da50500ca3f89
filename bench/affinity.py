"""One caller's Decide and echo with the servers kept on a CPU or free, in turns in one run.

    python -m bench.affinity [--rounds 6] [--calls 2000] [--cpus auto] [--json FILE]

Starts each server twice, once with ``--cpu-affinity off`` (the scheduler
places its threads) and once with ``--cpu-affinity CPUS`` (``maple serve``
keeps the process on the first CPU of the list; the echo server the same,
engine.server.affinity): the echo floor and two ``maple serve`` (the
profile inline; by customer id from a ``jsonl:`` store of the same
synthetic profiles).  The client is not pinned, as the load generator's
is not.  For ``--rounds`` rounds, in a new order each round, it sends
``--calls`` calls from one caller to each server in turn, and prints each
setting's end-to-end percentiles, Decide's ratios to the echo of the same
setting, each server's CPU time a call (every thread, from /proc) and the
server-side ``maple_decide_seconds`` percentiles (bucket upper bounds).

Why it exists: docs/service.md, "CPU affinity".  The settings take turns
within one run because this VM's speed drifts by half from one minute to
the next: two runs cannot be compared.  Linux only (/proc, sched_setaffinity).
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("free", "pinned")
KINDS = ("inline", "by id")
WARMUP = 300


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from bench.idle_cores import parse_rounds, rounds_parser
    ap = rounds_parser("python -m bench.affinity", __doc__, 6, 2000, "calls per server per round")
    ap.add_argument("--cpus", default="auto", help="the pinned servers' --cpu-affinity (auto or a CPU list)")
    args = parse_rounds(ap, argv)
    from engine.server import affinity
    try:                                        # fail before starting anything
        if affinity.parse(args.cpus) is None:
            raise ValueError("the pinned servers need CPUs: auto or a list")
    except ValueError as err:
        ap.error(f"--cpus {args.cpus}: {err}")
    import grpc

    from bench import loadgen
    from bench import profiles as prof
    from bench.idle_cores import close_all, one_caller_row, time_calls
    from bench.server_cpu import cpu_seconds

    people = prof.synthetic(args.customers)
    tmp = tempfile.TemporaryDirectory(prefix="maple-affinity-")
    store = Path(tmp.name) / "profiles.jsonl"
    prof.write_jsonl(people, store)
    payloads = {"inline": prof.decide_requests(people, False), "by id": prof.decide_requests(people, True)}
    spec = {"free": "off", "pinned": args.cpus}
    procs, channels = [], []
    try:
        rules = loadgen.default_pack()
        targets = {}            # (setting, server, kind) -> (call, pid, metrics port or None)
        for setting in SETTINGS:
            echo_proc, echo = loadgen.start_echo(1, spec[setting])
            procs.append(echo_proc)
            ch = grpc.insecure_channel(echo)
            channels.append(ch)
            echo_call = ch.unary_unary(loadgen.ECHO)
            for kind, store_url in (("inline", None), ("by id", f"jsonl:{store}")):
                proc, info = loadgen.start_maple(rules, 1, store_url, cpu_affinity=spec[setting])
                procs.append(proc)
                ch = grpc.insecure_channel(info["decisions"])
                channels.append(ch)
                targets[(setting, "decide", kind)] = (ch.unary_unary(loadgen.DECIDE), info["pid"], info["metrics"])
                targets[(setting, "echo", kind)] = (echo_call, echo_proc.pid, None)
        for key, (call, _pid, _port) in targets.items():     # warm up: connections, caches, first compiles
            for body in payloads[key[2]][:WARMUP]:
                call(body, timeout=10)
        latency = {key: [] for key in targets}
        cpu = {key: 0.0 for key in targets}
        server_side = {(setting, kind): {} for setting in SETTINGS for kind in KINDS}
        rng = random.Random(7)
        for _ in range(args.rounds):
            for key in rng.sample(list(targets), len(targets)):
                setting, server, kind = key
                call, pid, port = targets[key]
                bodies, out = payloads[kind], latency[key]
                before, c0 = loadgen.scrape_decide_buckets(port), cpu_seconds(pid)
                time_calls(call, bodies, args.calls, out)
                cpu[key] += cpu_seconds(pid) - c0
                if port is not None:
                    loadgen.add_buckets(server_side[(setting, kind)], before, loadgen.scrape_decide_buckets(port))
    finally:
        close_all(channels, procs, tmp)

    calls = args.rounds * args.calls
    rows = []
    for setting in SETTINGS:
        for kind in KINDS:
            rows.append({"servers": setting if setting == "free" else f"pinned ({args.cpus})", "profile": kind,
                         **one_caller_row(latency[(setting, "echo", kind)], latency[(setting, "decide", kind)],
                                          server_side[(setting, kind)], digits=3),
                         "echo_cpu_us": round(cpu[(setting, "echo", kind)] / calls * 1e6),
                         "decide_cpu_us": round(cpu[(setting, "decide", kind)] / calls * 1e6)})
    print(f"one caller; {args.rounds} rounds x {args.calls} calls per server, in turns "
          f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)\n")
    head = ("servers", "profile", "echo p50/p99", "Decide p50/p99", "Decide÷echo p50/p99", "CPU µs echo/Decide",
            "server-side p50/p99 (≤)")
    print(f"{head[0]:<15} {head[1]:<7} {head[2]:>13} {head[3]:>15} {head[4]:>20} {head[5]:>19} {head[6]:>24}")
    for r in rows:
        print(f"{r['servers']:<15} {r['profile']:<7} {r['echo_p50_us']:>6} / {r['echo_p99_us']:<4}"
              f" {r['decide_p50_us']:>7} / {r['decide_p99_us']:<5} {r['ratio_p50']:>11.3f} / {r['ratio_p99']:<6.3f}"
              f" {r['echo_cpu_us']:>10} / {r['decide_cpu_us']:<6} {r['server_p50_le_us']:>14g} / "
              f"{r['server_p99_le_us']:<g}")
    by = {(r["servers"] == "free", r["profile"]): r for r in rows}
    print("\npinned ÷ free, the same server and profile:")
    for kind in KINDS:
        f, p = by[(True, kind)], by[(False, kind)]
        ratio = {k: p[k] / max(1, f[k]) for k in ("echo_p50_us", "echo_p99_us", "echo_cpu_us", "decide_p50_us",
                                                 "decide_p99_us", "decide_cpu_us")}
        print(f"  {kind:<6} echo p50 {ratio['echo_p50_us']:.2f}, p99 {ratio['echo_p99_us']:.2f}, "
              f"CPU {ratio['echo_cpu_us']:.2f}; Decide p50 {ratio['decide_p50_us']:.2f}, "
              f"p99 {ratio['decide_p99_us']:.2f}, CPU {ratio['decide_cpu_us']:.2f}")
    print("\nµs, end to end at the client; CPU: the server's, every thread, a call (/proc); "
          "server-side: maple_decide_seconds, request parsed to response ready")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "calls": args.calls, "cpus": args.cpus,
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
