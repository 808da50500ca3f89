"""Reload under load: Decide at a steady rate while the rules are reloaded
many times, valid and invalid edits alternating; then a 1,000-rule pack.

    python -m bench.reload_bench                      # ReloadRules, 1 worker
    python -m bench.reload_bench --via watch          # edits picked up by the watcher
    python -m bench.reload_bench --workers 2

What it runs: one open loop at --rate for --duration seconds (latency from
each request's intended send time, as bench/loadgen.py measures it), cut
into --window-second windows that alternate quiet and reloading.  In a
reloading window an edit starts every --reload-every seconds, cycling valid,
syntax error, valid, failing rule test, applied by ReloadRules or, with
``--via watch``, found by the server's watcher.  A response counts for the
window its intended send time falls in.  Alternating short windows, rather
than a quiet phase then a reloading one, lets the swings of a shared
machine fall on both sides alike.  CPU per server process role (decision
processes, compiler) is read from /proc at every window boundary.

Then ``big``: a generated 1,000-rule pack (bench/peer_adapter.translate over
../shared/peers/gen_workload.py, or a generator here when that is absent)
reloaded --big-reloads times with no load, then as many times under load,
timing ReloadRules (read, compile, rule tests, swap, keep).

Checks, over every response:

* failed requests: any status but OK;
* version windows: version v is *live* from the moment the reload that
  installed it began (its ReloadRules was sent, or its file written) until
  the reload that replaced it ended (its ReloadRules returned, or
  GetRuleset showed every worker on the next one).  A response sent at s
  and answered at r is correct only if its version has a live window that
  overlaps [s, r];
* mixing: every edit writes one file with two decisions
  (``bench_marker_a``, ``bench_marker_b``) set to the edit's generation;
  a response computed by one version has both equal to that version's
  generation.  Any other pair is a response that mixed versions.

Prints a table and writes JSON to --out.
"""
from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (DECIDE, HIGHEST, LOWEST, _channels, _hist, _read_announcement, _wait_serving,  # noqa: E402
                           children)

PEERS = ROOT.parent / "shared" / "peers" / "gen_workload.py"
MARKER_FILE = "bench_marker.rules"
GUARD_TEST = """\
# written by bench/reload_bench.py: the guard decision must say "ok"
cases:
  - name: the bench guard holds
    profile: {}
    expect:
      bench_guard: ok
"""
KINDS = ("valid", "syntax", "valid", "test")


def marker(gen: int, kind: str) -> str:
    if kind == "syntax":
        return f'decision bench_marker_a: string default "gen-{gen}\ndecision bench_marker_b string\n'
    guard = "broken" if kind == "test" else "ok"
    return (f'decision bench_marker_a: string default "gen-{gen}"\n'
            f'decision bench_marker_b: string default "gen-{gen}"\n'
            f'decision bench_guard: string default "{guard}"\n')


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the load (client processes)
def client_main(spec: dict, out) -> None:
    """Open loop at spec["rate"]; put one record per request on ``out``:
    (intended, sent, done, version, marker_a, marker_b, code)."""
    import grpc
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    payloads, n = spec["payloads"], len(spec["payloads"])
    calls = [ch.unary_unary(DECIDE) for ch in _channels(spec["target"], 4)]
    interval = 1.0 / spec["rate"]
    start = spec["start"] + spec["offset"] * interval
    end = spec["start"] + spec["duration"]
    records, pending = [], []

    def done(f, intended, sent):
        t = time.monotonic()
        try:
            resp = pb.DecideResponse.FromString(f.result())
        except grpc.RpcError as err:
            records.append((intended, sent, t, "", "", "", err.code().name))
            return
        except Exception as err:                                   # noqa: BLE001 - counted as failed
            records.append((intended, sent, t, "", "", "", type(err).__name__))
            return
        d = resp.decisions
        a = d["bench_marker_a"].value.string_value if "bench_marker_a" in d else ""
        b = d["bench_marker_b"].value.string_value if "bench_marker_b" in d else ""
        records.append((intended, sent, t, resp.ruleset_version, a, b, "OK"))

    for i in range(10 ** 9):
        intended = start + i * interval
        if intended >= end:
            break
        delay = intended - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        fut = calls[i % len(calls)].future(payloads[(i * 7 + spec["offset"]) % n], timeout=30)
        fut.add_done_callback(lambda f, intended=intended, sent=sent: done(f, intended, sent))
        pending.append(fut)
    for f in pending:
        try:
            f.result()
        except Exception:                                           # noqa: BLE001 - recorded in done()
            pass
    deadline = time.monotonic() + 10
    while len(records) < len(pending) and time.monotonic() < deadline:   # callbacks still running
        time.sleep(0.01)
    out.put(records)


def run_load(target: str, payloads: list[bytes], rate: float, duration: float, procs: int,
             during=None) -> list[tuple]:
    """One open-loop phase; ``during(start, end)`` runs in this process meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.monotonic() + 3.0                                  # spawn and connect before the start
    workers = [ctx.Process(target=client_main, args=({
        "target": target, "payloads": payloads[i::procs] or payloads, "rate": rate / procs, "start": start,
        "offset": i, "duration": duration}, out)) for i in range(procs)]
    for w in workers:
        w.start()
    if during is not None:
        during(start, start + duration)
    records = []
    for _ in workers:
        records += out.get(timeout=duration + 120)
    for w in workers:
        w.join()
    return records


# ---------------------------------------------------------------- CPU per role (Linux /proc)
def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds so far of the server's processes: "decisions" (the
    process(es) answering Decide), "supervisor", "compiler" (niced)."""
    tick = os.sysconf("SC_CLK_TCK")
    roles: dict[str, float] = {}
    todo = [(root, True)]
    while todo:
        pid, is_root = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick          # utime + stime
        nice = int(fields[16])
        if b"resource_tracker" in cmd:
            role = "other"
        elif nice > 0:
            role = "compiler"
        elif is_root:
            role = "decisions" if not _children_are_workers(pid) else "supervisor"
        else:
            role = "decisions"
        roles[role] = roles.get(role, 0.0) + seconds
        todo += [(c, False) for c in children(pid)]
    return roles


def _children_are_workers(pid: int) -> bool:
    for c in children(pid):
        try:
            fields = Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[16]) == 0 and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


# ---------------------------------------------------------------- the server and its rules
def start_server(rules: Path, state: Path, workers: int, watch: bool) -> tuple[subprocess.Popen, dict]:
    cmd = [sys.executable, "-m", "engine", "serve", "--rules", str(rules), "--listen", "127.0.0.1:0",
           "--admin-listen", "127.0.0.1:0", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
           "--workers", str(workers), "--state", str(state), "--watch", "on" if watch else "off",
           "--watch-debounce-ms", "50", "--drain-seconds", "0", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    info = _read_announcement(proc, "maple serve")
    _wait_serving(info["decisions"])
    return proc, info


@dataclass
class Reload:
    kind: str
    gen: int
    began: float
    ended: float
    ok: bool
    version: str = ""
    detail: str = ""


@dataclass
class Driver:
    """Edits the marker file and applies each edit; records what became live when."""
    rules: Path
    admin: str
    via: str
    every: float
    window: float
    server_pid: int
    margin: float = 0.4
    gen: int = 0
    reloads: list = field(default_factory=list)
    cpu: dict = field(default_factory=dict)          # steady|reload -> {seconds, role: cpu seconds}
    _n: int = 0
    _last: tuple | None = None

    def _stubs(self):
        import grpc
        from engine.server.pb.maple.v1 import admin_pb2 as apb, admin_pb2_grpc
        channel = grpc.insecure_channel(self.admin)
        return apb, admin_pb2_grpc.AdminServiceStub(channel)

    def run(self, start: float, end: float) -> None:
        """Quiet and reloading windows alternate (quiet first); in a
        reloading window an edit starts every ``every`` seconds, the last
        one at least ``margin`` before the window ends, so reloads do not
        spill into the next quiet window.  CPU per role is sampled at every
        window boundary."""
        apb, stub = self._stubs()
        k = 0
        while True:
            w0 = start + k * self.window
            if w0 >= end:
                break
            while time.monotonic() < w0:
                time.sleep(0.002)
            self._sample(k - 1)
            w1 = min(end, w0 + self.window)
            if k % 2 == 1:
                while time.monotonic() < w1 - self.margin:
                    t_next = time.monotonic() + self.every
                    self.gen += 1
                    kind = KINDS[self._n % len(KINDS)]
                    self._n += 1
                    self.reloads.append(self.apply(apb, stub, kind, self.gen))
                    delay = min(t_next, w1) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            k += 1
        while time.monotonic() < end:
            time.sleep(0.002)
        self._sample(k - 1)

    def _sample(self, finished_window: int) -> None:
        now, cpu = time.monotonic(), cpu_by_role(self.server_pid)
        if finished_window >= 0 and self._last is not None:
            t, before = self._last
            kind = "reload" if finished_window % 2 == 1 else "steady"
            acc = self.cpu.setdefault(kind, {"seconds": 0.0})
            acc["seconds"] += now - t
            for role, v in cpu.items():
                acc[role] = acc.get(role, 0.0) + v - before.get(role, 0.0)
        self._last = (now, cpu)

    def apply(self, apb, stub, kind: str, gen: int) -> Reload:
        import grpc
        if self.via == "reload":
            began = time.monotonic()
            write_atomically(self.rules / MARKER_FILE, marker(gen, kind))
            try:
                r = stub.ReloadRules(apb.ReloadRulesRequest(), timeout=60)
                return Reload(kind, gen, began, time.monotonic(), True, r.ruleset.version)
            except grpc.RpcError as err:
                return Reload(kind, gen, began, time.monotonic(), False, detail=err.code().name)
        # the watcher: wait until GetRuleset shows the edit's outcome
        before = stub.GetRuleset(apb.GetRulesetRequest(), timeout=30)
        began = time.monotonic()
        write_atomically(self.rules / MARKER_FILE, marker(gen, kind))
        deadline = began + 30
        seen_error = before.last_error.at.ToNanoseconds() if before.HasField("last_error") else 0
        while time.monotonic() < deadline:
            r = stub.GetRuleset(apb.GetRulesetRequest(), timeout=30)
            info = r.ruleset
            if info.version != before.ruleset.version and {w.version for w in info.workers} == {info.version}:
                return Reload(kind, gen, began, time.monotonic(), True, info.version)
            if r.HasField("last_error") and r.last_error.at.ToNanoseconds() > seen_error:
                return Reload(kind, gen, began, time.monotonic(), False, detail="refused")
            time.sleep(0.02)            # GetRuleset asks every worker: polling harder would load them
        return Reload(kind, gen, began, time.monotonic(), False, detail="no outcome within 30 s")


def live_windows(initial: str, reloads: list[Reload]) -> dict[str, list[tuple[float, float]]]:
    """version -> [(live from, live until)]; see the module docstring."""
    windows: dict[str, list] = {}
    current, since = initial, float("-inf")
    for r in sorted((r for r in reloads if r.ok), key=lambda r: r.began):
        if r.version == current:
            continue
        windows.setdefault(current, []).append((since, r.ended))
        current, since = r.version, r.began
    windows.setdefault(current, []).append((since, float("inf")))
    return windows


def check(records: list[tuple], windows: dict, gens: dict) -> dict:
    failed, outside, mixed = {}, 0, 0
    examples = []
    for intended, sent, done, version, a, b, code in records:
        if code != "OK":
            failed[code] = failed.get(code, 0) + 1
            continue
        if not any(lo <= done and sent <= hi for lo, hi in windows.get(version, ())):
            outside += 1
            if len(examples) < 5:
                examples.append({"version": version, "sent": sent, "done": done, "why": "not live then"})
        expected = gens.get(version)
        if a != b or expected is None or a != f"gen-{expected}":
            mixed += 1
            if len(examples) < 5:
                examples.append({"version": version, "a": a, "b": b, "expected": expected, "why": "mixed"})
    return {"responses": len(records), "failed": failed, "outside_live_window": outside, "mixed_versions": mixed,
            "examples": examples}


def latency(records: list[tuple]) -> dict:
    h = _hist()
    for intended, sent, done, *_rest in records:
        h.record_value(max(LOWEST, min(HIGHEST, int((done - intended) * 1e6))))
    return {f"p{p:g}_us": float(h.get_value_at_percentile(p)) for p in (50, 90, 99, 99.9)} | {
        "max_us": float(h.get_max_value()), "count": len(records)}


# ---------------------------------------------------------------- the 1,000-rule pack
def big_workload(n: int, work: Path) -> dict:
    if PEERS.exists():
        out = work / f"workload_{n}.json"
        subprocess.run([sys.executable, str(PEERS), "--n", str(n), "--profiles", "300", "--seed", "7",
                        "--out", str(out)], check=True, capture_output=True)
        return json.loads(out.read_text())
    return own_workload(n)


def own_workload(n: int, seed: int = 7) -> dict:
    """A workload in the peers' format when ../shared/peers is absent."""
    rng = random.Random(seed)
    countries, tiers = ["US", "GB", "DE", "FR", "NL"], ["none", "silver", "gold"]
    cats = ["shoes", "coats", "bags", "toys", "books", "home", "sale"]
    schema = {"customer_id": "str", "lifecycle": "enum", "country": "enum", "membership_tier": "enum",
              "loyalty_points": "int", "orders_count": "int", "segments": "str_set"}

    def preds():
        ps = [{"op": "eq", "field": "country", "value": rng.choice(countries)},
              {"op": "range", "field": "loyalty_points", "min": rng.randint(0, 500), "max": None},
              {"op": "in", "field": "membership_tier", "values": rng.sample(tiers, 2)}]
        return rng.sample(ps, rng.randint(2, 3))
    profiles = [{"customer_id": f"c{i}", "lifecycle": rng.choice(["new", "active", "vip"]),
                 "country": rng.choice(countries), "membership_tier": rng.choice(tiers),
                 "loyalty_points": rng.randint(0, 1000), "orders_count": rng.randint(0, 20), "segments": []}
                for i in range(300)]
    return {"schema": schema, "homepage_default": "home", "profiles": profiles,
            "homepage_rules": [{"id": f"r{i:04d}", "priority": 10 * (i + 1), "predicates": preds(),
                                "output": rng.choice(cats)} for i in range(n)],
            "offers": [{"id": f"offer-{i:04d}", "weight": rng.randint(1, 100), "boost": rng.randint(0, 50),
                        "predicates": preds()} for i in range(n // 2)]}


def big_requests(wl: dict) -> list[bytes]:
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    out = []
    for p in wl["profiles"]:
        req = pb.DecideRequest(customer_id=p.get("customer_id") or "")
        req.profile.update({k: v for k, v in p.items() if v is not None})
        out.append(req.SerializeToString())
    return out


def big_phase(args, work: Path) -> dict:
    from bench.peer_adapter import translate
    wl = big_workload(args.big_rules, work)
    pack = work / "big"
    pack.mkdir()
    for name, text in translate(wl).items():
        (pack / name).write_text(text)
    proc, info = start_server(pack, work / "big-state", args.workers, watch=False)
    try:
        import grpc
        from engine.server.pb.maple.v1 import admin_pb2 as apb, admin_pb2_grpc
        stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(info["admin"]))
        counts = dict(stub.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset.counts)
        first = sorted(pack.glob("homepage_*.rules"))[0]
        idle, loaded = [], []
        edits = iter(range(10 ** 6))

        def reload_once(into: list) -> None:
            i = next(edits)            # one rule's output changes: a new version of the whole pack
            first.write_text(re.sub(r'then homepage = "[^"]*"', f'then homepage = "edit-{i}"', first.read_text(),
                                    count=1))
            c0, t0 = cpu_by_role(proc.pid), time.monotonic()
            r = stub.ReloadRules(apb.ReloadRulesRequest(), timeout=120)
            t1, c1 = time.monotonic(), cpu_by_role(proc.pid)
            into.append({"rpc_s": t1 - t0, "compile_s": r.ruleset.compile_seconds,
                         "compiler_cpu_s": c1.get("compiler", 0) - c0.get("compiler", 0),
                         "serving_cpu_s": sum(c1.get(k, 0) - c0.get(k, 0) for k in ("decisions", "supervisor")),
                         "changed": r.changed, "version": r.ruleset.version})

        for _ in range(args.big_reloads):
            reload_once(idle)

        def during(start, end):
            while time.monotonic() < start + 1.0:
                time.sleep(0.01)
            for _ in range(args.big_reloads):
                reload_once(loaded)
                time.sleep(0.5)

        duration = 1.5 + args.big_reloads * 4.0
        records = run_load(info["decisions"], big_requests(wl), args.rate, duration, args.procs, during)
    finally:
        proc.terminate()
        proc.wait(60)
    failed = {}
    for r in records:
        if r[6] != "OK":
            failed[r[6]] = failed.get(r[6], 0) + 1

    def stats(ts, key):
        xs = [t[key] for t in ts]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None
    return {"counts": counts, "source": "gen_workload.py" if PEERS.exists() else "bench generator",
            "reloads_idle": idle, "reloads_under_load": loaded,
            "all_changed": all(t["changed"] for t in idle + loaded),
            "idle": {"compile_swap_s": stats(idle, "rpc_s"), "compile_s": stats(idle, "compile_s"),
                     "compiler_cpu_s": stats(idle, "compiler_cpu_s"), "serving_cpu_s": stats(idle, "serving_cpu_s")},
            "under_load": {"compile_swap_s": stats(loaded, "rpc_s"), "compile_s": stats(loaded, "compile_s")},
            "responses": len(records), "failed": failed, "latency": latency(records)}


# ---------------------------------------------------------------- main
def reference_pack(work: Path) -> Path:
    rules = work / "rules"
    shutil.copytree(ROOT / "rules", rules)
    write_atomically(rules / MARKER_FILE, marker(0, "valid"))
    (rules / "tests" / "bench_guard.yaml").write_text(GUARD_TEST)
    return rules


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.reload_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--via", choices=["reload", "watch"], default="reload",
                   help="apply edits with ReloadRules, or let the server's watcher find them")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--rate", type=float, default=300.0, help="Decide requests per second (open loop)")
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--duration", type=float, default=48.0, help="seconds of load in all")
    p.add_argument("--window", type=float, default=2.0, help="seconds per window; quiet and reloading alternate")
    p.add_argument("--reload-every", type=float, default=0.25, help="seconds between edits in a reloading window")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--big-rules", type=int, default=1000, help="rules in the generated pack (0: skip)")
    p.add_argument("--big-reloads", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench import profiles as prof
    work = Path(tempfile.mkdtemp(prefix="maple-reload-bench-"))
    proc = None
    try:
        rules = reference_pack(work)
        proc, info = start_server(rules, work / "state", args.workers, watch=args.via == "watch")
        payloads = prof.decide_requests(prof.synthetic(args.customers), by_id=False)
        import grpc
        from engine.server.pb.maple.v1 import admin_pb2 as apb, admin_pb2_grpc
        stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(info["admin"]))
        v0 = stub.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset.version
        print(f"maple serve --workers {args.workers} on {info['decisions']}; {args.rate:.0f} Decide/s from "
              f"{args.procs} processes; an edit every {args.reload_every}s via {args.via}; {os.cpu_count()} cores",
              file=sys.stderr)
        run_load(info["decisions"], payloads, args.rate, 2.0, args.procs)            # warm up
        driver = Driver(rules, info["admin"], args.via, args.reload_every, args.window, proc.pid)
        starts = []
        print(f"{args.duration:.0f} s of load, {args.window:.0f} s windows alternating quiet and reloading",
              file=sys.stderr)
        records = run_load(info["decisions"], payloads, args.rate, args.duration, args.procs,
                           lambda start, end: (starts.append(start), driver.run(start, end)))
        steady, reloading, by_window = [], [], {}
        for rec in records:
            k = int((rec[0] - starts[0]) // args.window)
            (reloading if k % 2 else steady).append(rec)
            by_window.setdefault(k, []).append(rec)
        rounds = [{"window": k, "kind": "reload" if k % 2 else "steady", "p99_us": latency(v)["p99_us"]}
                  for k, v in sorted(by_window.items())]
        windows = live_windows(v0, driver.reloads)
        gens = {v0: 0, **{r.version: r.gen for r in driver.reloads if r.ok}}
        proc.terminate()
        proc.wait(60)
        proc = None
        big = big_phase(args, work) if args.big_rules else None
        report = build_report(args, steady, reloading, driver.reloads, windows, gens, big)
        report["windows"] = rounds
        report["server_cpu_cores"] = {kind: {role: round(v / acc["seconds"], 3) for role, v in acc.items()
                                             if role not in ("seconds", "other")}
                                      for kind, acc in driver.cpu.items()}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"reload-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(report, indent=2))
        print(render(report))
        print(f"\nwrote {path}")
        ok = report["verdict"]
        return 0 if ok["zero_failed"] and ok["zero_mixed"] else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def split_by_reload(records: list[tuple], reloads: list[Reload]) -> tuple[list, list]:
    """Responses sent while a reload was in progress (from its start to
    its end), and the others."""
    spans = sorted((x.began, x.ended) for x in reloads)
    starts = [a for a, _ in spans]
    during, between = [], []
    for rec in records:
        i = bisect.bisect_right(starts, rec[0]) - 1
        (during if i >= 0 and rec[0] <= spans[i][1] else between).append(rec)
    return during, between


def build_report(args, steady, reloading, reloads, windows, gens, big) -> dict:
    s, r = latency(steady), latency(reloading)
    during, between = split_by_reload(reloading, reloads)
    checks = {"steady": check(steady, windows, gens), "reload": check(reloading, windows, gens)}
    by_kind = {}
    for x in reloads:
        k = by_kind.setdefault(x.kind, {"edits": 0, "went_live": 0, "refused": 0})
        k["edits"] += 1
        k["went_live" if x.ok else "refused"] += 1
    wrong = [x.kind for x in reloads if x.ok != (x.kind == "valid")]
    failed = sum(sum(c["failed"].values()) for c in checks.values()) + (sum(big["failed"].values()) if big else 0)
    mixed = sum(c["mixed_versions"] + c["outside_live_window"] for c in checks.values())
    ratio = r["p99_us"] / s["p99_us"] if s["p99_us"] else float("nan")
    return {
        "config": {k: v for k, v in vars(args).items() if k != "out"}, "cores": os.cpu_count(),
        "latency": {"steady": s, "reload": r, "p99_ratio": round(ratio, 3),
                    "reload_windows_while_reloading": latency(during) if during else None,
                    "reload_windows_between_reloads": latency(between) if between else None},
        "checks": checks, "edits": by_kind, "edits_with_unexpected_outcome": wrong,
        "versions_live": len(windows),
        "reload_seconds": summarize([x.ended - x.began for x in reloads if x.ok]),
        "refusal_seconds": summarize([x.ended - x.began for x in reloads if not x.ok]),
        "big_pack": big,
        "verdict": {"zero_failed": failed == 0, "zero_mixed": mixed == 0, "p99_ratio_le_1_2": ratio <= 1.2,
                    **({"big_compile_swap_lt_1s_idle": big["idle"]["compile_swap_s"]["median"] < 1.0} if big else {})},
    }


def summarize(xs: list[float]) -> dict | None:
    if not xs:
        return None
    return {"n": len(xs), "median_ms": round(statistics.median(xs) * 1000, 1), "max_ms": round(max(xs) * 1000, 1)}


def render(rep: dict) -> str:
    s, r = rep["latency"]["steady"], rep["latency"]["reload"]
    c = rep["checks"]
    lines = [f"{'phase':<8}{'responses':>10}{'failed':>8}{'mixed':>7}{'outside':>8}{'p50 us':>9}{'p90 us':>9}"
             f"{'p99 us':>9}{'p99.9 us':>10}{'max us':>9}"]
    lines.append("-" * len(lines[0]))
    for name, lat in (("steady", s), ("reload", r)):
        ch = c[name]
        lines.append(f"{name:<8}{ch['responses']:>10}{sum(ch['failed'].values()):>8}{ch['mixed_versions']:>7}"
                     f"{ch['outside_live_window']:>8}{lat['p50_us']:>9.0f}{lat['p90_us']:>9.0f}{lat['p99_us']:>9.0f}"
                     f"{lat['p99.9_us']:>10.0f}{lat['max_us']:>9.0f}")
    lines.append("")
    lines.append(f"p99 during reloads / p99 steady: {rep['latency']['p99_ratio']:.2f}x (target <= 1.2x)")
    d, b = rep["latency"]["reload_windows_while_reloading"], rep["latency"]["reload_windows_between_reloads"]
    if d and b:
        lines.append(f"in reloading windows: sent while a reload ran {d['count']} (p50 {d['p50_us'] / 1000:.1f} ms, "
                     f"p99 {d['p99_us'] / 1000:.1f} ms), sent between reloads {b['count']} (p50 "
                     f"{b['p50_us'] / 1000:.1f} ms, p99 {b['p99_us'] / 1000:.1f} ms)")
    per = {kind: [w["p99_us"] for w in rep.get("windows", []) if w["kind"] == kind] for kind in ("steady", "reload")}
    if per["steady"] and per["reload"]:
        lines.append(f"median of per-window p99 ({len(per['steady'])} + {len(per['reload'])} windows of "
                     f"{rep['config']['window']:.0f} s): steady {statistics.median(per['steady']) / 1000:.1f} ms, "
                     f"reload {statistics.median(per['reload']) / 1000:.1f} ms")
    for kind, roles in rep.get("server_cpu_cores", {}).items():
        lines.append(f"server CPU in {kind} windows (cores busy): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in sorted(roles.items())))
    edits = ", ".join(f"{k}: {v['edits']} edits, {v['went_live']} live, {v['refused']} refused"
                      for k, v in rep["edits"].items())
    lines.append(f"edits: {edits}; versions live: {rep['versions_live']}")
    if rep["reload_seconds"]:
        lines.append(f"edit -> live: median {rep['reload_seconds']['median_ms']} ms, max "
                     f"{rep['reload_seconds']['max_ms']} ms; refusals: median "
                     f"{(rep['refusal_seconds'] or {}).get('median_ms')} ms")
    if rep["edits_with_unexpected_outcome"]:
        lines.append(f"UNEXPECTED: {rep['edits_with_unexpected_outcome']}")
    b = rep["big_pack"]
    if b:
        lines.append("")
        lines.append(f"big pack ({b['source']}): {b['counts'].get('rules')} rules, {b['counts'].get('offers')} offers;"
                     f" ReloadRules = read + compile + rule tests + swap + keep (target < 1 s)")
        for label in ("idle", "under_load"):
            cs, cc = b[label]["compile_swap_s"], b[label]["compile_s"]
            lines.append(f"  {label:<11} median {cs['median'] * 1000:.0f} ms (min {cs['min'] * 1000:.0f}, max "
                         f"{cs['max'] * 1000:.0f}); of which compile: median {cc['median'] * 1000:.0f} ms")
        cpu, srv = b["idle"]["compiler_cpu_s"], b["idle"]["serving_cpu_s"]
        lines.append(f"  idle, CPU per reload: compiler median {cpu['median'] * 1000:.0f} ms, serving processes "
                     f"median {srv['median'] * 1000:.0f} ms")
        lines.append(f"  load meanwhile: {b['responses']} responses, failed {sum(b['failed'].values())}, "
                     f"p99 {b['latency']['p99_us']:.0f} us")
    lines.append("")
    lines.append("verdict: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in rep["verdict"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
