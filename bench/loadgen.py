"""Load generator for Maple's DecisionService, with an echo floor in the same run.

    python -m bench.loadgen                          # start maple serve + echo here, run every phase
    python -m bench.loadgen --target HOST:PORT --echo HOST:PORT   # measure servers running elsewhere

Phases, each run against the echo floor and then against Decide with the same
request bytes:

* ``c1``     closed loop, one caller: the latency of a lone request
* ``max``    closed loop, --concurrency callers over --procs processes: top throughput
* ``open``   open loop at --rate-fraction x the echo's top throughput; latency is
             measured from each request's *intended* send time, so a stall is
             counted in full (no coordinated omission).  --concurrency callers
             over --procs processes share the schedule, each blocking on its
             sends (as wrk2's connections do): a send whose caller still waits
             for its last answer goes out late and its lateness is counted.
* ``batch``  DecideBatch of --batch-size items, closed loop: decisions per second,
             against ``maple serve`` with --batch-workers processes (default: one
             per core, as ``maple serve`` runs by default); when that differs from
             --server-workers, a second ``maple serve`` is started for this phase

* ``events`` RecordEvents of --batch-size events, closed loop, --events-callers
             callers: events stored durably per second, against a ``maple serve``
             of its own (--events-workers processes, default 1) on a fresh SQLite
             file.  The events are bench/profiles_bench.py's realistic month, each
             sent once; every response is read, and events not stored as new
             (duplicates, rejections) are reported as errors.  Not run against
             --target unless --phases names it.

c1, max and open compare Decide with the echo, so both servers run --server-workers
processes (default 1), and the two take --turns turns each (default 4, in ABBA
order, the phase's --duration split between them): this shared VM's speed drifts
by half within minutes, and alternating makes the drift fall on both alike.  The
batch phase measures the service as it is deployed.
The table and the JSON say how many server workers each phase ran against.
Each ratio the targets judge comes with an interval: the run's turn pairs
drawn again with replacement (a bootstrap, ``turn_intervals``) and the
central 90 % of the ratios the draws give.  Where it reaches across a goal
the verdict says "turns disagree": this run cannot tell the ratio from its
own noise.  ``bench.echo_server`` answers Decide as well, so ``--target``
at one measures the floor against itself (an A/A run), or against a Decide
that does only compact work (its ``--spin-us``).

Latencies are recorded in HdrHistograms (1 us .. 60 s, 3 digits) per process and
merged.  Results: a table on stdout, JSON and a latency-distribution PNG in --out.
When the harness starts the server itself it also reads the server's own
``maple_decide_seconds`` histogram (request parsed to response ready), from
the end of each turn's warm-up (once every client process's is over) to the
turn's end: the calls the client-side percentiles count, give or take the
few that one process made while another was still warming up.  Over the
same windows it reads how busy the whole machine was (/proc/stat) and, for
each server it started, its CPU a request (every thread and child): on a
machine the client shares, they say whether a ratio measured latency or a
queue.  A server it starts is measured only once it is quiet (``settle``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECIDE = "/maple.v1.DecisionService/Decide"
BATCH = "/maple.v1.DecisionService/DecideBatch"
EVENTS = "/maple.v1.DecisionService/RecordEvents"
PHASES = ("c1", "max", "open", "batch", "events")
WARM = "warm"           # a client process's message: its warm-up is over
ECHO = "/maple.bench.Echo/Echo"
LOWEST, HIGHEST, DIGITS = 1, 60_000_000, 3          # microseconds
TURN_WARMUP = 0.25                                   # s before each turn after a target's first
OVERLOAD = 0.8                  # an open-loop rate this close to Decide's own maximum queues: said so
QUEUED = 3.0                    # ... as does Decide's open-loop p50 this many times its one caller's


# ---------------------------------------------------------------- one client process
def _hist():
    from hdrh.histogram import HdrHistogram
    return HdrHistogram(LOWEST, HIGHEST, DIGITS)


def _channels(target: str, n: int):
    import grpc
    # a local subchannel pool per channel: n separate connections, spread over workers
    return [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1),
                                                   ("grpc.max_receive_message_length", 64 << 20)])
            for _ in range(n)]


def client_main(spec: dict, progress, out) -> None:
    """Run one process's share of a phase; put (histogram, count, errors) on ``out``.

    With ``spec["events"]`` (the events phase) the process first makes its own
    RecordEvents batches (bench.profiles.event_requests, seeded by its index,
    so every process's events are new), each thread sends its share once, in
    order (never twice: a repeat would be a cheap duplicate), and every
    response is read: events the server did not store as new are counted
    under ``errors`` (DUPLICATE_EVENTS, REJECTED_EVENTS), and so is a thread
    that ran out of batches before the end (EXHAUSTED)."""
    import grpc
    events = spec.get("events")
    if events:
        from bench.profiles import event_requests
        from engine.server.pb.maple.v1 import events_pb2 as epb
        spec["payloads"] = event_requests(events["batches"], events["size"], events["customers"], events["now"],
                                          1000 + spec["index"], events["stores"])
    payloads, n = spec["payloads"], len(spec["payloads"])
    hist, lock = _hist(), threading.Lock()
    errors: dict[str, int] = {}
    counted = [0]
    start = time.perf_counter() + 0.05
    measure_from = start + spec["warmup"]
    end = measure_from + spec["duration"]
    # tell run_phase when this process's warm-up is over (its on_warm: the server-side window starts there)
    warm = threading.Timer(max(0.0, measure_from - time.perf_counter()), out.put, args=((WARM, spec["index"]),))
    warm.daemon = True
    warm.start()

    def record(t0: float, t1: float) -> None:
        if t0 >= measure_from:
            with lock:
                hist.record_value(max(LOWEST, min(HIGHEST, int((t1 - t0) * 1e6))))
                counted[0] += 1

    def fail(err) -> None:
        code = err.code().name if isinstance(err, grpc.RpcError) else type(err).__name__
        with lock:
            errors[code] = errors.get(code, 0) + 1

    def tick(k: int) -> None:
        if k % 32 == 0:
            with progress.get_lock():
                progress.value += 32

    def check(reply: bytes) -> None:
        r = epb.RecordEventsResponse.FromString(reply)
        for name, count in (("DUPLICATE_EVENTS", r.duplicates), ("REJECTED_EVENTS", r.rejected)):
            if count:
                with lock:
                    errors[name] = errors.get(name, 0) + count

    def once(channel, k: int) -> None:
        call = channel.unary_unary(spec["method"])
        mine = payloads[k::spec["threads"]]
        for i, payload in enumerate(mine):
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                check(call(payload, timeout=30))
            except Exception as err:
                fail(err)
            record(t0, time.perf_counter())
            tick(i + 1)
        with lock:
            errors["EXHAUSTED"] = errors.get("EXHAUSTED", 0) + 1

    def closed(channel, offset: int) -> None:
        call = channel.unary_unary(spec["method"])
        for i in itertools.count(offset):
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                call(payloads[i % n], timeout=30)
            except Exception as err:
                fail(err)
            record(t0, time.perf_counter())
            tick(i - offset + 1)

    def scheduled(channel, k: int, every: int) -> None:
        """Caller ``k`` of ``every``: the open loop's sends k, k + every, ...
        each at its intended time (start + i / rate), the latency counted
        from then; a send whose caller is still waiting for its last answer
        goes out late, and its lateness is in its latency."""
        call = channel.unary_unary(spec["method"])
        interval = 1.0 / spec["rate"]
        for i in itertools.count(k, every):
            intended = start + i * interval
            if intended >= end:
                return
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                call(payloads[i % n], timeout=30)
            except Exception as err:
                fail(err)
            record(intended, time.perf_counter())
            tick(i // every + 1)

    seed = spec["index"] * 7919
    channels = _channels(spec["target"], spec["threads"])
    if spec["mode"] == "open":
        threads = [threading.Thread(target=scheduled, args=(ch, k, len(channels))) for k, ch in enumerate(channels)]
    else:
        threads = [threading.Thread(target=once, args=(ch, k)) if events else
                   threading.Thread(target=closed, args=(ch, seed + k * 104729))
                   for k, ch in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((hist.encode(), counted[0], errors))


# ---------------------------------------------------------------- a phase
@dataclass
class Result:
    phase: str
    target: str                   # echo | decide | batch
    requests: int
    seconds: float
    errors: dict
    hist: object = field(repr=False)
    items_per_request: int = 1
    server_workers: int | None = None     # None: a server running elsewhere (--target, --echo)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        return float(self.hist.get_value_at_percentile(p)) if self.requests else float("nan")

    def summary(self) -> dict:
        items = "events_per_s" if self.target == "events" else "decisions_per_s"
        return {"phase": self.phase, "target": self.target, "server_workers": self.server_workers,
                "requests": self.requests,
                "throughput_rps": round(self.throughput, 1),
                items: round(self.throughput * self.items_per_request, 1),
                **{f"p{p:g}_us": self.pct(p) for p in (50, 90, 99, 99.9)},
                "max_us": float(self.hist.get_max_value()) if self.requests else None, "errors": self.errors}


def run_phase(phase: str, name: str, target: str, method: str, payloads: list[bytes], *, mode: str,
              procs: int, threads: int, rate: float, duration: float, warmup: float,
              items_per_request: int = 1, server_workers: int | None = None, events: dict | None = None,
              on_warm=None) -> Result:
    """One target's share of a phase from ``procs`` client processes;
    ``on_warm()`` is called once every process's warm-up is over (the
    measured calls begin), from this process."""
    from tqdm import tqdm
    ctx = multiprocessing.get_context("spawn")
    progress, out = ctx.Value("q", 0), ctx.Queue()
    share = [payloads[i::procs] or payloads for i in range(procs)]
    workers = [ctx.Process(target=client_main, args=({
        "index": i, "target": target, "method": method, "payloads": share[i], "mode": mode, "threads": threads,
        "rate": rate / procs, "duration": duration, "warmup": warmup, "events": events}, progress, out))
        for i in range(procs)]
    for w in workers:
        w.start()
    label = f"{phase:>5} {name:<6}" + (f" {rate:,.0f}/s" if mode == "open" else "") + f" c={procs * threads}"
    with tqdm(total=None, desc=label, unit="req", leave=False, file=sys.stderr) as bar:
        results, warm = [], 0
        while len(results) < procs:
            try:
                got = out.get(timeout=0.25)
            except Exception:
                got = None
            if got is not None and got[0] == WARM:
                warm += 1
                if warm == procs and on_warm is not None:
                    on_warm()
            elif got is not None:
                results.append(got)
            bar.n = progress.value
            bar.refresh()
    for w in workers:
        w.join()
    hist, count, errors = _hist(), 0, {}
    for encoded, n, errs in results:
        hist.decode_and_add(encoded)
        count += n
        for k, v in errs.items():
            errors[k] = errors.get(k, 0) + v
    return Result(phase, name, count, duration, errors, hist, items_per_request, server_workers)


def queued(results: list[Result], open_load: float) -> bool:
    """Whether Decide queued in the open phase: its p50 there at least
    QUEUED x its p50 at one caller, or (without a c1 phase) a rate at
    least OVERLOAD of its own maximum."""
    p50 = {r.phase: r.pct(50) for r in results if r.target == "decide"}
    if "c1" in p50 and "open" in p50:
        return p50["open"] >= QUEUED * p50["c1"]
    return open_load >= OVERLOAD


def merged(parts: list[Result]) -> Result:
    """One target's turns of a phase as one result: requests, seconds and
    errors summed, the latency histograms added."""
    first, hist, errors = parts[0], _hist(), {}
    for r in parts:
        hist.add(r.hist)
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    return Result(first.phase, first.target, sum(r.requests for r in parts), sum(r.seconds for r in parts),
                  errors, hist, first.items_per_request, first.server_workers)


# ---------------------------------------------------------------- servers
def _read_announcement(proc: subprocess.Popen, what: str) -> dict:
    for line in proc.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"loadgen: {what} did not start (exit {proc.wait()})")


def start_maple(rules: str, workers: int, store: str | None, env: dict | None = None,
                code: Path | None = None, cpu_affinity: str = "off") -> tuple[subprocess.Popen, dict]:
    """``maple serve`` on a free loopback port; ``code``: a directory holding
    another ``engine`` package to run instead of this checkout's;
    ``cpu_affinity``: its ``--cpu-affinity``."""
    cmd = [sys.executable, "-m", "engine", "serve", "--rules", rules, "--listen", "127.0.0.1:0",
           "--admin-listen", "off", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
           "--workers", str(workers), "--drain-seconds", "0", "--log-level", "WARNING",
           "--cpu-affinity", cpu_affinity]
    if store:
        cmd += ["--store", store]
    env = {**os.environ, **(env or {})}
    if code is not None:                       # first on the path, for the workers and compiler too
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=code or ROOT, env=env)
    info = _read_announcement(proc, "maple serve")
    _wait_serving(info["decisions"])
    if not settle(proc.pid):
        print(f"loadgen: maple serve (pid {proc.pid}) still busy {SETTLE_TIMEOUT:g} s after it was SERVING; "
              "measuring anyway", file=sys.stderr)
    return proc, info


def start_echo(workers: int, cpu_affinity: str = "off") -> tuple[subprocess.Popen, str]:
    """The echo floor on a free loopback port, its workers kept on CPUs as
    ``maple serve --cpu-affinity`` keeps its own (``cpu_affinity``)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.echo_server", "--listen", "127.0.0.1:0",
                             "--workers", str(workers), "--cpu-affinity", cpu_affinity],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    address = _read_announcement(proc, "the echo server")["decisions"]
    import grpc
    with grpc.insecure_channel(address) as ch:
        grpc.channel_ready_future(ch).result(timeout=60)
    return proc, address


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (every thread's), from /proc; [] if it is gone."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return sorted(set(out))


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) that ``pid`` and its
    descendants now running have used; 0 for what is gone or off Linux."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += children(p)
    return total


SETTLE_WINDOW = 0.5             # seconds a started server must stay quiet before it is measured
SETTLE_BUSY = 0.05              # ... using less than this share of one core
SETTLE_TIMEOUT = 15.0


def settle(pid: int, window: float = SETTLE_WINDOW, busy: float = SETTLE_BUSY,
           timeout: float = SETTLE_TIMEOUT) -> bool:
    """Wait until the server ``pid`` and its children use less than ``busy``
    of a core over ``window`` seconds, at most ``timeout``; whether it did.
    ``maple serve`` is SERVING before it is quiet: it then starts its rules
    compiler's process, whose imports (~0.3 s of CPU, more when starved at
    SCHED_IDLE by a load on every core) would otherwise fall on the first
    turn measured on a two-core machine."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = tree_cpu_seconds(pid)
        if now - before < busy * window:
            return True
        before = now
    return False


def _wait_serving(address: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(address) as ch:
        for update in health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=120):
            if update.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise SystemExit(f"loadgen: {address} never became SERVING")


def store_ids(rules: str) -> list[str]:
    """The store ids of the rules' data (RULES/data), as the server loads it
    and checks events' store ids against; [] when it has none."""
    from engine.inventory.loader import load_dir
    data = Path(rules) / "data"
    if not (data / "stores.csv").exists():
        return []
    return list(load_dir(data).data.stores)


def default_pack() -> str:
    """rules/ when it decides something; else rules/schema.rules + bench/pack."""
    if any("decision" in p.read_text() for p in (ROOT / "rules").rglob("*.rules") if p.name != "schema.rules"):
        return str(ROOT / "rules")
    d = Path(tempfile.mkdtemp(prefix="maple-bench-pack-"))
    (d / "schema.rules").write_text((ROOT / "rules" / "schema.rules").read_text())
    for p in (ROOT / "bench" / "pack").glob("*.rules"):
        (d / p.name).write_text(p.read_text())
    return str(d)


# ---------------------------------------------------------------- server-side histogram
def scrape(metrics_port: int | None) -> str | None:
    """The server's /metrics text, or None without a metrics port."""
    if metrics_port is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        return r.read().decode()


#: answered Decides' server time from their bytes, the read included (maple_decide_seconds starts after it)
READ_INCLUDED = ("maple_request_seconds", {"rpc": "Decide", "code": "OK"})
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_decide_buckets(metrics_port: int | None, text: str | None = None,
                          metric: tuple[str, dict] = ("maple_decide_seconds", {})) -> dict[float, float] | None:
    """maple_decide_seconds' buckets (or ``metric``'s: its name and the
    labels its series must have, as :data:`READ_INCLUDED`), from ``text``
    (a scrape) or scraped now."""
    text = text if text is not None else scrape(metrics_port)
    if text is None:
        return None
    name, want = metric
    buckets = {}
    for m in re.finditer(rf'^{name}_bucket\{{([^}}]*)\}} (\S+)$', text, re.M):
        labels = dict(_LABEL.findall(m.group(1)))
        if "le" in labels and all(labels.get(k) == v for k, v in want.items()):
            buckets[float(labels["le"])] = float(m.group(2))
    return buckets


def cache_reads(text: str | None) -> dict[str, float] | None:
    """maple_profile_cache_reads_total by result in a scrape, or None (no
    metrics, or a server whose profiles are not behind a cache: no store, a
    jsonl: file)."""
    if text is None:
        return None
    reads = {m.group(1): float(m.group(2))
             for m in re.finditer(r'^maple_profile_cache_reads_total\{result="(\w+)"\} (\S+)$', text, re.M)}
    return reads or None


def cache_hit_share(reads: dict) -> dict:
    """What a phase's Decides read of the profile cache: the counts, and the
    share the store was spared, (hit - prefetched) / all reads
    (engine/profiles/cache.py)."""
    total = sum(reads.get(k, 0.0) for k in ("hit", "miss", "stale"))
    spared = reads.get("hit", 0.0) - reads.get("prefetched", 0.0)
    return {**{k: int(v) for k, v in reads.items()}, "hit_share": round(spared / total, 4) if total else None}


def server_counts(metrics_port: int | None) -> tuple:
    """One scrape's (maple_decide_seconds buckets, the profile cache's
    reads, maple_request_seconds' Decide buckets: READ_INCLUDED), each None
    when absent."""
    text = scrape(metrics_port)
    return (scrape_decide_buckets(metrics_port, text), cache_reads(text),
            scrape_decide_buckets(metrics_port, text, READ_INCLUDED))


def add_buckets(total: dict, before: dict, after: dict) -> None:
    """Add to ``total`` what the histogram's buckets counted between two scrapes."""
    for le, count in after.items():
        total[le] = total.get(le, 0.0) + count - before.get(le, 0.0)


def bucket_percentiles(before: dict, after: dict) -> dict:
    """Upper bounds of the server-side p50/p99 from the histogram's buckets."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0
    out = {"count": total}
    for p in (50, 99, 99.9):
        bound = next((le for le, c in delta if c >= total * p / 100), float("inf")) if total else None
        out[f"p{p:g}_le_us"] = None if bound is None else bound * 1e6
    return out


# ---------------------------------------------------------------- report
def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def table(results: list[Result]) -> str:
    head = f"{'phase':<7}{'target':<8}{'workers':>8}{'requests':>10}{'req/s':>10}{'items/s':>10}" \
           f"{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}{'p99.9 us':>10}{'max us':>9}  errors"
    rows = [head, "-" * len(head)]
    for r in results:
        s = r.summary()
        workers = "-" if r.server_workers is None else str(r.server_workers)
        items = s.get("events_per_s", s.get("decisions_per_s"))
        rows.append(f"{r.phase:<7}{r.target:<8}{workers:>8}{r.requests:>10}{s['throughput_rps']:>10,.0f}"
                    f"{items:>10,.0f}{s['p50_us']:>9.0f}{s['p90_us']:>9.0f}{s['p99_us']:>9.0f}"
                    f"{s['p99.9_us']:>10.0f}{s['max_us'] or 0:>9.0f}  {r.errors or ''}")
    rows.append("workers: the server's processes ('-': a server running elsewhere); items/s: decisions, "
                "or for events the events stored (durably) per second")
    return "\n".join(rows)


def cpu_ticks() -> tuple[int, int] | None:
    """The machine's CPU time so far, all CPUs, in ticks: (total, idle and
    waiting on I/O), from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(ticks), ticks[3] + ticks[4]


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time that was busy between two
    ``cpu_ticks`` readings (client, servers and whatever else ran); None if
    either is missing or no tick passed."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return 1.0 - (after[1] - before[1]) / (after[0] - before[0])


def mean_of(xs: list) -> float | None:
    """The mean of the numbers in ``xs`` (None left out), to 3 places; None if none."""
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 3) if xs else None


def share_text(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def core_busy(cpu_us: float | None, result: Result) -> float | None:
    """How busy a server kept each of its worker processes' cores: its CPU
    a request (µs) times the requests a second it answered, over its
    workers; None for a server running elsewhere or not read.  At the open
    loop's rate it says how fast a queue drains: a stall of the shared
    machine queues every call behind it, and the queue empties at the idle
    share of the core (``drain_ratio``)."""
    if cpu_us is None or not result.server_workers or not result.requests:
        return None
    return round(cpu_us * result.throughput / 1e6 / result.server_workers, 3)


def drain_ratio(busy: dict) -> float | None:
    """The echo's idle share of its core over Decide's, (1 - echo) / (1 -
    Decide): how much slower a queue behind a stall drains on Decide's
    server, and so about how much longer a tail made of stalls is; None
    unless both are known and below 1."""
    echo, decide = busy.get("echo"), busy.get("decide")
    if echo is None or decide is None or echo >= 1 or decide >= 1:
        return None
    return round((1 - echo) / (1 - decide), 2)


def turn_ratios(echo: list[Result], decide: list[Result]) -> dict:
    """Decide over echo in each turn (ABBA: a turn is one of each, run back
    to back), p50, p99 and throughput: how far the run's own drift moves the
    ratios the merged rows give."""
    pairs = list(zip(echo, decide))
    return {"p50": [ratio(d.pct(50), e.pct(50)) for e, d in pairs],
            "p99": [ratio(d.pct(99), e.pct(99)) for e, d in pairs],
            "throughput": [ratio(d.throughput, e.throughput) for e, d in pairs]}


#: resamples of a phase's turns behind each ratio's interval, and the interval's coverage
RESAMPLES = 1000
COVERAGE = 0.90


def turn_intervals(echo: list[Result], decide: list[Result], resamples: int = RESAMPLES,
                   coverage: float = COVERAGE, seed: int = 0) -> dict | None:
    """How far this run's turns could move Decide / echo: the run's ABBA turn
    pairs drawn with replacement ``resamples`` times (a bootstrap), each
    draw's turns merged as the report merges them, and the central
    ``coverage`` of the ratios it gives, for p50, p99 and throughput:
    ``{"p50": (lo, hi), ...}``.  None with fewer than two turns.  A wide
    interval is a run whose turns disagree (a shared machine's stalls, which
    fall on a p99 turn by turn); one that lies wholly on one side of a goal
    is a verdict the turns agree on.  Seeded: the same turns give the same
    interval."""
    pairs = list(zip(echo, decide))
    if len(pairs) < 2:
        return None
    draw = random.Random(seed)
    found: dict[str, list[float]] = {"p50": [], "p99": [], "throughput": []}
    for _ in range(resamples):
        picked = draw.choices(pairs, k=len(pairs))
        e, d = merged([p[0] for p in picked]), merged([p[1] for p in picked])
        found["p50"].append(ratio(d.pct(50), e.pct(50)))
        found["p99"].append(ratio(d.pct(99), e.pct(99)))
        found["throughput"].append(ratio(d.throughput, e.throughput))
    tail = (1.0 - coverage) / 2
    out = {}
    for k, xs in found.items():
        xs = sorted(x for x in xs if x == x)            # NaN (a turn without calls) left out
        if xs:
            out[k] = (xs[int(tail * len(xs))], xs[min(len(xs) - 1, int((1.0 - tail) * len(xs)))])
    return out


def ratios(results: list[Result]) -> dict:
    by = {(r.phase, r.target): r for r in results}
    out = {}
    for phase in ("c1", "open"):
        d, e = by.get((phase, "decide")), by.get((phase, "echo"))
        if d and e:
            out[phase] = {"p50": ratio(d.pct(50), e.pct(50)), "p99": ratio(d.pct(99), e.pct(99))}
    d, e = by.get(("max", "decide")), by.get(("max", "echo"))
    if d and e:
        out["max"] = {"throughput": ratio(d.throughput, e.throughput)}
    return out


#: Issue 3's targets (Decide against the echo on the same stack, DecideBatch)
#: and the product brief's budget for one Decide end to end.
RATIO_MAX = 1.15                # Decide / echo, p50 and p99, at one caller and in the open loop
THROUGHPUT_MIN = 0.80           # Decide's maximum / the echo's
BATCH_MIN = 100_000             # DecideBatch decisions per second
SERVER_P99_MAX_US = 100         # maple_decide_seconds p99 at one caller
BUDGET_P99_US = 1_000           # the brief: one Decide over gRPC on loopback, p99 under 1 ms


def targets(results: list[Result], server_side: dict, overload: bool = False,
            intervals: dict | None = None) -> list[dict]:
    """Each target this run can speak to: what it asks, what was measured,
    and whether it was met (None: this run cannot tell, e.g. the open phase
    measured overload).  The server-side p99 is a histogram bucket's upper
    bound: met when that bound is within the target (100 µs is a bound).
    ``intervals`` (by phase, ``turn_intervals``): a ratio's row also carries
    its interval over the run's turns resampled, and ``clear``: whether the
    whole interval lies on the verdict's side of the goal (False: the turns
    disagree about it; None: no interval)."""
    rows = []
    intervals = intervals or {}

    def row(what: str, goal: str, measured: str, met, interval=None, within=None) -> None:
        clear = None
        if interval is not None and met is not None:
            sides = {within(interval[0]), within(interval[1])}
            clear = sides == {met}
        rows.append({"target": what, "goal": goal, "measured": measured, "met": met,
                     "interval": list(interval) if interval is not None else None, "clear": clear})

    c1 = (server_side or {}).get("c1")
    if c1 and c1.get("p99_le_us") is not None:
        le = c1["p99_le_us"]
        row("server-side Decide p99, one caller", f"< {SERVER_P99_MAX_US} µs", f"<= {le:g} µs",
            le <= SERVER_P99_MAX_US)
    r = ratios(results)
    for phase, label in (("c1", "one caller"), ("open", "open loop, half the echo's maximum")):
        for p in ("p50", "p99"):
            if phase in r:
                x = r[phase][p]
                met = None if phase == "open" and overload else x <= RATIO_MAX
                span = (intervals.get(phase) or {}).get(p)
                row(f"Decide / echo {p}, {label}", f"<= {RATIO_MAX:g}x",
                    f"{x:.2f}x" + (" (overload)" if met is None else "") + _span_text(span), met, span,
                    lambda y: y <= RATIO_MAX)
    if "max" in r:
        x = r["max"]["throughput"]
        span = (intervals.get("max") or {}).get("throughput")
        row("Decide / echo maximum throughput", f">= {THROUGHPUT_MIN:.2f}x", f"{x:.2f}x" + _span_text(span),
            x >= THROUGHPUT_MIN, span, lambda y: y >= THROUGHPUT_MIN)
    for b in (b for b in results if b.phase == "batch" and b.requests):
        x = b.throughput * b.items_per_request
        row("DecideBatch decisions/s", f">= {BATCH_MIN:,}", f"{x:,.0f}", x >= BATCH_MIN)
    for d in (d for d in results if d.phase == "c1" and d.target == "decide" and d.requests):
        x = d.pct(99)
        row("Decide p99 end to end, one caller (the brief)", f"< {BUDGET_P99_US:,} µs", f"{x:,.0f} µs",
            x < BUDGET_P99_US)
    return rows


def _span_text(span) -> str:
    return "" if span is None else f" ({span[0]:.2f}-{span[1]:.2f})"


def targets_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    width = max(len(t["target"]) for t in rows)
    verdict = {True: "met", False: "NOT met", None: "cannot tell"}
    lines = ["targets, this run:"]
    lines += [f"  {t['target']:<{width}}  {t['goal']:>11}  {t['measured']:>24}  {verdict[t['met']]}"
              + (", turns disagree" if t.get("clear") is False else "") for t in rows]
    if any(t.get("interval") for t in rows):
        lines.append(f"  (in brackets: the ratio's central {COVERAGE:.0%} over this run's turns drawn again "
                     f"{RESAMPLES:,} times; 'turns disagree': it reaches across the goal)")
    return "\n".join(lines)


#: the ratios the turns panel shows: (phase, statistic, label, goal, goal is a ceiling)
JUDGED = (("c1", "p50", "one caller\np50", RATIO_MAX, True), ("c1", "p99", "one caller\np99", RATIO_MAX, True),
          ("open", "p50", "open loop\np50", RATIO_MAX, True), ("open", "p99", "open loop\np99", RATIO_MAX, True),
          ("max", "throughput", "maximum\nthroughput", THROUGHPUT_MIN, False))


def plot(results: list[Result], path: Path, per_turn: dict | None = None, intervals: dict | None = None) -> None:
    """The latency distributions, a panel per phase; with ``per_turn``
    (turn_ratios by phase) a last panel of Decide / echo turn by turn for
    each ratio the targets judge: each turn a dot, the merged ratio a bar,
    ``intervals`` (turn_intervals by phase) as its whisker, the goal a red
    line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    phases = [p for p in PHASES if any(r.phase == p for r in results)]
    judged = [j for j in JUDGED if len((per_turn or {}).get(j[0], {}).get(j[1], ())) > 0]
    fig, axes = plt.subplots(1, len(phases) + bool(judged), figsize=(5 * (len(phases) + bool(judged)), 4),
                             squeeze=False)
    pcts = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]
    for ax, phase in zip(axes[0], phases):
        for r in (r for r in results if r.phase == phase and r.requests):
            xs = [1 / (1 - p / 100) if p < 100 else 1e4 for p in pcts]
            workers = "" if r.server_workers is None else \
                f", {r.server_workers} worker{'' if r.server_workers == 1 else 's'}"
            ax.plot(xs, [r.pct(p) / 1000 for p in pcts], marker=".",
                    label=f"{r.target} ({r.throughput:,.0f} req/s{workers})")
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 10, 100, 1000, 10000])
        ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title(phase)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if judged:
        _plot_turns(axes[0][-1], judged, per_turn, ratios(results), intervals or {})
    fig.suptitle("Maple vs gRPC echo floor (same server stack); batch: DecideBatch, events: RecordEvents")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_turns(ax, judged: list, per_turn: dict, merged_ratios: dict, intervals: dict) -> None:
    top, labelled = 0.0, set()

    def label(what: str) -> str | None:         # each kind of mark in the legend once
        if what in labelled:
            return None
        labelled.add(what)
        return what
    for i, (phase, stat, _, goal, ceiling) in enumerate(judged):
        turns = [x for x in per_turn[phase][stat] if x == x]
        top = max([top, goal, *turns, *((intervals.get(phase) or {}).get(stat) or ())])
        ax.scatter([i + 0.3 * (k / max(1, len(turns) - 1) - 0.5) for k in range(len(turns))], turns, s=12,
                   color="tab:gray", zorder=3, label=label("a turn"))
        x = merged_ratios.get(phase, {}).get(stat)
        if x is not None and x == x:
            top = max(top, x)
            met = x <= goal if ceiling else x >= goal
            ax.bar(i, x, width=0.5, alpha=0.35, color="tab:green" if met else "tab:orange",
                   label=label("the run (merged turns)"))
        span = (intervals.get(phase) or {}).get(stat)
        if span:                                # drawn as it is: it need not hold the merged ratio
            ax.vlines(i, span[0], span[1], color="black", zorder=4,
                      label=label(f"{COVERAGE:.0%} over the turns drawn again"))
            ax.hlines(span, i - 0.08, i + 0.08, color="black", zorder=4)
        ax.hlines(goal, i - 0.35, i + 0.35, color="tab:red", zorder=5, label=label("goal"))
    ax.set_xticks(range(len(judged)))
    ax.set_xticklabels([j[2] for j in judged], fontsize=8)
    ax.set_ylabel("Decide / echo")
    ax.set_title("the targets, turn by turn")
    ax.set_ylim(0, 1.35 * top)             # room above for the legend
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)


# ---------------------------------------------------------------- main
def serve_workers(n: int) -> int:
    """The processes ``maple serve --workers n`` runs: n, or one per core for 0."""
    from engine.server.config import ServeConfig
    return ServeConfig(rules="", workers=n).worker_count


def batch_server(args) -> str:
    """Which server the batch phase measures: ``target`` (--target, running
    elsewhere), ``shared`` (the maple serve of the other phases: --batch-workers
    equals --server-workers) or ``own`` (a second maple serve, --batch-workers)."""
    if args.target:
        return "target"
    return "shared" if args.batch_workers == args.server_workers else "own"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help="a running DecisionService (default: start maple serve here)")
    p.add_argument("--echo", help="a running bench.echo_server (default: start one here)")
    p.add_argument("--rules", help="rules for the maple serve it starts (default: rules/, or "
                                   "rules/schema.rules + bench/pack while rules/ decides nothing); with "
                                   "--target, whose data's store ids the events phase uses (default rules/)")
    p.add_argument("--server-workers", type=int, default=1,
                   help="worker processes of the echo and the maple serve it starts for c1, max and open "
                        "(0: one per core)")
    p.add_argument("--batch-workers", type=int, default=0,
                   help="worker processes of the maple serve the batch phase runs against (default 0: one "
                        "per core, as maple serve); when it differs from --server-workers a second maple "
                        "serve is started for the batch phase; ignored with --target")
    p.add_argument("--profiles", help="JSON Lines file of profiles (default: synthetic)")
    p.add_argument("--customers", type=int, default=2000, help="synthetic profiles to make")
    p.add_argument("--by-id", action="store_true",
                   help="send customer ids only; the server it starts reads the profiles from --profile-store")
    p.add_argument("--profile-store", choices=("jsonl", "sqlite"), default="jsonl",
                   help="with --by-id: the synthetic profiles in a file (--store jsonl:, in memory), or a SQLite "
                        "store holding what the bench's realistic month of events (10 per customer) folds into, "
                        "read through the server's profile cache as in production")
    p.add_argument("--phases", default=None,
                   help="comma-separated, of " + ",".join(PHASES) + " (default: all; without events "
                        "with --target, so a server elsewhere is not sent bench events unasked)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase and target")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="unmeasured seconds before each phase's first turn of a target (later turns: "
                        f"{TURN_WARMUP:g} s)")
    p.add_argument("--turns", type=int, default=4,
                   help="c1, max and open: the echo and Decide take this many turns each, in ABBA order, "
                        "--duration split between them, so the machine's drift falls on both alike")
    p.add_argument("--procs", type=int, default=2, help="client processes for max, open and batch")
    p.add_argument("--concurrency", type=int, default=16, help="callers in max and open (over --procs)")
    p.add_argument("--rate", type=float, help="open-loop rate (default: --rate-fraction x echo max)")
    p.add_argument("--rate-fraction", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=100, help="items per DecideBatch and per RecordEvents")
    p.add_argument("--events-workers", type=int, default=1,
                   help="worker processes of the maple serve the events phase starts, with a fresh SQLite store "
                        "(default 1: one process writes the file; 0: one per core)")
    p.add_argument("--events-callers", type=int, default=4, help="RecordEvents callers (over --procs)")
    p.add_argument("--events-batches", type=int, default=1500,
                   help="RecordEvents batches made for the phase (each sent once; a caller that runs out "
                        "before the end is reported as EXHAUSTED)")
    p.add_argument("--events-customers", type=int, default=20_000, help="customers the events are about")
    p.add_argument("--cpu-latency-us", type=int, default=None,
                   help="hold this machine's CPU wake-up latency limit (/dev/cpu_dma_latency, as maple serve "
                        "--cpu-latency-us does) for the whole run: client and both servers alike; 0: idle cores "
                        "poll instead of halting (needs root)")
    p.add_argument("--cpu-affinity", default="off",
                   help="the servers it starts keep each worker on one CPU, maple serve and the echo alike "
                        "(maple serve --cpu-affinity): off, auto or a list such as 0,2-3")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for JSON and PNG")
    args = p.parse_args(argv)
    if args.phases is None:
        args.phases = ",".join(p for p in PHASES if not (args.target and p == "events"))
    if args.profile_store == "sqlite" and (not args.by_id or args.profiles or args.target):
        p.error("--profile-store sqlite: with --by-id, for the server it starts; it builds the profiles from "
                "events (not --profiles FILE)")
    if args.turns < 1:
        p.error("--turns: 1 or more")
    if args.cpu_latency_us is not None and args.cpu_latency_us < 0:
        p.error("--cpu-latency-us: a whole number of microseconds >= 0 (0: idle cores poll)")
    from engine.server import affinity
    try:
        affinity.parse(args.cpu_affinity)
    except ValueError as err:
        p.error(f"--cpu-affinity {args.cpu_affinity}: {err}")
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        p.error(f"--phases: unknown {', '.join(sorted(unknown))} (use {','.join(PHASES)})")
    for name in ("server_workers", "batch_workers", "events_workers"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')}: use 1 or more, or 0 for one per core")
        setattr(args, name, serve_workers(getattr(args, name)))
    return args


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    from bench import profiles as prof
    from engine.server import cpu_latency
    qos = None
    if args.cpu_latency_us is not None:
        try:
            qos = cpu_latency.CpuLatency(args.cpu_latency_us).open()
        except cpu_latency.CpuLatencyError as err:
            print(f"loadgen: --cpu-latency-us {args.cpu_latency_us}: {err.strerror}", file=sys.stderr)
            return 2
    started = []
    try:
        people = prof.from_jsonl(args.profiles) if args.profiles else prof.synthetic(args.customers)
        store = None
        if args.by_id and not args.target and args.profile_store == "sqlite":
            store_file = Path(tempfile.mkdtemp(prefix="maple-bench-")) / "profiles.db"
            ids = prof.sqlite_store_of_month(store_file, 10 * args.customers, args.customers, time.time(),
                                             store_ids(args.rules or str(ROOT / "rules")))
            people = [{"customer_id": cid} for cid in ids]
            store = f"sqlite://{store_file}"
        elif args.by_id and not args.target:
            store_file = Path(tempfile.mkdtemp(prefix="maple-bench-")) / "profiles.jsonl"
            prof.write_jsonl(people, store_file)
            store = f"jsonl:{store_file}"
        phases = args.phases.split(",")
        single = any(ph in phases for ph in ("c1", "max", "open"))      # Decide against the echo
        metrics_port = None
        target = args.target
        rules = None if target else args.rules or default_pack()
        server_pid = {"echo": None, "decide": None}        # the servers it started: their CPU is read
        if not target and (single or batch_server(args) == "shared"):
            proc, info = start_maple(rules, args.server_workers, store, cpu_affinity=args.cpu_affinity)
            started.append(proc)
            target, metrics_port = info["decisions"], info["metrics"]
            server_pid["decide"] = proc.pid
        echo = args.echo
        if not echo and single:
            proc, echo = start_echo(args.server_workers, args.cpu_affinity)
            started.append(proc)
            server_pid["echo"] = proc.pid
        singles = prof.decide_requests(people, args.by_id)
        batches = prof.batch_requests(singles, args.batch_size)
        servers = ", ".join(f"{what} {where}" for what, where in (("decide", target), ("echo", echo)) if where)
        print(f"{servers or 'no server yet'}; {len(singles)} requests of ~{sum(map(len, singles)) // len(singles)} "
              f"bytes; {os.cpu_count()} cores; CPU wake-up latency limit {latency_limit()}; servers' CPU affinity "
              f"{args.cpu_affinity}", file=sys.stderr)
        common = dict(duration=args.duration, warmup=args.warmup)       # batch, events: one turn
        results: list[Result] = []
        server_side = {}
        read_included = {}              # by phase: the same from the request's bytes (maple_request_seconds)
        per_turn = {}                   # by phase: Decide / echo in each turn
        intervals = {}                  # by phase: each ratio's interval over the turns resampled
        machine_busy = {}               # by phase and target: the machine's busy CPU share, measured windows
        server_cpu_us = {}              # by phase and target: the server's CPU a request, µs (servers it started)
        server_busy = {}                # by phase and target: how busy each server kept its cores (core_busy)
        profile_cache = {}              # by phase: the profile cache's reads (--by-id with a store behind a cache)
        per_thread = max(1, args.concurrency // args.procs)

        echo_workers = None if args.echo else args.server_workers
        decide_workers = None if args.target else args.server_workers

        def both(phase, **kw):
            """The echo and Decide take --turns turns each, in ABBA order, the
            measured --duration split between them: a drift of this shared
            VM's speed during the phase falls on both alike."""
            parts = {"echo": [], "decide": []}
            busy = {"echo": [], "decide": []}       # the machine's busy share in each turn's measured window
            server_cpu = {"echo": [], "decide": []}  # the server's CPU µs a request, each turn
            decide_buckets: dict = {}
            handler_buckets: dict = {}
            reads: dict = {}
            for turn in range(args.turns):
                timing = dict(duration=args.duration / args.turns,
                              warmup=args.warmup if turn == 0 else min(args.warmup, TURN_WARMUP))
                for name in ("echo", "decide") if turn % 2 == 0 else ("decide", "echo"):
                    marks = {}
                    pid = server_pid[name]

                    def warmed(name=name, pid=pid):     # as the measured calls begin (warm-up left out): the
                        marks["cpu"] = cpu_ticks()      # machine's CPU time, the server's, and Decide's counts
                        marks["server_cpu"] = tree_cpu_seconds(pid) if pid else None
                        if name == "decide" and metrics_port:
                            marks["at"] = server_counts(metrics_port)
                    if name == "echo":
                        part = run_phase(phase, "echo", echo, ECHO, singles, **kw, **timing,
                                         server_workers=echo_workers, on_warm=warmed)
                    else:
                        part = run_phase(phase, "decide", target, DECIDE, singles, **kw, **timing,
                                         server_workers=decide_workers, on_warm=warmed)
                    parts[name].append(part)
                    busy[name].append(busy_share(marks.get("cpu"), cpu_ticks()))
                    if marks.get("server_cpu") is not None and part.requests:
                        server_cpu[name].append((tree_cpu_seconds(pid) - marks["server_cpu"]) / part.requests * 1e6)
                    if name == "echo":
                        continue
                    before, reads_before, handler_before = marks.get("at", (None, None, None))
                    after, reads_after, handler_after = server_counts(metrics_port)
                    if before is not None and after:
                        add_buckets(decide_buckets, before, after)
                    if handler_before is not None and handler_after:
                        add_buckets(handler_buckets, handler_before, handler_after)
                    if reads_before is not None and reads_after:
                        add_buckets(reads, reads_before, reads_after)
            echo_row, decide_row = merged(parts["echo"]), merged(parts["decide"])
            results.extend((echo_row, decide_row))
            per_turn[phase] = turn_ratios(parts["echo"], parts["decide"])
            spans = turn_intervals(parts["echo"], parts["decide"])
            if spans:
                intervals[phase] = spans
            machine_busy[phase] = {k: mean_of(v) for k, v in busy.items()}
            if server_cpu["echo"] or server_cpu["decide"]:
                server_cpu_us[phase] = {k: None if (m := mean_of(v)) is None else round(m, 1)
                                        for k, v in server_cpu.items()}
                server_busy[phase] = {k: core_busy(server_cpu_us[phase][k], row)
                                      for k, row in (("echo", echo_row), ("decide", decide_row))}
            if decide_buckets:
                server_side[phase] = bucket_percentiles({}, decide_buckets)
            if handler_buckets:
                read_included[phase] = bucket_percentiles({}, handler_buckets)
            if reads:
                profile_cache[phase] = cache_hit_share(reads)

        if "c1" in phases:
            both("c1", mode="closed", procs=1, threads=1, rate=0)
        if "max" in phases or "open" in phases:
            both("max", mode="closed", procs=args.procs, threads=per_thread, rate=0)
        open_load = None                # the open-loop rate as a fraction of Decide's own maximum
        if "open" in phases:
            echo_max = next(r.throughput for r in results if r.phase == "max" and r.target == "echo")
            decide_max = next(r.throughput for r in results if r.phase == "max" and r.target == "decide")
            rate = args.rate or args.rate_fraction * echo_max
            open_load = round(rate / decide_max, 3) if decide_max else None
            both("open", mode="open", procs=args.procs, threads=per_thread, rate=rate)
        batch_target = batch_workers = None
        if "batch" in phases:
            batch_target, batch_workers = target, decide_workers
            if batch_server(args) == "own":
                proc, info = start_maple(rules, args.batch_workers, store, cpu_affinity=args.cpu_affinity)
                started.append(proc)
                batch_target, batch_workers = info["decisions"], args.batch_workers
            print(f"batch: DecideBatch against {batch_target}"
                  + (f" ({batch_workers} workers)" if batch_workers else ""), file=sys.stderr)
            results.append(run_phase("batch", "batch", batch_target, BATCH, batches, mode="closed",
                                     procs=args.procs, threads=2, rate=0, items_per_request=args.batch_size,
                                     server_workers=batch_workers, **common))
        events_target = events_workers = None
        if "events" in phases:
            events_target, events_workers = target, decide_workers
            if not args.target:
                events_db = Path(tempfile.mkdtemp(prefix="maple-bench-events-")) / "profiles.db"
                proc, info = start_maple(rules, args.events_workers, f"sqlite://{events_db}",
                                         cpu_affinity=args.cpu_affinity)
                started.append(proc)
                events_target, events_workers = info["decisions"], args.events_workers
            procs = min(args.procs, args.events_callers)
            spec = {"batches": -(-args.events_batches // procs), "size": args.batch_size,
                    "customers": args.events_customers, "now": time.time(),
                    "stores": store_ids(rules or args.rules or str(ROOT / "rules"))}
            print(f"events: RecordEvents of {args.batch_size} events against {events_target}"
                  + (f" ({events_workers} workers, a fresh SQLite store)" if not args.target else ""),
                  file=sys.stderr)
            results.append(run_phase("events", "events", events_target, EVENTS, [], mode="closed", procs=procs,
                                     threads=max(1, args.events_callers // procs), rate=0,
                                     items_per_request=args.batch_size, server_workers=events_workers,
                                     events=spec, **common))
        report = {"target": target, "echo": echo, "by_id": args.by_id,
                  "profile_store": args.profile_store if args.by_id else None, "cores": os.cpu_count(),
                  "server_workers": args.server_workers, "turns": args.turns, "batch_target": batch_target,
                  "batch_server_workers": batch_workers, "events_target": events_target,
                  "events_server_workers": events_workers,
                  "request_bytes": sum(map(len, singles)) // len(singles),
                  "cpu_latency_us": args.cpu_latency_us, "cpu_latency_in_force_us": cpu_latency.current(),
                  "cpu_affinity": args.cpu_affinity,
                  "results": [r.summary() for r in results], "ratios_decide_over_echo": ratios(results),
                  "ratios_per_turn": per_turn,
                  "ratio_intervals": {phase: {k: list(v) for k, v in spans.items()}
                                      for phase, spans in intervals.items()},
                  "ratio_interval_coverage": COVERAGE,
                  "machine_busy": machine_busy,
                  "server_cpu_us_per_request": server_cpu_us,
                  "server_core_busy": server_busy,
                  "open_drain_ratio": drain_ratio(server_busy.get("open", {})),
                  "server_side_decide": server_side, "server_side_read_included": read_included,
                  "open_rate_over_decide_max": open_load,
                  "profile_cache": profile_cache}
        overload = open_load is not None and queued(results, open_load)
        report["targets"] = targets(results, server_side, overload, intervals)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out / f"loadgen-{stamp}.json").write_text(json.dumps(report, indent=2))
        plot(results, out / f"loadgen-{stamp}.png", per_turn=per_turn, intervals=intervals)
        print(table(results))
        print("\nDecide / echo:", json.dumps(report["ratios_decide_over_echo"]))
        for phase, r in per_turn.items():
            if len(r["p50"]) > 1:
                keys = ("p50", "p99") if phase != "max" else ("throughput",)
                print(f"  {phase}, each turn (the run's own drift): "
                      + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in r[k]) for k in keys))
        if any(v is not None for b in machine_busy.values() for v in b.values()):
            print("the machine's CPU busy (all cores, client and servers, measured windows): " + "; ".join(
                f"{phase} echo {share_text(b['echo'])} decide {share_text(b['decide'])}"
                for phase, b in machine_busy.items()))
        if server_cpu_us:
            print("the server's CPU a request, µs (every thread and child, measured windows): " + "; ".join(
                f"{phase} echo {c['echo']} decide {c['decide']}" for phase, c in server_cpu_us.items()))
        if any(v is not None for b in server_busy.values() for v in b.values()):
            print("each server's cores busy (its CPU a request x requests a second / its workers): " + "; ".join(
                f"{phase} echo {share_text(b['echo'])} decide {share_text(b['decide'])}"
                for phase, b in server_busy.items()))
            if report["open_drain_ratio"] is not None:
                print(f"  open loop: the echo's idle share over Decide's {report['open_drain_ratio']:.2f}x: a queue "
                      "behind a stall of the machine drains that much slower on Decide's server, and a tail made "
                      "of such stalls is about that much longer")
        if server_side:
            print("server-side Decide (maple_decide_seconds bucket bounds, from the request parsed):",
                  json.dumps(server_side))
        if read_included:
            print("the same with the request's read (maple_request_seconds{rpc=\"Decide\",code=\"OK\"}):",
                  json.dumps(read_included))
        if profile_cache:
            print("profile cache during Decide (maple_profile_cache_reads_total; hit_share: reads the store "
                  "was spared):", json.dumps(profile_cache))
        if overload:
            print(f"note: the open-loop rate was {open_load:.0%} of Decide's own maximum in this run (the echo's "
                  "maximum is higher) and Decide queued: the open phase measured overload, not latency at half load")
        if report["targets"]:
            print("\n" + targets_table(report["targets"]))
        print(f"\nwrote {out / f'loadgen-{stamp}.json'} and .png")
        return 0
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(30)
        if qos is not None:
            qos.close()


def latency_limit() -> str:
    """The machine's CPU wake-up latency limit as the header shows it."""
    from engine.server import cpu_latency
    us = cpu_latency.current()
    if us is None:
        return "unknown"
    if us >= 2_000_000_000:                     # the kernel's default: no limit
        return "none (idle cores may halt)"
    return f"{us} µs" + (" (idle cores poll)" if us == 0 else "")


if __name__ == "__main__":
    raise SystemExit(main())
