"""Profile layer figures, in one run, side by side.

1. Durable ingestion: events/s through ``ProfileStore.apply`` in batches of
   100 (validation, dedupe, identity, fold, commit: SQLite WAL with
   synchronous=FULL, Redis with appendonly yes + appendfsync always), and the
   acknowledgement latency per batch.
2. Decide latency with the profile taken from each store, through the cache
   (hit) and past it (miss: store read + decode), beside the inline-snapshot
   case (the profile dict already in memory), as percentiles and ratios:
   the rules alone, then the whole Decide as the server runs it (request
   bytes to response bytes; inline means the profile travels as JSON).
3. DecideBatch by customer id with nothing cached: the items' profiles read
   in one store call a batch, beside one read per item (``batch_by_id``).

    .venv/bin/python bench/profiles_bench.py                  # starts its own redis-server
    .venv/bin/python bench/profiles_bench.py --redis redis://127.0.0.1:6379/15 --events 200000
    .venv/bin/python bench/profiles_bench.py --writers 4      # concurrent callers (group commit)

The decisions come from tests/profiles/data/pack.rules over rules/schema.rules,
or with ``--pack reference`` from the reference pack (rules/) with its store
and inventory data (rules/data): its four decisions together, nearby stores
included, for a product page in London -- issue 5's in-process figure.
The table goes to stdout, everything to bench/results/profiles.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import timeit
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "profiles"))     # RedisServer: the tests' real-server helper

from engine.profiles import open_store                                    # noqa: E402
from engine.ruleset import build                                            # noqa: E402
from engine.server.app import settle_heap                                   # noqa: E402
from engine.source import SourceFile                                        # noqa: E402
from profiles_support import RedisServer                                    # noqa: E402

DAY = 86400.0
CATEGORIES = ["running-shoes", "trail-shoes", "shirts", "jackets", "coffee-beans", "socks"]
SIZES = {"running-shoes": ["40", "41", "42", "43", "44"], "trail-shoes": ["41", "42", "43"],
         "shirts": ["S", "M", "L"], "jackets": ["M", "L", "XL"], "socks": ["S", "M"], "coffee-beans": [None]}
STORES = ["riverside", "mall", "station", "harbour"]
CHANNELS = ["web", "app", "email", "pos"]
MIX = [("product_view", 35), ("page_view", 18), ("search", 8), ("add_to_cart", 10), ("remove_from_cart", 3),
       ("purchase", 6), ("store_visit", 3), ("email_open", 6), ("email_click", 2), ("offer_impression", 6),
       ("consent_change", 1), ("wishlist_add", 2)]


# ---------------------------------------------------------------- workload
def _line(rnd: random.Random) -> dict:
    cat = rnd.choice(CATEGORIES)
    line = {"sku": f"{cat[:3].upper()}-{rnd.randrange(400)}", "category": cat,
            "price": round(rnd.uniform(3, 180), 2), "qty": rnd.choice([1, 1, 1, 2])}
    size = rnd.choice(SIZES[cat])
    if size is not None:
        line["size"] = size
    return line


def _fields(kind: str, rnd: random.Random) -> tuple[str, dict]:
    """(channel, the type's fields) for one event of ``kind``."""
    web_or_app = rnd.choice(["web", "app"])
    if kind in ("product_view", "wishlist_add"):
        line = _line(rnd)
        return web_or_app, {"sku": line["sku"], "category": line["category"]}
    if kind == "search":
        cat = rnd.choice(CATEGORIES[:4])
        return web_or_app, {"query": cat, "category": cat, "size": rnd.choice(SIZES[cat])}
    if kind == "add_to_cart":
        return web_or_app, {"items": [_line(rnd)]}
    if kind == "remove_from_cart":
        return web_or_app, {"items": [{"sku": _line(rnd)["sku"]}]}
    if kind == "purchase":
        channel = rnd.choice(["web", "app", "pos"])
        extra = {"store_id": rnd.choice(STORES)} if channel == "pos" else {}
        return channel, {"items": [_line(rnd) for _ in range(rnd.choice([1, 1, 2, 3]))], **extra}
    if kind == "store_visit":
        return "pos", {"store_id": rnd.choice(STORES)}
    if kind in ("email_open", "email_click"):
        return "email", {"campaign_id": "spring"}
    if kind == "offer_impression":
        return rnd.choice(CHANNELS[:3]), {"offer_id": rnd.choice(["free_latte_with_beans", "welcome_ten",
                                                                  "finish_your_order"])}
    if kind == "consent_change":
        return web_or_app, {"email": rnd.random() < 0.7, "push": rnd.random() < 0.5}
    return rnd.choice(CHANNELS[:2]), {"page": "home"}


def workload(n_events: int, n_customers: int, now: float, seed: int = 1) -> list[dict]:
    """Events of a month, most of them recent; a fifth of them from the 1%
    most active customers."""
    rnd = random.Random(seed)
    hot = max(1, n_customers // 100)
    kinds = [k for k, w in MIX for _ in range(w)]
    out = []
    for i in range(n_events):
        c = rnd.randrange(hot) if rnd.random() < 0.2 else rnd.randrange(n_customers)
        kind = rnd.choice(kinds)
        channel, fields = _fields(kind, rnd)
        e = {"event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "type": kind, "channel": channel,
             "timestamp": now - rnd.random() ** 2 * 30 * DAY, "customer_id": f"cust-{c}", **fields}
        if channel == "app":
            e["device_id"] = f"dev-{c}"
        out.append(e)
    return out


# ---------------------------------------------------------------- measuring
def percentiles(samples_ns: list[int]) -> dict:
    s = sorted(samples_ns)

    def q(p):
        return s[min(len(s) - 1, int(p * len(s)))] / 1000.0
    return {"p50_us": q(0.50), "p90_us": q(0.90), "p99_us": q(0.99), "p999_us": q(0.999),
            "mean_us": statistics.fmean(s) / 1000.0, "n": len(s)}


def ingest(store, events: list[dict], batch: int, now: float, writers: int = 1) -> dict:
    """Apply ``events`` in batches; with ``writers`` > 1, that many threads
    apply the batches (round robin) at once, as a server's RPC threads would."""
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    acks: list[int] = []

    def writer(mine):
        for b in mine:
            b0 = time.perf_counter_ns()
            result = store.apply(b, now)
            acks.append(time.perf_counter_ns() - b0)
            if result.errors:
                raise SystemExit(f"bench workload has invalid events: {result.errors[0]}")

    t0 = time.perf_counter()
    if writers == 1:
        writer(batches)
    else:
        threads = [threading.Thread(target=writer, args=(batches[k::writers],)) for k in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - t0
    health = store.health()
    return {"events": len(events), "batch": batch, "writers": writers, "seconds": elapsed,
            "events_per_s": len(events) / elapsed, "ack_latency": percentiles(acks),
            "durable": health.durable, "store_detail": health.detail}


def time_calls(fn, args: list, repeat: int) -> list[int]:
    perf = time.perf_counter_ns
    out = []
    for k in range(repeat):
        a = args[k % len(args)]
        t = perf()
        fn(a)
        out.append(perf() - t)
    return out


def decide_cases(rs, stores: dict, customers: list[str], request: dict, now: float) -> dict:
    """name -> one Decide with the profile from: memory (inline snapshot),
    each store's cache (hit), each store past its cache (miss).  Stored
    profiles are read the way ``maple serve --store`` reads them
    (:class:`engine.service.stored.StoredProfiles`: the cache, then the
    lifecycle brought up to "now")."""
    from engine.service.stored import StoredProfiles
    first = next(iter(stores.values()))
    profiles = {c: first.get(c) for c in customers}
    cases = {"inline snapshot": lambda c: rs.decide(profiles[c], request, now)}
    for name, store in stores.items():
        hot = StoredProfiles(store, cache_ttl=3600.0, cache_size=len(customers) + 10)
        cold = StoredProfiles(store, cache_ttl=0.0, cache_size=len(customers) + 10)
        for c in customers:
            hot.lookup(c, None, now)
        cases[f"{name} cache hit"] = lambda c, hot=hot: rs.decide(hot.lookup(c, None, now).profile, request, now)
        cases[f"{name} cache miss"] = lambda c, cold=cold: rs.decide(cold.lookup(c, None, now).profile,
                                                                     request, now)
    return cases


def engine_cases(rs, stores: dict, customers: list[str], request: dict, now: float, nearby=None) -> dict:
    """The engine's Decide in process, as an application embedding Maple
    calls it (``Decider.decide`` with a DecideQuery): the profile in hand
    (inline) or from each store's cache (hit) or past it (miss), the rules,
    the typed results, the nearby stores; no protobuf on either side."""
    from engine.profiles.fold import public
    from engine.service.decide import Decider
    from engine.service.model import DecideQuery, RequestContext
    from engine.service.rules import RulesetHolder
    from engine.service.stored import StoredProfiles
    holder = RulesetHolder()
    holder.swap(rs)
    first = next(iter(stores.values()))
    loc = request.get("location")
    context = RequestContext(channel=request["channel"], page=request["page"], category=request["category"],
                             sku=request["sku"], location=(loc["lat"], loc["lon"]) if loc else None,
                             timestamp=now)
    inline = {}
    for c in customers:
        profile = public(first.get(c))
        inline[c] = DecideQuery(profile=profile, snapshot_bytes=len(json.dumps(profile)), context=context)
    by_id = {c: DecideQuery(customer_id=c, context=context) for c in customers}
    plain = Decider(holder, stores=nearby)
    cases = {"inline snapshot": lambda c: plain.decide(inline[c])}
    for name, store in stores.items():
        hot = StoredProfiles(store, cache_ttl=3600.0, cache_size=len(customers) + 10)
        cold = StoredProfiles(store, cache_ttl=0.0, cache_size=len(customers) + 10)
        for c in customers:
            hot.lookup(c, None, now)
        cases[f"{name} cache hit"] = lambda c, d=Decider(holder, hot, nearby): d.decide(by_id[c])
        cases[f"{name} cache miss"] = lambda c, d=Decider(holder, cold, nearby): d.decide(by_id[c])
    return cases


def service_cases(rs, stores: dict, customers: list[str], request: dict, now: float,
                  nearby=None) -> dict:
    """The same comparison one level up, as ``maple serve`` does it: request
    bytes in, response bytes out (the C reader, Decide with typed results
    and nearby stores, the C encoder; no transport).  Inline: the profile
    travels as ``profile_json``; stored: only the customer id does, and the
    profile comes from the store's cache (hit) or the store (miss).
    ``nearby``: the stores source (None: no store data)."""
    from engine.profiles.fold import public
    from engine.server import wire
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    from engine.server.servicers import DecisionServicer
    from engine.service.decide import Decider
    from engine.service.rules import RulesetHolder
    from engine.service.stored import StoredProfiles
    holder = RulesetHolder()
    holder.swap(rs)
    first = next(iter(stores.values()))

    def payload(c: str, inline: bool) -> bytes:
        r = pb.DecideRequest(customer_id=c, context=pb.RequestContext(
            channel=pb.CHANNEL_WEB, page=request["page"], category=request["category"], sku=request["sku"]))
        r.context.timestamp.FromNanoseconds(int(now * 1e9))
        if "location" in request:
            r.context.location.lat, r.context.location.lon = request["location"]["lat"], request["location"]["lon"]
        if inline:
            r.customer_id = ""
            r.profile_json = json.dumps(public(first.get(c))).encode()
        return r.SerializeToString()

    class NoDeadline:
        def time_remaining(self):
            return None

    def call(decider: Decider, payloads: dict):
        served, read, ctx = DecisionServicer(decider).decide_bytes, wire.decide_request, NoDeadline()
        return lambda c: served(read(payloads[c]), ctx)

    inline, by_id = {c: payload(c, True) for c in customers}, {c: payload(c, False) for c in customers}
    cases = {"inline snapshot": call(Decider(holder, stores=nearby), inline)}
    for name, store in stores.items():
        hot = StoredProfiles(store, cache_ttl=3600.0, cache_size=len(customers) + 10)
        cold = StoredProfiles(store, cache_ttl=0.0, cache_size=len(customers) + 10)
        for c in customers:
            hot.lookup(c, None, now)
        cases[f"{name} cache hit"] = call(Decider(holder, hot, nearby), by_id)
        cases[f"{name} cache miss"] = call(Decider(holder, cold, nearby), by_id)
    return cases


def batch_by_id(rs, stores: dict, customers: list[str], request: dict, now: float, nearby=None,
                size: int = 100, rounds: int = 5) -> dict:
    """DecideBatch by customer id with nothing cached (a campaign's batch:
    every profile read from the store), µs per decision: ``Decider.
    decide_batch``, which reads the items' profiles in one store call
    (``StoredProfiles.prefetch``), beside the same items decided one by one,
    each reading its own (what a batch did before).  Each batch starts from
    an empty cache (cleared, uncounted); the two take turns, ``rounds``
    times over ``customers`` in batches of ``size``."""
    from engine.service.decide import Decider
    from engine.service.model import DecideQuery, RequestContext
    from engine.service.rules import RulesetHolder
    from engine.service.stored import StoredProfiles
    holder = RulesetHolder()
    holder.swap(rs)
    loc = request.get("location")
    context = RequestContext(channel=request["channel"], page=request["page"], category=request["category"],
                             sku=request["sku"], location=(loc["lat"], loc["lon"]) if loc else None,
                             timestamp=now)
    batches = [[DecideQuery(customer_id=c, context=context) for c in customers[i:i + size]]
               for i in range(0, len(customers) - size + 1, size)]
    out = {}
    for name, store in stores.items():
        profiles = StoredProfiles(store, cache_ttl=60.0, cache_size=len(customers) + 10)
        decider = Decider(holder, profiles, nearby)
        ways = {"one store call a batch": decider.decide_batch,
                "one store call an item": lambda b: [decider.decide(q) for q in b]}
        per = {way: [] for way in ways}
        for _ in range(rounds):
            for way, fn in ways.items():
                for b in batches:
                    profiles.cache.clear()
                    t0 = time.perf_counter_ns()
                    fn(b)
                    per[way].append((time.perf_counter_ns() - t0) / 1000 / len(b))
        out[name] = {way: {"p50_us": statistics.median(v), "p90_us": statistics.quantiles(v, n=10)[-1],
                           "batches": len(v)} for way, v in per.items()}
    return out


def decide_latency(cases: dict, customers: list[str], repeat: int, rounds: int = 10,
                   classes: dict[str, set] | None = None) -> dict | tuple[dict, dict]:
    """Percentiles per case; the cases take turns, ``rounds`` times, so a
    noisy machine slows them all alike.  With ``classes`` (class name -> the
    customers in it), also the percentiles per class and case, from the same
    calls: ``(all, {class: {case: percentiles}})``."""
    per_call = max(1, repeat // rounds)
    samples = {name: [] for name in cases}
    for fn in cases.values():                       # warm up
        time_calls(fn, customers, min(repeat, 2000))
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name] += time_calls(fn, customers, per_call)
    every = {name: percentiles(s) for name, s in samples.items()}
    if classes is None:
        return every
    # time_calls times customers[k % len(customers)] as its k-th call, and each round starts at k = 0
    who = [customers[k % len(customers)] for k in range(per_call)] * rounds
    return every, {cls: {name: percentiles([ns for c, ns in zip(who, s) if c in members])
                         for name, s in samples.items()}
                   for cls, members in classes.items()}


def constant_work(median_ns: float):
    """A call that does the same work every time (``sum(range(n))``, n chosen
    so that its median is about ``median_ns``): whatever tail it shows is the
    machine's (interrupts, the other jobs on a shared VM, frequency), not the
    workload's."""
    probe = sorted(time_calls(lambda _: sum(range(1000)), [0], 2001))[1000]
    n = max(10, round(1000 * median_ns / max(probe, 1)))
    return lambda _: sum(range(n))


def tail_apart(fn, customers: list[str], repeat: int, rounds: int = 10, tries: int = 15) -> dict:
    """Where the p99 of ``fn`` over ``customers`` comes from, in one run:

    * ``everyone``: each customer in turn, as :func:`decide_latency` times it;
    * ``constant work``: a call of the same median doing the same work every
      time, timed in the same rounds (the machine's own tail at that length);
    * ``best of N per customer``: each customer's fastest of ``tries`` calls,
      the spread of the workload itself with most of the machine's noise
      taken out (what the p99 would be on a machine that never interrupts).
    """
    per_call = max(1, repeat // rounds)
    warm = time_calls(fn, customers, min(repeat, 2000))
    floor = constant_work(percentiles(warm)["p50_us"] * 1000)
    time_calls(floor, [0], 2000)
    samples = {"everyone": [], "constant work": []}
    for _ in range(rounds):
        samples["everyone"] += time_calls(fn, customers, per_call)
        samples["constant work"] += time_calls(floor, [0], per_call)
    best = [min(time_calls(fn, [c], tries)) for c in customers]
    out = {name: percentiles(s) for name, s in samples.items()}
    out[f"best of {tries} per customer"] = percentiles(best)
    return out


# ---------------------------------------------------------------- the run
def load_pack(which: str = "small"):
    """(ruleset, stores source or None, the request the Decides are for)."""
    if which == "reference":
        from engine.ruleset import load
        from engine.service.inventory import InventoryHolder, InventoryStores
        request = {"channel": "web", "page": "product", "category": "running-shoes", "sku": "RUN-001",
                   "location": {"lat": 51.5072, "lon": -0.1276}}
        return load(ROOT / "rules"), InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")), request
    request = {"channel": "web", "page": "product", "category": "running-shoes", "sku": "RUN-1"}
    return build([SourceFile("rules/schema.rules", (ROOT / "rules/schema.rules").read_text()),
                  SourceFile("pack.rules", (ROOT / "tests/profiles/data/pack.rules").read_text())]), None, request


def open_stores(args, tmp: Path):
    stores = {"sqlite": open_store(f"sqlite://{tmp / 'profiles.db'}")}
    if args.reference:
        # NOT a product setting: how much of SQLite ingestion is the fsync.
        stores["sqlite, synchronous=OFF (reference, NOT durable)"] = nosync = \
            open_store(f"sqlite://{tmp / 'nosync.db'}")
        nosync._db.execute("PRAGMA synchronous=OFF")
    server = None
    if args.redis:
        url = args.redis
    else:
        server = RedisServer(tmp / "redis").start()
        url = server.url
    import redis
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    stores["redis"] = open_store(url)
    return stores, server


def _ratio_table(title: str, cases: dict) -> list[str]:
    """Percentiles per case and their ratios to the inline-snapshot case."""
    lines = ["", title, "",
             f"{'':22} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7} {'p50 ×inline':>12} {'p99 ×inline':>12}"]
    base = cases["inline snapshot"]
    for case, r in cases.items():
        lines.append(f"{case:22} {r['p50_us']:>7.1f} {r['p90_us']:>7.1f} {r['p99_us']:>7.1f} "
                     f"{r['p999_us']:>7.1f} {r['p50_us'] / base['p50_us']:>12.2f} "
                     f"{r['p99_us'] / base['p99_us']:>12.2f}")
    return lines


def render(report: dict) -> str:
    writers = report.get("writers", 1)
    lines = ["", f"Durable ingestion, batches of {report['batch']} "
                 f"({report['events']} events, {report['customers']} customers"
                 f"{f', {writers} writer threads' if writers > 1 else ', one caller'})", "",
             f"{'store':48} {'events/s':>10} {'ack p50':>10} {'ack p99':>10}  durable"]
    for name, r in report["ingest"].items():
        a = r["ack_latency"]
        lines.append(f"{name:48} {r['events_per_s']:>10,.0f} {a['p50_us'] / 1000:>8.2f}ms "
                     f"{a['p99_us'] / 1000:>8.2f}ms  {r['durable']} ({r['store_detail']})")
    pack = report.get("pack", "small")
    lines += _ratio_table(f"Decide latency, the rules alone: all {report['decisions']} decisions of the "
                          f"{pack} pack, profile from ({report['repeat']} calls each, µs)", report["decide"])
    if report.get("engine"):
        lines += _ratio_table("The engine's Decide in process (Decider.decide: the profile, the rules, typed "
                              f"results, nearby stores; no protobuf; {pack} pack), µs", report["engine"])
    if report.get("service"):
        lines += _ratio_table("The whole Decide as the server runs it (request bytes -> response bytes, "
                              f"no transport; {pack} pack), µs", report["service"])
    for cls, cases in report.get("service_by_class", {}).items():
        n = next(iter(cases.values()))["n"]
        lines += _ratio_table(f"The whole Decide, {cls} ({n} calls per case), µs", cases)
    if report.get("tail"):
        lines += ["", "The p99 taken apart: the whole Decide, SQLite cache hit, beside a call doing the same",
                  "work every time at the same median (the machine's own tail) and each customer's best",
                  "call (the workload's spread without the machine's noise), µs", "",
                  f"{'':28} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7} {'p99/p50':>8}"]
        for case, r in report["tail"].items():
            lines.append(f"{case:28} {r['p50_us']:>7.1f} {r['p90_us']:>7.1f} {r['p99_us']:>7.1f} "
                         f"{r['p999_us']:>7.1f} {r['p99_us'] / r['p50_us']:>8.2f}")
    if report.get("batch_by_id"):
        lines += ["", "DecideBatch of 100 by customer id, nothing cached (every profile read from the store),",
                  "µs per decision: the items' profiles read in one store call, beside one read per item", "",
                  f"{'store':10} {'one call a batch: p50':>22} {'p90':>7} {'one call an item: p50':>22} "
                  f"{'p90':>7} {'p50 ×':>7}"]
        for store, r in report["batch_by_id"].items():
            a, b = r["one store call a batch"], r["one store call an item"]
            lines.append(f"{store:10} {a['p50_us']:>22.1f} {a['p90_us']:>7.1f} {b['p50_us']:>22.1f} "
                         f"{b['p90_us']:>7.1f} {a['p50_us'] / b['p50_us']:>7.2f}")
    m = report["machine"]
    lines += ["", f"machine: {m['cpus']} CPUs, Python {m['python']}, "
                  f"sum(range(1000)) takes {m['sum_range_1000_us']:.1f} µs (a yardstick for comparing runs)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--writers", type=int, default=1,
                    help="threads applying batches at once (group commit); 1: one caller, batch after batch")
    ap.add_argument("--repeat", type=int, default=20_000, help="decide calls per case")
    ap.add_argument("--redis", metavar="URL", help="use this Redis (its db is FLUSHED) instead of starting one")
    ap.add_argument("--reference", action="store_true",
                    help="also ingest into SQLite with synchronous=OFF (not durable) to show the fsync's share")
    ap.add_argument("--pack", choices=("small", "reference"), default="small",
                    help="the rules Decide runs: tests/profiles/data/pack.rules, or rules/ with its store data")
    ap.add_argument("--out", default=str(ROOT / "bench/results/profiles.json"))
    args = ap.parse_args(argv)

    now = time.time()
    events = workload(args.events, args.customers, now)
    rs, nearby, request = load_pack(args.pack)
    # The process settled as `maple serve` settles it (engine.server.app.settle_heap):
    # what is loaded so far (the workload, the rules) frozen out of the collector's
    # passes, and the server's larger first generation (fewer young collections:
    # ~4 % of a batch's instructions with Python's default 700).
    settle_heap()
    with tempfile.TemporaryDirectory(prefix="maple-bench-") as tmp:
        stores, server = open_stores(args, Path(tmp))
        try:
            report = {"events": args.events, "customers": args.customers, "batch": args.batch,
                      "writers": args.writers,
                      "repeat": args.repeat, "decisions": len(rs.decision_names), "pack": args.pack,
                      "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                  "platform": platform.platform(),
                                  "sum_range_1000_us": min(timeit.repeat("sum(range(1000))", number=2000,
                                                                         repeat=5)) / 2000 * 1e6},
                      "ingest": {}, "decide": {}}
            for name, store in stores.items():
                report["ingest"][name] = ingest(store, events, args.batch, now, args.writers)
                if "NOT durable" in name:
                    report["ingest"][name].update(durable=False, store_detail="synchronous=OFF")
            durable = {n: s for n, s in stores.items() if "NOT durable" not in n}
            hot = sorted({e["customer_id"] for e in events[:5000]})[:1000]
            cases = decide_cases(rs, durable, hot, request, now)
            report["decide"] = decide_latency(cases, hot, args.repeat)
            # workload(): a fifth of the events come from the busiest 1 % (cust-0 ..), whose profiles
            # grow to 4-6 KB of JSON; their typical cost is what sets the p99 over everyone
            busiest = {f"cust-{i}" for i in range(max(1, args.customers // 100))}
            report["engine"] = decide_latency(engine_cases(rs, durable, hot, request, now, nearby), hot,
                                              args.repeat)
            served = service_cases(rs, durable, hot, request, now, nearby)
            report["service"], report["service_by_class"] = decide_latency(
                served, hot, args.repeat,
                classes={"the busiest 1 % of customers": busiest & set(hot), "everyone else": set(hot) - busiest})
            # issue 5's figure (the store lookup included): how much of its p99 is the machine's
            report["tail"] = tail_apart(served["sqlite cache hit"], hot, args.repeat)
            report["batch_by_id"] = batch_by_id(rs, durable, sorted({e["customer_id"] for e in events})[:2000],
                                                request, now, nearby)
        finally:
            for store in stores.values():
                store.close()
            if server is not None:
                server.stop()
    print(render(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
