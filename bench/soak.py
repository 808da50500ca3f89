"""A soak: ``maple serve`` under every kind of call at once for minutes,
its processes' memory sampled, to see that nothing grows and nothing fails.

One ``maple serve --workers N`` on a SQLite store holding what a month of
events folds into (``--customers``), with the reference rules copied to a
temporary directory, the decision log on (1 %) and a state directory.
Callers, each on a thread of this process, all the time:

* Decide by customer id (two callers), Decide with the profile inline,
  DecideBatch of 50 by id;
* RecordEvents of 20 new events (the bench's realistic month; new
  customers too; every 10,000 events (``--event-batches``) a new month of new events, so the
  store keeps growing and the change feed keeps invalidating cached
  profiles all run long);
* UpdateInventory of 20 deltas and absolute counts;
* ReloadRules every few seconds, one reload in three of a rule file made
  broken on purpose (the server must refuse it, FAILED_PRECONDITION, and
  keep serving the last good rules);
* bad requests: garbage bytes and an over-long customer id
  (INVALID_ARGUMENT), and a Decide asking for its explanation.

Every ``--sample-seconds`` the resident memory (VmRSS) of each of the
server's processes (the supervisor, each worker as GetRuleset names them,
the rule compiler, multiprocessing's resource tracker) is read from /proc. Reported: each process's memory at
the start, at the end, its largest, and how fast it grew over the second
half of the run (MiB a minute: the first half fills caches), and of that
growth how much is anonymous memory (RssAnon: the heap, where a leak
would show) beside the store file's own growth (the events written grow
it, and SQLite's page cache, up to 16 MiB a connection, follows), and what the workers say
they hold (/metrics: the profile caches, entries and MiB, and SQLite's memory); the calls of
each kind and their rate; the errors by code, those provoked on purpose
apart from any other; and the server's exit status after SIGTERM (it must
drain and exit 0). Exits 1 if a call failed unexpectedly or the server did
not exit 0. A plot of memory over time beside the JSON.

    python -m bench.soak                         # 10 minutes, 2 workers
    python -m bench.soak --minutes 60 --workers 2 --out /tmp/soak.json

Writes bench/results/soak.json and soak.png.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from bench import loadgen, profiles as prof       # noqa: E402

#: what the bad-request and broken-rules callers provoke on purpose
EXPECTED = {("bad", "INVALID_ARGUMENT"), ("reload", "FAILED_PRECONDITION")}
BROKEN_RULE = "\nrule soak_broken priority 1\n  when profile.no_such_attribute is set\n"


def status_mib(pid: int, field: str = "VmRSS") -> float | None:
    """A memory line of /proc/PID/status in MiB: VmRSS (resident), RssAnon
    (of it, the heap and other anonymous memory: what a leak grows),
    RssFile (mapped files: code, libraries)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mib(pid: int) -> float | None:
    return status_mib(pid, "VmRSS")


def files_mib(*paths: Path) -> float:
    """The size of the files that exist among ``paths``, in MiB (the store and its WAL)."""
    return sum(p.stat().st_size for p in paths if p.exists()) / 2 ** 20


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def growth(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) over the second half, in MiB a minute."""
    half = points[len(points) // 2:]
    if len(half) < 2:
        return None
    n = len(half)
    mx = sum(t for t, _ in half) / n
    my = sum(m for _, m in half) / n
    den = sum((t - mx) ** 2 for t, _ in half)
    return None if den == 0 else round(60 * sum((t - mx) * (m - my) for t, m in half) / den, 3)


class Callers:
    """The load: one thread per kind of call, counting calls and errors."""

    def __init__(self, info: dict, rules_dir: Path, ids: list[str], customers: int, now: float, stores: list[str],
                 event_batches: int = 500):
        import grpc
        from engine.server.pb.maple.v1 import admin_pb2 as apb, decision_pb2 as pb, inventory_pb2 as ipb
        self.pb, self.apb, self.ipb = pb, apb, ipb
        # a connection per kind of call (loadgen._channels): the kernel spreads connections over the workers
        self.channels = loadgen._channels(info["decisions"], 5)
        self.admin = grpc.insecure_channel(info["admin"])
        by_id, by_id_2, inline, batch, record = self.channels
        self.decide_on = {"decide_by_id": by_id.unary_unary(loadgen.DECIDE),
                          "decide_by_id_2": by_id_2.unary_unary(loadgen.DECIDE),
                          "decide_inline": inline.unary_unary(loadgen.DECIDE),
                          "bad": record.unary_unary(loadgen.DECIDE)}
        self.batch = batch.unary_unary(loadgen.BATCH)
        self.record = record.unary_unary("/maple.v1.DecisionService/RecordEvents")
        self.update = self.admin.unary_unary("/maple.v1.InventoryService/UpdateInventory")
        self.reload = self.admin.unary_unary("/maple.v1.AdminService/ReloadRules")
        self.get_ruleset = self.admin.unary_unary("/maple.v1.AdminService/GetRuleset")
        self.by_id = prof.decide_requests([{"customer_id": c} for c in ids], by_id=True)
        self.inline = prof.decide_requests(prof.synthetic(min(customers, 2000)), by_id=False)
        self.batches = prof.batch_requests(self.by_id, 50)
        self.events = prof.event_requests(event_batches, 20, 2 * customers, now, 5, stores)
        self.event_args = (event_batches, 2 * customers, stores)
        self.rounds = 0                 # rounds of new events sent after the first
        rows = (rules_dir / "data" / "inventory.csv").read_text().splitlines()[1:]
        self.stock = [r.split(",")[:3] for r in rows if r]
        self.rule_file = rules_dir / "homepage.rules"
        self.good_rules = self.rule_file.read_text()
        self.ids = ids
        self.stop = threading.Event()
        self.calls: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(3)

    def run(self) -> list[threading.Thread]:
        kinds = {"decide_by_id": self._by_id, "decide_by_id_2": self._by_id, "decide_inline": self._inline,
                 "decide_batch": self._batch, "record_events": self._events, "update_inventory": self._inventory,
                 "reload": self._reload, "bad": self._bad}
        threads = [threading.Thread(target=self._loop, args=(k, f), daemon=True, name=f"soak-{k}")
                   for k, f in kinds.items()]
        for t in threads:
            t.start()
        return threads

    def _loop(self, kind: str, fn) -> None:
        import grpc
        base = kind.removesuffix("_2")
        decide = self.decide_on.get(kind)
        n = 0
        while not self.stop.is_set():
            try:
                fn(decide, n)
                code = None
            except grpc.RpcError as err:
                code = err.code().name
            with self.lock:
                self.calls[base] = self.calls.get(base, 0) + 1
                if code is not None:
                    self.errors[(base, code)] = self.errors.get((base, code), 0) + 1
            n += 1

    def _by_id(self, decide, n: int) -> None:
        decide(self.by_id[self.rng.randrange(len(self.by_id))], timeout=10)

    def _inline(self, decide, n: int) -> None:
        decide(self.inline[n % len(self.inline)], timeout=10)

    def _batch(self, decide, n: int) -> None:
        self.batch(self.batches[n % len(self.batches)], timeout=10)

    def _events(self, decide, n: int) -> None:
        # each round's events are new (fresh ids, a month ending now): the store, the change feed and
        # the caches they invalidate keep working all run long, as under real traffic, not only dedupe
        k, i = divmod(n, len(self.events))
        if i == 0 and k > 0:
            batches, customers, stores = self.event_args
            self.events = prof.event_requests(batches, 20, customers, time.time(), 5 + k, stores)
            self.rounds = k
        self.record(self.events[i], timeout=10)

    def _inventory(self, decide, n: int) -> None:
        req = self.ipb.UpdateInventoryRequest()
        for store, sku, size in self.rng.sample(self.stock, min(20, len(self.stock))):
            change = req.changes.add(store_id=store, sku=sku, size=size)
            if self.rng.random() < 0.5:
                change.delta = self.rng.randint(-2, 2)
            else:
                change.quantity = self.rng.randint(0, 9)
        self.update(req.SerializeToString(), timeout=10)
        self.stop.wait(0.05)

    def _reload(self, decide, n: int) -> None:
        broken = n % 3 == 1
        self.rule_file.write_text(self.good_rules + (BROKEN_RULE if broken else f"\n# soak reload {n}\n"))
        try:
            self.reload(self.apb.ReloadRulesRequest().SerializeToString(), timeout=60)
        finally:
            self.stop.wait(3.0)

    def _bad(self, decide, n: int) -> None:
        pb = self.pb
        if n % 3 == 0:
            decide(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 300))), timeout=10)
        elif n % 3 == 1:
            decide(pb.DecideRequest(customer_id="x" * 5000).SerializeToString(), timeout=10)
        else:
            decide(pb.DecideRequest(customer_id=self.rng.choice(self.ids), explain=True).SerializeToString(),
                        timeout=10)
        self.stop.wait(0.01)

    def workers(self) -> set[int]:
        """The serving processes' pids, as the server reports them (GetRuleset)."""
        reply = self.apb.GetRulesetResponse.FromString(
            self.get_ruleset(self.apb.GetRulesetRequest().SerializeToString(), timeout=10))
        return {w.pid for w in reply.ruleset.workers}

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.admin.close()


#: the gauges of what the workers hold (summed over workers), sampled from /metrics
HELD = {"maple_profile_cache_entries": "cache_entries", "maple_profile_cache_bytes": "cache_mib",
        "maple_sqlite_memory_bytes": "sqlite_mib"}


def held(metrics_port: int) -> dict[str, float]:
    """The workers' profile cache (entries; MiB as --profile-cache-mib counts
    it) and SQLite's memory (MiB), from the server's /metrics; {} if it does
    not answer."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in HELD:
            v = float(value)
            out[HELD[name]] = round(v if name.endswith("_entries") else v / 2**20, 2)
    return out


def plot(samples: list[dict], labels: dict[str, str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    for pid, label in labels.items():
        pts = [(s["t"], s["rss_mib"][pid]) for s in samples if s["rss_mib"].get(pid) is not None]
        ax.plot([t / 60 for t, _ in pts], [m for _, m in pts], marker=".", label=label)
    for key, label in (("cache_mib", "of the workers: profile caches"), ("sqlite_mib", "of the workers: SQLite")):
        pts = [(s["t"], s["held"][key]) for s in samples if key in s.get("held", {})]
        if pts:
            ax.plot([t / 60 for t, _ in pts], [m for _, m in pts], linestyle="--", label=label)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("maple serve under mixed load: memory of each process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2, help="maple serve --workers")
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--sample-seconds", type=float, default=10.0)
    ap.add_argument("--event-batches", type=int, default=500,
                    help="RecordEvents calls (of 20 new events) a round; each round's events are new")
    ap.add_argument("--profile-cache-size", type=int, help="maple serve --profile-cache-size (default its own)")
    ap.add_argument("--profile-cache-mib", type=float, help="maple serve --profile-cache-mib (default its own)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.sample_seconds <= 0 or args.event_batches <= 0:
        ap.error("--minutes, --sample-seconds and --event-batches must be positive")

    from tqdm import tqdm

    tmp = Path(tempfile.mkdtemp(prefix="maple-soak-"))
    proc = callers = log = None
    threads: list[threading.Thread] = []
    try:
        shutil.copytree(ROOT / "rules", tmp / "rules")
        stores = loadgen.store_ids(str(tmp / "rules"))
        now = time.time()
        print(f"soak: a month of {10 * args.customers:,} events for {args.customers:,} customers ...", file=sys.stderr)
        db = tmp / "profiles.db"
        ids = prof.sqlite_store_of_month(db, 10 * args.customers, args.customers, now, stores)
        cmd = [sys.executable, "-m", "engine", "serve", "--rules", str(tmp / "rules"), "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
               "--workers", str(args.workers), "--store", f"sqlite://{db}",
               "--decision-log", str(tmp / "decisions.jsonl"), "--decision-log-rate", "0.01",
               "--state", str(tmp / "state"), "--log-level", "ERROR"]
        for flag in ("profile_cache_size", "profile_cache_mib"):
            if getattr(args, flag) is not None:
                cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        log = open(tmp / "serve.log", "w")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        info = loadgen._read_announcement(proc, "maple serve")
        loadgen._wait_serving(info["decisions"])
        callers = Callers(info, tmp / "rules", ids, args.customers, now, stores, args.event_batches)
        labels: dict[str, str] = {}

        def processes() -> list[int]:
            """The server's processes now, each labelled when first seen: the
            supervisor, its workers, the rule compiler (started by the first
            reload) and multiprocessing's resource tracker."""
            pids = [proc.pid] + loadgen.children(proc.pid)
            if any(str(p) not in labels for p in pids):
                workers = callers.workers()
                for p in pids:
                    if str(p) in labels:
                        continue
                    if p in workers:
                        labels[str(p)] = "server" if p == proc.pid else f"worker {p}"
                    elif p == proc.pid:
                        labels[str(p)] = "supervisor"
                    elif "resource_tracker" in cmdline(p):
                        labels[str(p)] = "resource tracker"
                    else:
                        labels[str(p)] = f"rule compiler {p}"
            return pids
        threads = callers.run()
        samples = []
        start = time.monotonic()
        duration = args.minutes * 60
        with tqdm(total=round(duration), desc="soak", unit="s", file=sys.stderr) as bar:
            while True:
                t = time.monotonic() - start
                pids = processes()
                samples.append({"t": round(t, 1), "rss_mib": {str(p): rss_mib(p) for p in pids},
                                "anon_mib": {str(p): status_mib(p, "RssAnon") for p in pids},
                                "store_mib": round(files_mib(db, db.with_name(db.name + "-wal")), 2),
                                "held": held(info["metrics"]),
                                "calls": dict(callers.calls)})
                bar.n = min(round(t), round(duration))
                bar.refresh()
                if t >= duration:
                    break
                callers.stop.wait(min(args.sample_seconds, duration - t))
        callers.stop.set()
        for th in threads:
            th.join(timeout=90)
        callers.rule_file.write_text(callers.good_rules)
        proc.terminate()
        try:
            exit_code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = proc.wait()
        elapsed = samples[-1]["t"]
        report = {"minutes": args.minutes, "workers": args.workers, "customers": args.customers,
                  "event_rounds": callers.rounds + 1,
                  "processes": {}, "calls": {}, "errors_expected": {}, "errors_unexpected": {},
                  "exit_code": exit_code, "samples": samples}
        print(f"\nmaple serve --workers {args.workers}, {elapsed / 60:.1f} minutes of mixed load\n")
        print(f"{'process':<22} {'start MiB':>10} {'end MiB':>9} {'max MiB':>9} {'2nd half MiB/min':>17} "
              f"{'of it anon':>11}")
        for pid, label in labels.items():
            pts = [(s["t"], s["rss_mib"][pid]) for s in samples if s["rss_mib"].get(pid) is not None]
            if not pts:
                continue
            anon = [(s["t"], s["anon_mib"][pid]) for s in samples if s["anon_mib"].get(pid) is not None]
            row = {"label": label, "start_mib": round(pts[0][1], 1), "end_mib": round(pts[-1][1], 1),
                   "max_mib": round(max(m for _, m in pts), 1), "growth_mib_per_min_2nd_half": growth(pts),
                   "anon_growth_mib_per_min_2nd_half": growth(anon)}
            report["processes"][pid] = row
            g, a = row["growth_mib_per_min_2nd_half"], row["anon_growth_mib_per_min_2nd_half"]
            print(f"{label:<22} {row['start_mib']:>10.1f} {row['end_mib']:>9.1f} {row['max_mib']:>9.1f} "
                  f"{g if g is not None else float('nan'):>17.3f} {a if a is not None else float('nan'):>11.3f}")
        store = [(s["t"], s["store_mib"]) for s in samples]
        report["store"] = {"start_mib": store[0][1], "end_mib": store[-1][1],
                           "growth_mib_per_min_2nd_half": growth(store)}
        print(f"{'the store (db + wal)':<22} {store[0][1]:>10.1f} {store[-1][1]:>9.1f} "
              f"{max(m for _, m in store):>9.1f} {report['store']['growth_mib_per_min_2nd_half'] or 0.0:>17.3f}")
        report["held"] = {}
        for key, what in (("cache_entries", "profile cache, entries"), ("cache_mib", "profile cache, MiB"),
                          ("sqlite_mib", "SQLite, MiB")):
            pts = [(s["t"], s["held"][key]) for s in samples if key in s["held"]]
            if pts:
                report["held"][key] = {"start": pts[0][1], "end": pts[-1][1], "max": max(v for _, v in pts),
                                       "growth_per_min_2nd_half": growth(pts)}
                g = growth(pts)
                print(f"{'workers: ' + what:<22} {pts[0][1]:>10,.1f} {pts[-1][1]:>9,.1f} "
                      f"{max(v for _, v in pts):>9,.1f} {g if g is not None else float('nan'):>17.3f}")
        print(f"\n{'calls':<18} {'count':>9} {'per s':>8}  errors")
        for kind, count in sorted(callers.calls.items()):
            errs = {code: c for (k, code), c in callers.errors.items() if k == kind}
            report["calls"][kind] = count
            for code, c in errs.items():
                bucket = "errors_expected" if (kind, code) in EXPECTED else "errors_unexpected"
                report[bucket][f"{kind}:{code}"] = c
            shown = ", ".join(f"{code} {c:,}{'' if (kind, code) in EXPECTED else ' (UNEXPECTED)'}"
                              for code, c in sorted(errs.items()))
            print(f"{kind:<18} {count:>9,} {count / max(elapsed, 1e-9):>8.1f}  {shown}")
        print(f"record_events: {callers.rounds + 1} rounds of {20 * args.event_batches:,} new events, each sent once")
        print(f"\nafter SIGTERM the server exited {exit_code}{'' if exit_code == 0 else ' (expected 0: drained)'}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        plot(samples, {p: lbl for p, lbl in labels.items() if p in report["processes"]}, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png').name}")
        ok = exit_code == 0 and not report["errors_unexpected"]
        if not ok:
            print("soak: FAILED (unexpected errors or an unclean exit); the server's log said:\n"
                  + (tmp / "serve.log").read_text()[-4000:], file=sys.stderr)
        return 0 if ok else 1
    finally:
        if callers is not None:
            callers.stop.set()
            callers.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
