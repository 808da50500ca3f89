"""Geo index vs a linear scan of every store, side by side in one run.

    .venv/bin/python bench/geo_bench.py                     # table + bench/results/geo_bench.json
    .venv/bin/python bench/geo_bench.py --queries 5000 --radii 1 5 25

Two store sets: the committed sample (rules/data/stores.csv, ~320 stores in
nine cities) and a synthetic 10,000-store set (seeded: 150 metro clusters
plus 10% scattered stores).  Each query point is near a random store (the
customer is in a city), and the queries are timed on the index and on the
scan in alternating blocks of 50 (each warm, as in a server answering many;
the garbage collector paused as timeit does); both answers must be equal.
Figures are per query, in microseconds: p50, p99 and the scan/index ratios.
One more row times the whole nearby() call (index + stock lookups +
preferred store) on the sample data.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from engine.inventory import GeoIndex, Inventory, linear_scan, load_dir

ROOT = Path(__file__).resolve().parents[1]


def synthetic_stores(n: int, seed: int = 11) -> list[tuple[str, float, float]]:
    """n stores: 90% in 150 metro clusters (sigma ~8 km), 10% scattered."""
    rng = random.Random(seed)
    metros = [(rng.uniform(-45.0, 62.0), rng.uniform(-180.0, 180.0)) for _ in range(150)]
    out = []
    for i in range(n):
        if rng.random() < 0.9:
            lat0, lon0 = rng.choice(metros)
            lat = max(-90.0, min(90.0, lat0 + rng.gauss(0.0, 0.07)))
            lon = lon0 + rng.gauss(0.0, 0.07) / max(0.2, math.cos(math.radians(lat0)))
        else:
            lat, lon = rng.uniform(-55.0, 70.0), rng.uniform(-180.0, 180.0)
        lon = (lon + 180.0) % 360.0 - 180.0
        out.append((f"x{i:05d}", lat, lon))
    return out


def query_points(stores, count: int, rng: random.Random) -> list[tuple[float, float]]:
    pts = []
    for _ in range(count):
        _, lat, lon = rng.choice(stores)
        lat = max(-90.0, min(90.0, lat + rng.gauss(0.0, 0.03)))
        lon = (lon + rng.gauss(0.0, 0.03) + 180.0) % 360.0 - 180.0
        pts.append((lat, lon))
    return pts


def percentiles(ns: list[int]) -> dict:
    cuts = statistics.quantiles(ns, n=100, method="inclusive")
    return {"p50_us": cuts[49] / 1000.0, "p99_us": cuts[98] / 1000.0, "mean_us": statistics.fmean(ns) / 1000.0}


def timed(fn, *args) -> tuple[int, object]:
    t0 = time.perf_counter_ns()
    out = fn(*args)
    return time.perf_counter_ns() - t0, out


def run_block(fn, block, radius, times, answers) -> None:
    for lat, lon in block:
        t, out = timed(fn, lat, lon, radius)
        times.append(t)
        answers.append(out)


def side_by_side(stores, points, radius: float, block: int = 50) -> dict:
    """Time index and scan on the same queries, in alternating blocks of
    ``block`` queries (each runs warm, as in a server answering many; the
    garbage collector paused as timeit does); both answers must be equal."""
    build_ns, index = timed(GeoIndex, stores)
    t_index, t_scan, a_index, a_scan = [], [], [], []
    gc.collect()
    gc.disable()
    try:
        for n, i in enumerate(range(0, len(points), block)):
            runs = [(index.within, t_index, a_index), (partial(linear_scan, stores), t_scan, a_scan)]
            for fn, times, answers in (runs if n % 2 == 0 else runs[::-1]):
                run_block(fn, points[i:i + block], radius, times, answers)
    finally:
        gc.enable()
    if a_index != a_scan:
        raise SystemExit(f"index and scan disagree (r={radius})")
    found = sum(map(len, a_index))
    build_ms = build_ns / 1e6
    idx, scan = percentiles(t_index), percentiles(t_scan)
    return {"radius_km": radius, "stores": len(stores), "queries": len(points), "build_ms": build_ms,
            "mean_found": found / len(points), "index": idx, "scan": scan,
            "ratio_p50": scan["p50_us"] / idx["p50_us"], "ratio_p99": scan["p99_us"] / idx["p99_us"]}


def nearby_row(inv: Inventory, points, radius: float, rng: random.Random) -> dict:
    data = inv.snapshot.data
    items = [(sku, size) for (sku, size), by_store in data.stock.items() if by_store]
    stores = list(data.stores)
    asks = [(lat, lon, *rng.choice(items), rng.choice(stores)) for lat, lon in points]
    clock, times = time.perf_counter_ns, []
    gc.collect()
    gc.disable()
    try:
        for lat, lon, sku, size, preferred in asks:
            t0 = clock()
            inv.nearby(lat, lon, sku, size, radius_km=radius, limit=5, preferred_store=preferred)
            times.append(clock() - t0)
    finally:
        gc.enable()
    return {"radius_km": radius, "stores": len(stores), "queries": len(asks), "nearby": percentiles(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=1000, help="queries per row (default 1000)")
    ap.add_argument("--radii", type=float, nargs="+", default=[2.0, 10.0, 50.0], help="radii in km")
    ap.add_argument("--synthetic", type=int, default=10_000, help="stores in the synthetic set")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "geo_bench.json")
    args = ap.parse_args(argv)

    loaded = load_dir(ROOT / "rules" / "data")
    sample = [(s.id, s.lat, s.lon) for s in loaded.data.stores.values()]
    sets = {"sample": sample, f"synthetic-{args.synthetic}": synthetic_stores(args.synthetic)}
    rng = random.Random(args.seed)
    rows = []
    for name, stores in sets.items():
        points = query_points(stores, args.queries, rng)
        linear_scan(stores, *points[0], 1.0)                       # warm up both paths
        for radius in args.radii:
            rows.append({"set": name, **side_by_side(stores, points, radius)})
    inv = Inventory(loaded.data)
    nearby = nearby_row(inv, query_points(sample, args.queries, rng), 10.0, rng)

    print(f"geo index vs linear scan, {args.queries} queries per row, µs per query "
          f"(Python {platform.python_version()}, {platform.machine()})")
    head = f"{'store set':<18}{'stores':>7}{'radius':>8}{'found':>7} | {'index p50':>9}{'p99':>8} | " \
           f"{'scan p50':>9}{'p99':>9} | {'x p50':>6}{'x p99':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['set']:<18}{r['stores']:>7}{r['radius_km']:>6g}km{r['mean_found']:>7.1f} | "
              f"{r['index']['p50_us']:>9.1f}{r['index']['p99_us']:>8.1f} | "
              f"{r['scan']['p50_us']:>9.1f}{r['scan']['p99_us']:>9.1f} | "
              f"{r['ratio_p50']:>5.0f}x{r['ratio_p99']:>6.0f}x")
    n = nearby["nearby"]
    print(f"\nInventory.nearby() on the sample, r=10 km, limit 5, preferred store: "
          f"p50 {n['p50_us']:.1f} µs, p99 {n['p99_us']:.1f} µs")
    builds = ", ".join(f"{r['set']} {r['build_ms']:.1f} ms" for r in rows if r["radius_km"] == args.radii[0])
    print(f"index build: {builds}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"bench": "geo", "python": platform.python_version(), "machine": platform.machine(),
              "queries": args.queries, "seed": args.seed, "rows": rows, "nearby": nearby}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
