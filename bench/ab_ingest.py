"""Ingestion A/B: this checkout against another commit, interleaved.

The machine is shared and noisy, so one run of each says little.  This
script extracts ``engine/profiles`` of a git ref (the baseline) into a
temporary directory and runs the same durable ingestion (the workload and
``ingest()`` of bench/profiles_bench.py, batches of 100) alternately with
the baseline's code and this checkout's, each run in a fresh process on a
fresh store, and reports the median of each figure and the ratio.

    .venv/bin/python bench/ab_ingest.py --base a46c7eb --runs 5
    .venv/bin/python bench/ab_ingest.py --base a46c7eb --store redis --runs 3

Writes bench/results/ab_ingest.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: Builds the extension modules of an extracted engine/profiles in place,
#: with setup.py's compiler flags (its extensions() lists them all).
_BUILD = """
import sys
from pathlib import Path
from setuptools import Extension, setup
from Cython.Build import cythonize
pyx = sorted(Path("engine/profiles").glob("*.pyx"))
exts = [Extension("engine.profiles." + p.stem, [str(p)], extra_compile_args=["-O3", "-ffp-contract=off"])
        for p in pyx]
setup(script_args=["build_ext", "--inplace", "-q"], ext_modules=cythonize(
    exts, compiler_directives={"language_level": 3}, quiet=True))
"""


def extract(ref: str, into: Path) -> Path:
    """``engine/__init__.py`` and ``engine/profiles`` as of ``ref``, its
    compiled modules (``engine/profiles/*.pyx``, since _fastpaths) built."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "engine/__init__.py", "engine/profiles"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    if any((into / "engine" / "profiles").glob("*.pyx")):
        subprocess.run([sys.executable, "-c", _BUILD], cwd=into, check=True, capture_output=True)
    return into


def worker(code_root: str, store: str, events: int, customers: int, batch: int, tmp: str) -> None:
    """One ingestion run with the ``engine`` package found under ``code_root``."""
    sys.path.insert(0, code_root)
    sys.path.insert(1, str(ROOT / "bench"))
    import gc
    from engine.profiles import open_store
    from profiles_bench import ingest, workload
    import engine
    assert Path(engine.__file__).resolve().is_relative_to(Path(code_root).resolve()), engine.__file__
    now = time.time()
    evs = workload(events, customers, now)
    gc.collect()
    gc.freeze()
    if store == "sqlite":
        url = f"sqlite://{tmp}/profiles.db"
    else:
        import redis
        url = store
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    s = open_store(url)
    try:
        print(json.dumps(ingest(s, evs, batch, now)))
    finally:
        s.close()


def run_one(code_root: Path, args, url: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="maple-ab-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--worker", str(code_root), "--store", url,
                              "--events", str(args.events), "--customers", str(args.customers),
                              "--batch", str(args.batch), "--tmp", tmp],
                             check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    return {"events_per_s": statistics.median(r["events_per_s"] for r in runs),
            "ack_p50_ms": statistics.median(r["ack_latency"]["p50_us"] for r in runs) / 1000,
            "ack_p99_ms": statistics.median(r["ack_latency"]["p99_us"] for r in runs) / 1000,
            "all_events_per_s": [round(r["events_per_s"]) for r in runs]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD", help="the baseline git ref")
    ap.add_argument("--store", default="sqlite", help="sqlite, redis (starts a redis-server) or a redis:// URL")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench/results/ab_ingest.json"))
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.store, args.events, args.customers, args.batch, args.tmp)
        return 0

    server = None
    url = args.store
    if args.store == "redis":
        sys.path.insert(0, str(ROOT / "tests" / "profiles"))
        from profiles_support import RedisServer
        server_dir = tempfile.mkdtemp(prefix="maple-ab-redis-")
        server = RedisServer(Path(server_dir)).start()
        url = server.url
    results: dict[str, list[dict]] = {"base": [], "this": []}
    try:
        with tempfile.TemporaryDirectory(prefix="maple-ab-base-") as base_dir:
            base = extract(args.base, Path(base_dir))
            for k in range(args.runs):
                order = [("base", base), ("this", ROOT)] if k % 2 == 0 else [("this", ROOT), ("base", base)]
                for name, code in order:
                    r = run_one(code, args, url)
                    results[name].append(r)
                    print(f"run {k + 1} {name:4}: {r['events_per_s']:>8,.0f} events/s  "
                          f"ack p50 {r['ack_latency']['p50_us'] / 1000:6.2f} ms  "
                          f"p99 {r['ack_latency']['p99_us'] / 1000:6.2f} ms", flush=True)
    finally:
        if server is not None:
            server.stop()
    report = {"base": args.base, "store": args.store, "events": args.events, "customers": args.customers,
              "batch": args.batch, "runs": args.runs,
              "summary": {name: summary(rs) for name, rs in results.items()}}
    b, t = report["summary"]["base"], report["summary"]["this"]
    print(f"\nmedians of {args.runs} runs, {args.store}, batches of {args.batch}:")
    for name, s in (("base " + args.base, b), ("this checkout", t)):
        print(f"  {name:24} {s['events_per_s']:>8,.0f} events/s  ack p50 {s['ack_p50_ms']:6.2f} ms"
              f"  p99 {s['ack_p99_ms']:6.2f} ms")
    print(f"  ratio {t['events_per_s'] / b['events_per_s']:.2f}x events/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
