"""In-process evaluation: the compiled kernel beside the pure-Python reference.

One run measures, per decision call (each call timed on its own, engines
interleaved pass by pass so drift hits both alike):

* the reference pack (rules/) on synthetic customers (bench/synth.py): all
  four decisions, through ``Ruleset.decide`` (typed outcomes) and the raw
  kernel, beside the reference interpreter;
* generated packs of 10, 100, 1,000 and 10,000 rules (the peer workload of
  ../shared/peers/gen_workload.py, translated by bench/peer_adapter.py): the
  kernel beside the reference interpreter, plus compile time.

It prints p50/p99/mean and ratios, and writes JSON and a PNG of latency
against rule count.  Compare figures within one run: the machine is shared.

    python bench/eval_bench.py                 # everything (~3 min)
    python bench/eval_bench.py --quick         # fewer profiles and passes
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEERS = ROOT.parent / "shared" / "peers"

from engine import ruleset  # noqa: E402
from engine.compile import compile_sources  # noqa: E402
from engine.eval.reference import Reference  # noqa: E402
from engine.source import SourceFile  # noqa: E402
from bench import synth  # noqa: E402

NOW = 1_795_435_200.0


def pct(sorted_vals, q):
    k = min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def summarize(ns: list[int]) -> dict:
    s = sorted(ns)
    return {"n": len(s), "p50_us": pct(s, 0.5) / 1e3, "p99_us": pct(s, 0.99) / 1e3,
            "mean_us": sum(s) / len(s) / 1e3, "max_us": s[-1] / 1e3}


def timed(fn, inputs, budget_s: float) -> list[int]:
    pc = time.perf_counter_ns
    out = []
    deadline = time.perf_counter() + budget_s
    for args in inputs:
        t0 = pc()
        fn(*args)
        out.append(pc() - t0)
        if time.perf_counter() > deadline and len(out) >= 20:
            break
    return out


def measure(engines: dict, inputs: list, passes: int, budget_s: float, progress=None) -> dict:
    """Interleaved passes; the engine order rotates every pass."""
    samples = {name: [] for name in engines}
    names = list(engines)
    for i in range(passes):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            for args in inputs[:5]:          # warm-up
                engines[name](*args)
            gc.collect()
            samples[name] += timed(engines[name], inputs, budget_s)
        if progress:
            progress.update(1)
    return {name: summarize(v) for name, v in samples.items()}


def reference_pack(n_profiles: int, passes: int, budget: float, progress) -> dict:
    rs = ruleset.load(ROOT / "rules")
    ref = Reference(rs.checked)
    profiles = synth.customers(n_profiles, NOW)
    reqs = synth.requests(n_profiles)
    inputs = [(p, r) for p, r in zip(profiles, reqs)]
    engines = {
        "maple decide()": lambda p, r: rs.decide(p, r, NOW),
        "maple kernel": lambda p, r: rs.kernel.run(p, r, NOW, p["customer_id"]),
        "reference interpreter": lambda p, r: ref.run(p, r, NOW, p["customer_id"]),
    }
    # the answers agree (the property tests prove it; this checks the bench inputs)
    for p, r in inputs[:200]:
        assert rs.kernel.run(p, r, NOW, p["customer_id"]) == ref.run(p, r, NOW, p["customer_id"])
    stats = measure(engines, inputs, passes, budget, progress)
    floor = per_input_floor(engines["maple decide()"], inputs, repeats=passes * 2)
    return {"rules": rs.counts, "version": rs.version, "profiles": n_profiles, "engines": stats,
            "decide_floor": floor}


def per_input_floor(fn, inputs, repeats: int) -> dict:
    """Each input's fastest of ``repeats`` calls, then percentiles over the
    inputs: how the work itself varies from customer to customer, with the
    machine's interruptions (which the plain p99 includes) filtered out."""
    pc = time.perf_counter_ns
    best = [float("inf")] * len(inputs)
    for _ in range(repeats):
        for i, args in enumerate(inputs):
            t0 = pc()
            fn(*args)
            dt = pc() - t0
            if dt < best[i]:
                best[i] = dt
    out = summarize([int(b) for b in best])
    out["repeats"] = repeats
    return out


def generated_pack(n: int, n_profiles: int, passes: int, budget: float, progress) -> dict | None:
    sys.path.insert(0, str(PEERS))
    try:
        import gen_workload
    except ImportError:
        return None
    from bench.peer_adapter import translate
    import random
    prng = random.Random(7)
    profiles = [gen_workload.gen_profile(prng, i) for i in range(n_profiles)]
    wl = _workload(gen_workload, n, profiles)
    files = [SourceFile(k, v) for k, v in translate(wl).items()]
    t0 = time.perf_counter()
    result = compile_sources(files)
    compile_s = time.perf_counter() - t0
    assert result.ok
    from engine.eval import load_kernel
    kernel = load_kernel(result.program)
    ref = Reference(result.checked)
    empty: dict = {}
    inputs = [(p,) for p in profiles]
    engines = {"maple kernel": lambda p: kernel.run_primary(p, empty, None),
               "reference interpreter": lambda p: ref.run(p, empty, None)}
    stats = measure(engines, inputs, passes, budget, progress)
    return {"n_rules": n, "n_offers": n // 2, "compile_s": compile_s, "timings": result.timings,
            "program": result.program.stats, "engines": stats}


def _workload(gen, n, profiles):
    """gen_workload's rules and offers for N over the given profiles (as its main() does)."""
    import random
    rrng = random.Random(7 * 1000003 + n)
    rules = [{"id": "r%04d" % i, "priority": None, "predicates": gen.gen_predicates(rrng, profiles),
              "output": rrng.choices(gen.CATEGORIES, weights=gen.zipf_weights(30, 0.5), k=1)[0]} for i in range(n)]
    for rank, r in enumerate(rules):
        r["priority"] = 10 * (rank + 1)
    offers = [{"id": "offer-%04d" % i, "weight": rrng.randint(1, 100), "boost": rrng.randint(0, 50),
               "predicates": gen.gen_predicates(rrng, profiles)} for i in range(max(1, n // 2))]
    return {"schema": gen.SCHEMA, "homepage_default": "featured", "homepage_rules": rules, "offers": offers}


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
        return
    gens = [g for g in results["generated"] if g]
    ns = [g["n_rules"] for g in gens]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine, style in (("maple kernel", "o-"), ("reference interpreter", "s--")):
        ax.plot(ns, [g["engines"][engine]["p50_us"] for g in gens], style, label=f"{engine} p50")
        ax.plot(ns, [g["engines"][engine]["p99_us"] for g in gens], style, alpha=0.4, label=f"{engine} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules in the pack (plus half as many offers)")
    ax.set_ylabel("µs per decision call")
    ax.set_title("Maple in-process evaluation vs rule count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval_bench.json"))
    a = ap.parse_args()
    passes = 3 if a.quick else 7
    profiles = 500 if a.quick else 2000
    budget = 0.5 if a.quick else 1.5
    sizes = [int(x) for x in a.sizes.split(",")]
    try:
        from tqdm import tqdm
        progress = tqdm(total=passes * (1 + len(sizes)), desc="passes", unit="pass")
    except ImportError:  # pragma: no cover
        progress = None
    results = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "passes": passes}
    results["reference_pack"] = reference_pack(profiles, passes, budget, progress)
    results["generated"] = [generated_pack(n, profiles, passes, budget, progress) for n in sizes]
    if progress:
        progress.close()

    print("\nreference pack (rules/): all decisions, %d synthetic customers" % profiles)
    print("%-24s %9s %9s %9s" % ("engine", "p50_us", "p99_us", "mean_us"))
    eng = results["reference_pack"]["engines"]
    for name, s in eng.items():
        print("%-24s %9.2f %9.2f %9.2f" % (name, s["p50_us"], s["p99_us"], s["mean_us"]))
    k, r = eng["maple kernel"], eng["reference interpreter"]
    print("kernel is %.0fx faster than the reference interpreter (p50)" % (r["p50_us"] / k["p50_us"]))
    f = results["reference_pack"]["decide_floor"]
    print("maple decide(), each customer's fastest of %d calls: p50 %.2f us, p99 %.2f us "
          "(the work itself, without the machine's interruptions)" % (f["repeats"], f["p50_us"], f["p99_us"]))

    gens = [g for g in results["generated"] if g]
    if gens:
        print("\ngenerated packs (peer workload): kernel vs reference interpreter")
        print("%7s %9s %10s %10s %10s %10s %8s" % ("rules", "compile_s", "maple_p50", "maple_p99",
                                                   "ref_p50", "ref_p99", "x_p50"))
        for g in gens:
            m, r = g["engines"]["maple kernel"], g["engines"]["reference interpreter"]
            print("%7d %9.3f %10.2f %10.2f %10.1f %10.1f %8.0f" % (
                g["n_rules"], g["compile_s"], m["p50_us"], m["p99_us"], r["p50_us"], r["p99_us"],
                r["p50_us"] / m["p50_us"]))
        by_n = {g["n_rules"]: g["engines"]["maple kernel"] for g in gens}
        if 100 in by_n and 10000 in by_n:
            print("10,000 rules cost %.2fx what 100 rules cost (p50; mean %.2fx)" % (
                by_n[10000]["p50_us"] / by_n[100]["p50_us"], by_n[10000]["mean_us"] / by_n[100]["mean_us"]))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"json: {out}")
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
