"""What ingesting a batch of events costs in CPU instructions, this
checkout beside a git ref.

    python -m bench.ingest_cost [--base REF] [--batches 30] [--events 13000 --customers 3000]

Builds the realistic month of events of bench/profiles_bench.py (a fifth of
them from the 1% busiest customers), applies the first batches of 100 to a
fresh SQLite store (durable, as served) to warm it, and counts under
``valgrind --tool=callgrind`` the user-space instructions of the next
``--batches`` batches: validation, plan, fold, profile codec and SQLite,
everything ``store.apply`` runs, per batch.  With ``--base`` it counts the
same with ``engine/profiles`` as of that git ref (extracted as
bench/ab_ingest.py does), so a change is judged by one number that the
other jobs on this shared machine cannot disturb (wall-clock ingestion
moves by +-20 % from run to run here; ``bench/ab_ingest.py`` gives the
wall-clock side, interleaved).  Checkpoints run on the writer (no
background thread), so every batch counts the same work.  Needs valgrind.
"""
from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.callgrind import instructions, require_valgrind

ROOT = Path(__file__).resolve().parents[1]
NOW = 1.8e9
BATCH = 100


def child(code_root: str, events: int, customers: int, warm: int, batches: int, tmp: str) -> None:
    sys.path.insert(0, code_root)
    sys.path.insert(1, str(ROOT / "bench"))
    import engine
    from engine.profiles import open_store
    from profiles_bench import workload
    assert Path(engine.__file__).resolve().is_relative_to(Path(code_root).resolve()), engine.__file__
    evs = workload(events, customers, NOW)
    chunks = [evs[i:i + BATCH] for i in range(0, len(evs), BATCH)]
    if len(chunks) < warm + batches:
        raise SystemExit(f"ingest_cost: {events} events make {len(chunks)} batches, "
                         f"fewer than --warm {warm} + --batches {batches}")
    gc.collect()
    gc.freeze()
    store = open_store(f"sqlite://{tmp}/profiles.db", checkpoint_every=0)
    try:
        for b in chunks[:warm]:
            store.apply(b, NOW)
        # callgrind counts only inside functools.reduce (--toggle-collect): the batches, nothing else
        functools.reduce(lambda _, b: store.apply(b, NOW), chunks[warm:warm + batches], None)
    finally:
        store.close()


def measure(code_root: Path, args) -> float:
    with tempfile.TemporaryDirectory(prefix="maple-ingest-cost-") as tmp:
        n = instructions(["bench.ingest_cost", "--child", str(code_root), "--tmp", tmp, "--events", str(args.events),
                          "--customers", str(args.customers), "--warm", str(args.warm),
                          "--batches", str(args.batches)], tmp, f"ingest_cost for {code_root}")
    return n / args.batches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="also count engine/profiles as of this git ref")
    ap.add_argument("--events", type=int, default=13_000)
    ap.add_argument("--customers", type=int, default=3_000)
    ap.add_argument("--warm", type=int, default=100, help="batches applied before counting")
    ap.add_argument("--batches", type=int, default=30, help="batches counted")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.events, args.customers, args.warm, args.batches, args.tmp)
        return 0
    require_valgrind("ingest_cost")
    print(f"callgrind: instructions per batch of {BATCH}, SQLite, {args.events} events / {args.customers} "
          f"customers, batches {args.warm + 1}-{args.warm + args.batches}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="maple-ingest-base-") as base_dir:
        roots = {"this checkout": ROOT}
        if args.base:
            from bench.ab_ingest import extract
            roots = {f"base {args.base}": extract(args.base, Path(base_dir)), **roots}
        with ThreadPoolExecutor(len(roots)) as pool:
            counts = dict(zip(roots, pool.map(lambda r: measure(r, args), roots.values())))
    for name, n in counts.items():
        print(f"{name:<24} {n / 1e6:8.2f} M instructions per batch ({n / BATCH / 1e3:,.0f} k per event)")
    if args.base:
        base, this = counts.values()
        print(f"this / base: {this / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
