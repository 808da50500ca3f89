"""A DecideBatch decision's time by batch size, in process, beside the
single Decide of the same request.

    python -m bench.batch_size [--customers 2000] [--sizes 20,100,500,1000] [--rounds 7]
    python -m bench.batch_size --base-dir /tmp/base     # this checkout against another, round by round

What ``maple serve`` runs for a DecideBatch, bytes to bytes, without the
transport (``wire.batch_request``, then ``decide_batch_bytes``): the
reference pack with its store data, synthetic customers, their profiles
inline (``profile_json``) or by id from a profile store's cache (fresh
hits).  Each size sends every customer once a round, in batches of that
size; the baseline is the same requests as single Decides (``served``:
``wire.decide_request``, ``decide_bytes``), in the same rounds.  Reported:
µs a decision (the median round), and each size ÷ the single Decide.  A
batch does the single Decide's work per item and shares the call's, so
that ratio should stay at or under 1 whatever the size; a batch whose
items' data outgrows the CPU's caches does not.

``--base-dir DIR``: each round runs in two child processes, this checkout
and the ``engine`` package in DIR (a worktree of another commit, built
as this checkout is: ``python -m bench.pgo`` there after ``make`` here;
bench/README.md), in alternating order; reported
side by side with ``this ÷ base``.

Writes bench/results/batch_size.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

PATHS = {"inline": ("served", "batch"), "by id": ("served_stored", "batch_stored")}


def one_round(customers: int, sizes: list[int]) -> dict:
    """{path: {"single" | size: [µs a decision]}}: one round, measured in this process."""
    from bench import decide_cost
    from bench import profiles as bench_profiles

    out = {}
    calls = {}
    for path, (single_stage, batch_stage) in PATHS.items():
        single, requests = decide_cost._stage_calls(single_stage, customers)
        batch, _ = decide_cost._stage_calls(batch_stage, customers)
        calls[path] = (single, requests, batch, {n: bench_profiles.batch_requests(requests, n) for n in sizes})
        out[path] = {"single": [], **{n: [] for n in sizes}}
    perf = time.perf_counter
    for path, (single, requests, batch, batches) in calls.items():
        t = perf()
        for r in requests:
            single(r)
        out[path]["single"].append((perf() - t) / len(requests) * 1e6)
        for n, bs in batches.items():
            t = perf()
            for b in bs:
                batch(b)
            out[path][n].append((perf() - t) / len(requests) * 1e6)
    return out


# the child: the engine package of ``code`` imported first, then this checkout's bench (whose
# decide_cost would otherwise put this checkout's engine first on the path)
_CHILD = ("import sys; code, root = sys.argv[1], sys.argv[2]; sys.path[:0] = [code]; import engine; "
          "sys.path.insert(0, root); from bench.batch_size import child; child(int(sys.argv[3]), sys.argv[4])")


def child(customers: int, sizes: str) -> None:
    import engine
    print(json.dumps({"engine": engine.__file__, "round": one_round(customers, [int(n) for n in sizes.split(",")])}))


def child_round(code: Path, customers: int, sizes: list[int]) -> dict:
    """One round in a child process running the engine package in ``code``."""
    argv = [sys.executable, "-c", _CHILD, str(code), str(ROOT), str(customers), ",".join(map(str, sizes))]
    out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    if not Path(got["engine"]).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"bench.batch_size: the child ran {got['engine']}, not the engine in {code}")
    return {path: {k if k == "single" else int(k): v for k, v in sizes_.items()}
            for path, sizes_ in got["round"].items()}


def merge(into: dict, part: dict) -> None:
    for path, by_size in part.items():
        for k, v in by_size.items():
            into.setdefault(path, {}).setdefault(k, []).extend(v)


def medians(seen: dict) -> dict:
    return {path: {k: statistics.median(v) for k, v in by_size.items()} for path, by_size in seen.items()}


def table(med: dict, sizes: list[int], base: dict | None) -> str:
    lines = []
    for path, by_size in med.items():
        head = f"{path:<7} {'batch size':>10} {'µs a decision':>14} {'÷ single':>9}"
        if base:
            head += f" {'base µs':>8} {'÷ single':>9} {'this ÷ base':>12}"
        lines += [head, "-" * len(head)]
        for k in ["single", *sizes]:
            row = f"{'':<7} {k if k != 'single' else 'single':>10} {by_size[k]:>14.2f} " \
                  f"{by_size[k] / by_size['single']:>8.2f}x"
            if base:
                b = base[path]
                row += f" {b[k]:>8.2f} {b[k] / b['single']:>8.2f}x {by_size[k] / b[k]:>11.2f}x"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--sizes", default="20,100,500,1000", help="batch sizes, comma-separated (at most 1,000)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--base-dir", default=None, metavar="DIR",
                    help="also the engine package in DIR (a built worktree of another commit), round by round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch_size.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if any(not 1 <= n <= 1000 for n in sizes):
        ap.error("--sizes: each from 1 to 1000 (DecideBatch's limit)")
    from tqdm import tqdm

    base_dir = Path(args.base_dir).resolve() if args.base_dir else None
    if base_dir is not None and not (base_dir / "engine").is_dir():
        ap.error(f"--base-dir {args.base_dir}: no engine package there")
    this, base = {}, {}
    for i in tqdm(range(args.rounds), desc="rounds", unit="round", file=sys.stderr):
        if base_dir is None:
            merge(this, child_round(ROOT, args.customers, sizes))
            continue
        order = [(ROOT, this), (base_dir, base)] if i % 2 == 0 else [(base_dir, base), (ROOT, this)]
        for code, into in order:
            merge(into, child_round(code, args.customers, sizes))
    med = medians(this)
    base_med = medians(base) if base else None
    print(f"A DecideBatch decision in process by batch size, µs (median of {args.rounds} rounds of "
          f"{args.customers} customers; reference pack)\n")
    print(table(med, sizes, base_med))
    report = {"customers": args.customers, "rounds": args.rounds, "sizes": sizes,
              "base_dir": str(base_dir) if base_dir else None,
              "this": {p: {str(k): v for k, v in m.items()} for p, m in med.items()},
              "base": {p: {str(k): v for k, v in m.items()} for p, m in base_med.items()} if base_med else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
