"""Decides by id with the profile cache following the change feed, beside
the same server keeping the ttl alone, in one run.

Two ``maple serve`` of this checkout, each on its own copy of one SQLite
store holding what a month of events folds into (``--customers``
customers, ten events each), one with ``--profile-cache-feed on`` (the
default) and one with ``off``.  One caller asks each for every customer in
turn (a customer comes back after ``--customers`` calls), the two servers in
alternating turns (ABBA).  Before each turn another process (this script,
through a store of its own on each file) applies ``--writes`` new events to
both files: the changes the feed must pass on.

Reported per server: how its Decides read the profile cache
(``maple_profile_cache_reads_total``: the share that did not ask the
store), its CPU a call (from /proc), the caller's wall time a call (p50,
p99) and the server-side time (``maple_decide_seconds`` bucket bounds);
then feed ÷ ttl for each.  Compare within a run: the machine drifts.
With ``--batch N`` the caller sends DecideBatch calls of N customers
instead (the customers in turn, N a call), and the CPU is per decision.

Then the staleness each server shows (``--bound-rounds``): a new customer
is asked for (cached as unknown) and asked for again 50 times, then
another process records an event for them; how long until the server's
answer says STORED.  Without the feed that is the ttl; with it, about the
time to the next sync (a quarter ttl).

    python -m bench.cache_feed
    python -m bench.cache_feed --customers 2000 --calls 3000 --turns 8 --writes 100
    python -m bench.cache_feed --store redis     # a redis-server of its own, one database per server
    python -m bench.cache_feed --base-dir /tmp/base   # this checkout against another (feed on in both)

With ``--base-dir DIR`` the two servers are this checkout and the engine
package in DIR (a worktree of another commit, built as this checkout is:
``python -m bench.pgo`` there after ``make`` here; bench/README.md), both
following the feed: an A/B of a change to the
path by id, in one run (``this ÷ base``).

Writes bench/results/cache_feed.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from bench import loadgen, profiles as prof       # noqa: E402
from bench.idle_cores import percentile as sorted_percentile     # noqa: E402
from bench.server_cpu import cpu_seconds          # noqa: E402  (a maple serve of one worker: one process)

MODES = ("feed", "ttl")


def percentile(values: list[float], p: float) -> float:
    """bench.idle_cores' percentile of unsorted values (NaN for none)."""
    return sorted_percentile(sorted(values), p) if values else float("nan")


def staleness(call, writer, rounds: int, tag: str) -> list[float]:
    """Milliseconds from another process's write to the server's answer
    showing it, ``rounds`` times: a customer the server has cached as
    unknown (asked for 51 times) gets an event; then Decide until STORED."""
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    out = []
    for n in range(rounds):
        cid = f"bound-{tag}-{n}-{time.time_ns()}"
        request = pb.DecideRequest(customer_id=cid).SerializeToString()
        for _ in range(51):
            call(request, timeout=10)
        writer.apply([{"event_id": f"e-{cid}", "type": "page_view", "channel": "web", "timestamp": time.time(),
                       "customer_id": cid}])
        t0 = time.perf_counter()
        while pb.DecideResponse.FromString(call(request, timeout=10)).profile_status != pb.PROFILE_STATUS_STORED:
            pass
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=3000, help="Decides per turn")
    ap.add_argument("--turns", type=int, default=8, help="turns per server (alternating)")
    ap.add_argument("--writes", type=int, default=100, help="events applied elsewhere before each turn")
    ap.add_argument("--ttl", type=float, default=1.0, help="--profile-cache-ttl of both servers")
    ap.add_argument("--bound-rounds", type=int, default=10,
                    help="customers written elsewhere whose staleness is timed, per server")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                    help="the profile store: SQLite files, or a redis-server started here (databases 1 and 2)")
    ap.add_argument("--rules", default=None, help="rules (default: the load generator's pack)")
    ap.add_argument("--batch", type=int, default=0, metavar="N",
                    help="DecideBatch calls of N customers each instead of Decides (--calls batches a turn; "
                         "CPU reported per decision)")
    ap.add_argument("--base-dir", default=None, metavar="DIR",
                    help="instead of feed against ttl: this checkout against the engine in DIR, both with the feed")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cache_feed.json"))
    args = ap.parse_args(argv)

    import grpc
    from tqdm import tqdm
    from engine.profiles import open_store

    rules = args.rules or loadgen.default_pack()
    modes = ("this", "base") if args.base_dir else MODES
    base_dir = Path(args.base_dir).resolve() if args.base_dir else None
    if base_dir is not None and not (base_dir / "engine").is_dir():
        ap.error(f"--base-dir {args.base_dir}: no engine package there")
    stores = loadgen.store_ids(rules)
    tmp = Path(tempfile.mkdtemp(prefix="maple-bench-feed-"))
    servers: dict[str, tuple] = {}
    writers = []
    redis_server = None
    try:
        now = time.time()
        print(f"cache_feed: a month of {10 * args.customers:,} events for {args.customers:,} customers "
              f"({args.store}) ...", file=sys.stderr)
        if args.store == "redis":
            sys.path.insert(0, str(ROOT / "tests" / "profiles"))
            from profiles_support import RedisServer
            redis_server = RedisServer(tmp / "redis").start()
            base = redis_server.url.rsplit("/", 1)[0]
            urls = dict(zip(modes, (f"{base}/1", f"{base}/2")))
            month = prof.month_events(10 * args.customers, args.customers, now, 1, stores)
            for url in urls.values():
                with open_store(url) as store:
                    for i in range(0, len(month), 100):
                        store.apply(month[i:i + 100], now)
            ids = sorted({e["customer_id"] for e in month})
        else:
            first = tmp / f"{modes[0]}.db"
            ids = prof.sqlite_store_of_month(first, 10 * args.customers, args.customers, now, stores)
            for mode in modes[1:]:
                shutil.copy(first, tmp / f"{mode}.db")
            urls = {mode: f"sqlite://{tmp / mode}.db" for mode in modes}
        requests = prof.decide_requests([{"customer_id": c} for c in ids], by_id=True)
        per_call = max(1, args.batch)                   # decisions a call
        if args.batch:
            requests = prof.batch_requests(requests, args.batch)
        later = prof.month_events(args.writes * 2 * args.turns, args.customers, now, 99, stores)
        for mode in modes:
            env = {"MAPLE_PROFILE_CACHE_FEED": "off" if mode == "ttl" else "on",
                   "MAPLE_PROFILE_CACHE_TTL": str(args.ttl)}
            proc, info = loadgen.start_maple(rules, 1, urls[mode], env=env,
                                             code=base_dir if mode == "base" else None)
            servers[mode] = (proc, grpc.insecure_channel(info["decisions"]), info["metrics"])
            writers.append(open_store(urls[mode]))
        decides = {m: servers[m][1].unary_unary(loadgen.DECIDE) for m in modes}
        calls = {m: servers[m][1].unary_unary(loadgen.BATCH) for m in modes} if args.batch else decides
        for m in modes:                                     # every customer once: the caches warm
            for r in requests:
                calls[m](r, timeout=10)
        cpu = {m: [] for m in modes}
        wall = {m: [] for m in modes}
        reads = {m: {} for m in modes}
        buckets = {m: {} for m in modes}
        position = 0
        order_of = [modes, modes[::-1]]
        with tqdm(total=2 * args.turns * args.calls, desc="Decides by id", unit="call", file=sys.stderr) as bar:
            for turn in range(args.turns):
                batch = later[turn * args.writes * 2:(turn + 1) * args.writes * 2]
                for store in writers:                       # another process's writes, on both files
                    for i in range(0, len(batch), 100):
                        store.apply(batch[i:i + 100], now)
                for m in order_of[turn % 2]:
                    proc, _channel, port = servers[m]
                    before = loadgen.scrape(port)
                    c0 = cpu_seconds(proc.pid)
                    call = calls[m]
                    for i in range(args.calls):
                        r = requests[(position + i) % len(requests)]
                        t0 = time.perf_counter()
                        call(r, timeout=10)
                        wall[m].append((time.perf_counter() - t0) * 1e6)
                    cpu[m].append((cpu_seconds(proc.pid) - c0) / (args.calls * per_call) * 1e6)
                    after = loadgen.scrape(port)
                    earlier = loadgen.cache_reads(before) or {}
                    for key, value in (loadgen.cache_reads(after) or {}).items():
                        reads[m][key] = reads[m].get(key, 0.0) + value - earlier.get(key, 0.0)
                    loadgen.add_buckets(buckets[m], loadgen.scrape_decide_buckets(port, before),
                                        loadgen.scrape_decide_buckets(port, after))
                    bar.update(args.calls)
                position += args.calls
        stale = {m: staleness(decides[m], writers[i], args.bound_rounds, m) for i, m in enumerate(modes)}
        report = {"store": args.store, "customers": args.customers, "calls_per_turn": args.calls, "turns": args.turns,
                  "writes_per_turn": args.writes, "ttl": args.ttl, "rules": rules, "servers": {},
                  "compared": f"{modes[0]} ÷ {modes[1]}", "base_dir": str(base_dir) if base_dir else None,
                  "batch": args.batch, "cpu_per": "decision" if args.batch else "call"}
        what = f"DecideBatch calls of {args.batch} customers by id" if args.batch else "Decides by id"
        unit = "µs/decision" if args.batch else "µs/call"
        print(f"\n{what} ({args.store}), one caller, {args.customers:,} customers in turn, ttl {args.ttl:g} s, "
              f"{args.writes} events written elsewhere before each turn ({args.turns} turns of "
              f"{args.calls:,} calls per server)\n")
        print(f"{'server':<6} {'hit share':>10} {'store reads':>12} {'CPU ' + unit:>16} {'wall p50':>9} "
              f"{'wall p99':>9} {'server p50 ≤':>13} {'server p99 ≤':>13} {'stale ms p50':>13} {'max':>5}")
        for m in modes:
            share = loadgen.cache_hit_share(reads[m])
            side = loadgen.bucket_percentiles({}, buckets[m])
            row = {"cache_reads": share, "cpu_us_per_call": round(statistics.median(cpu[m]), 1),
                   "cpu_us_per_turn": [round(x, 1) for x in cpu[m]],
                   "wall_p50_us": round(percentile(wall[m], 50), 1), "wall_p99_us": round(percentile(wall[m], 99), 1),
                   **side, "stale_ms": [round(x, 1) for x in stale[m]]}
            report["servers"][m] = row
            print(f"{m:<6} {share['hit_share'] * 100:>9.1f}% {share.get('miss', 0):>12,} "
                  f"{row['cpu_us_per_call']:>16.1f} {row['wall_p50_us']:>9.0f} {row['wall_p99_us']:>9.0f} "
                  f"{side.get('p50_le_us') or float('nan'):>13.0f} {side.get('p99_le_us') or float('nan'):>13.0f} "
                  f"{percentile(stale[m], 50):>13.0f} {max(stale[m], default=float('nan')):>5.0f}")
        a, b = modes
        f, t = report["servers"][a], report["servers"][b]
        report["ratios"] = {"cpu": loadgen.ratio(f["cpu_us_per_call"], t["cpu_us_per_call"]),
                            "wall_p50": loadgen.ratio(f["wall_p50_us"], t["wall_p50_us"]),
                            "wall_p99": loadgen.ratio(f["wall_p99_us"], t["wall_p99_us"]),
                            # each turn's two servers ran back to back: their ratio is free of the drift between
                            # turns (this VM's speed moves by half within minutes), the median of those the steadiest
                            "cpu_paired": round(statistics.median(x / y for x, y in zip(cpu[a], cpu[b]) if y > 0), 3)
                            if any(y > 0 for y in cpu[b]) else None}
        lower = sum(x < y for x, y in zip(cpu[a], cpu[b]))
        paired = report["ratios"]["cpu_paired"]
        print(f"\n{a} ÷ {b}: CPU a {report['cpu_per']} {report['ratios']['cpu']:.3f}× (lower in {lower} turns of "
              f"{args.turns}; each turn's ratio, median: {paired if paired is not None else float('nan'):.3f}×), "
              f"wall p50 {report['ratios']['wall_p50']:.3f}×, p99 {report['ratios']['wall_p99']:.3f}×")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        for store in writers:
            store.close()
        for proc, channel, _port in servers.values():
            channel.close()
            proc.terminate()
            proc.wait()
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
