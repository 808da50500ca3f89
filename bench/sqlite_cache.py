"""SQLite's page cache size against a large profile store: reads and writes.

What ``CACHE_KIB`` (``engine/profiles/sqlite_store.py``, the page cache of
each of a store's three connections) buys.  One SQLite file holding what a
month of events folds into for ``--customers`` customers (built once and
kept at ``--db``), opened once per cache size; in one run, taking turns
size by size, round by round:

* **read**: point reads of random customers' stored profiles, as a Decide
  that misses the profile cache makes them (``get_encoded``);
* **read + writes**: the same, a commit by another connection every
  ``--write-every`` reads (in WAL mode a commit by anyone else empties a
  connection's page cache: each worker's writer commits);
* **apply**: new events applied in batches of ``--batch`` (RecordEvents:
  20; a group commit holds up to 1,000), by one writer per size, each
  size's writer committing in turn on the same file (as the workers of one
  ``maple serve`` do).

Reported: each size's median µs a read or an event over the rounds, and its
ratio to the largest size's.  The machine is shared and noisy: compare
within the run.  Writes ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadgen, profiles as prof       # noqa: E402


def build(db: Path, customers: int, now: float, stores: list[str]) -> None:
    for suffix in ("", "-wal", "-shm"):             # a stale WAL beside a new file would corrupt it
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    print(f"sqlite_cache: a month of {10 * customers:,} events for {customers:,} customers into {db} ...",
          file=sys.stderr)
    prof.sqlite_store_of_month(db, 10 * customers, customers, now, stores)


def store_of(db: Path, customers: int, now: float, stores: list[str]) -> list[str]:
    """The customer ids of the store at ``db``, built first when it is
    missing or holds another number of customers (kept for the next run)."""
    def ids() -> list[str]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as probe:
            return [r[0] for r in probe.execute("SELECT customer_id FROM customers")]
    found = ids()
    if not found or abs(len(found) - customers) > customers // 100:
        build(db, customers, now, stores)
        found = ids()
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--db", default="/tmp/maple-sqlite-cache.db",
                    help="the store file, built when missing or holding other customers (kept for the next run)")
    ap.add_argument("--sizes", default="2,16,64", help="page cache sizes to compare, MiB per connection")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reads", type=int, default=10_000, help="reads a size a round")
    ap.add_argument("--write-every", type=int, default=10)
    ap.add_argument("--events", type=int, default=2_000, help="events a size a round")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sqlite_cache.json"))
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        ap.error("--sizes: MiB >= 1; --rounds >= 1")

    from tqdm import tqdm
    from engine.profiles import open_store

    db = Path(args.db)
    stores = loadgen.store_ids(str(ROOT / "rules"))
    now = time.time()
    ids = store_of(db, args.customers, now, stores)
    opened = {mib: open_store(f"sqlite://{db}", cache_kib=mib * 1024) for mib in sizes}
    other = sqlite3.connect(db, isolation_level=None)      # the other process's commits
    other.execute("PRAGMA journal_mode=WAL")
    rng = random.Random(7)

    def reads(store, write_every: int) -> float:
        t = time.perf_counter()
        for i in range(args.reads):
            if write_every and i % write_every == 0:
                other.execute("UPDATE customers SET updated_at = updated_at WHERE customer_id = ?",
                              (rng.choice(ids),))
            store.get_encoded(rng.choice(ids))
        return (time.perf_counter() - t) / args.reads * 1e6

    seed = 1000
    results = {kind: {mib: [] for mib in sizes} for kind in ("read", "read + writes", "apply")}
    for mib, store in opened.items():                  # warm each cache once
        reads(store, 0)
    with tqdm(total=args.rounds * len(sizes), desc="rounds x sizes", file=sys.stderr) as bar:
        for _ in range(args.rounds):
            for mib, store in opened.items():
                results["read"][mib].append(reads(store, 0))
                results["read + writes"][mib].append(reads(store, args.write_every))
                seed += 1
                events = prof.month_events(args.events, args.customers, now, seed, stores)
                t = time.perf_counter()
                for i in range(0, len(events), args.batch):
                    store.apply(events[i:i + args.batch], now)
                results["apply"][mib].append((time.perf_counter() - t) / len(events) * 1e6)
                bar.update()
    for store in opened.values():
        store.close()
    other.close()

    largest = max(sizes)
    rows = {}
    print(f"\nSQLite page cache, {len(ids):,} customers ({db.stat().st_size / 2**20:,.0f} MiB file), "
          f"median of {args.rounds} rounds (ratio to {largest} MiB)")
    print(f"{'what':<16}" + "".join(f"{str(m) + ' MiB':>22}" for m in sizes))
    for kind, by_size in results.items():
        unit = "µs/event" if kind == "apply" else "µs/read"
        med = {m: statistics.median(v) for m, v in by_size.items()}
        rows[kind] = {str(m): {"median_us": round(med[m], 2), "ratio": round(med[m] / med[largest], 3),
                               "rounds_us": [round(x, 2) for x in by_size[m]]} for m in sizes}
        print(f"{kind:<16}" + "".join(f"{med[m]:>9.1f} {unit:<8} {med[m] / med[largest]:>4.2f}x" for m in sizes))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"customers": len(ids), "file_mib": round(db.stat().st_size / 2**20, 1),
                               "sizes_mib": sizes, "rounds": args.rounds, "reads": args.reads,
                               "write_every": args.write_every, "events": args.events, "batch": args.batch,
                               "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
