"""What a worker's profile cache and store hold, counted against measured.

One SQLite store of ``--customers`` (what a month of events folds into;
built once at ``--db``, as ``bench.sqlite_cache`` builds it), copied, and
in this process as a worker uses it: ``--threads`` threads reading random
customers' profiles through a :class:`~engine.profiles.cache.CachedStore`
bounded at ``--cache-mib`` (with a short ``ttl``, so reads miss, fetch and
evict all run long) while another thread applies new events in batches of
20.  Then, with tracemalloc on from the start:

* the cache as ``--profile-cache-mib`` counts it (``held_bytes``,
  ``maple_profile_cache_bytes``) beside what its Python objects take
  (traced memory before and after clearing it);
* SQLite's own memory (``maple_sqlite_memory_bytes``);
* the writer's cache of stored profiles (``WRITER_CACHE``);
* the process's anonymous memory (RssAnon) before and after.

It checks that the counted bound is what the cache takes (within a few
per cent) and shows what else a worker's memory is made of.  No baseline:
a measure of memory, not of speed.  Writes ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadgen, profiles as prof       # noqa: E402
from bench.sqlite_cache import store_of           # noqa: E402


def anon_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--db", default="/tmp/maple-sqlite-cache.db", help="the store, built when missing (kept)")
    ap.add_argument("--cache-mib", type=float, default=64.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--reads", type=int, default=20_000, help="reads a thread")
    ap.add_argument("--events", type=int, default=40_000, help="new events applied meanwhile")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cache_memory.json"))
    args = ap.parse_args(argv)

    from tqdm import tqdm
    from engine.profiles import open_store
    from engine.profiles.cache import CachedStore
    from engine.profiles.sqlite_store import memory_used

    db = Path(args.db)
    stores = loadgen.store_ids(str(ROOT / "rules"))
    now = time.time()
    ids = store_of(db, args.customers, now, stores)
    work = db.with_name(db.stem + "-cache-memory.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(db) as src, sqlite3.connect(work) as dst:
        src.backup(dst)                 # consistent with its WAL (a copy of the file alone may not be)
    events = prof.month_events(args.events, args.customers, now, 77, stores)

    gc.collect()
    tracemalloc.start()
    anon0, traced0 = anon_mib(), tracemalloc.get_traced_memory()[0]
    store = open_store(f"sqlite://{work}")
    cache = CachedStore(store, ttl=0.05, maxsize=10 * args.customers, max_bytes=int(args.cache_mib * 2**20))
    bar = tqdm(total=args.threads * args.reads + len(events), desc="reads + events", unit="op", file=sys.stderr)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(args.reads):
            cache.read(rng.choice(ids))
            if i % 1000 == 999:
                bar.update(1000)

    def writer() -> None:
        for i in range(0, len(events), 20):
            cache.apply(events[i:i + 20], now)
            bar.update(len(events[i:i + 20]))

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(args.threads)]
    threads.append(threading.Thread(target=writer))
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bar.close()
    seconds = time.perf_counter() - t
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    counted, entries = cache.held_bytes, len(cache)
    sqlite_bytes = memory_used() or 0
    writer_profiles = store._state.profiles
    writer_bytes = sum(map(len, writer_profiles.values()))
    anon = anon_mib()
    cache.clear()
    gc.collect()
    cache_traced = traced - (tracemalloc.get_traced_memory()[0] - traced0)
    tracemalloc.stop()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)

    mib = 2**20
    report = {"customers": len(ids), "threads": args.threads, "reads": args.threads * args.reads,
              "events": len(events), "seconds": round(seconds, 1), "cache_bound_mib": args.cache_mib,
              "cache_entries": entries, "cache_counted_mib": round(counted / mib, 3),
              "cache_traced_mib": round(cache_traced / mib, 3), "sqlite_mib": round(sqlite_bytes / mib, 1),
              "writer_cache_profiles": len(writer_profiles), "writer_cache_bytes_mib": round(writer_bytes / mib, 1),
              "python_traced_mib": round(traced / mib, 1), "anon_before_mib": round(anon0, 1),
              "anon_after_mib": round(anon, 1)}
    print(f"\n{len(ids):,} customers; {args.threads} threads read {args.threads * args.reads:,} profiles "
          f"while {len(events):,} new events were applied ({seconds:.0f} s)\n")
    rows = [("profile cache, as --profile-cache-mib counts it", report["cache_counted_mib"],
             f"{entries:,} entries, bound {args.cache_mib:g} MiB"),
            ("profile cache, its Python objects (tracemalloc)", report["cache_traced_mib"],
             f"{cache_traced / max(counted, 1):.2f}x the counted"),
            ("SQLite (its own count: page caches, statements)", report["sqlite_mib"], "three connections"),
            ("the writer's cache of stored profiles (bytes)", report["writer_cache_bytes_mib"],
             f"{len(writer_profiles):,} profiles"),
            ("all Python objects allocated since the start", report["python_traced_mib"], "tracemalloc"),
            ("the process's anonymous memory, growth", round(anon - anon0, 1),
             f"{anon0:.0f} -> {anon:.0f} MiB (tracemalloc's own included)")]
    for what, value, note in rows:
        print(f"{what:<52} {value:>8.1f} MiB   {note}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
