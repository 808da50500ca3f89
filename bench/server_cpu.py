"""Server CPU per request: Decide beside the echo floor, in one run.

    python -m bench.server_cpu [--requests 4000] [--rounds 3] [--runtime] [--base REF]
    python -m bench.server_cpu --events [--requests 200] [--rounds 5]

Starts ``maple serve`` (one worker, the reference pack) and the echo server
(one worker) on loopback, sends the same request bytes to each in a closed
loop from this process, and reads each server's CPU time (user + system,
every thread) from /proc before and after.  The difference is what Decide
costs the server beyond gRPC's own work; wall time per call is printed
beside it.  The servers take turns for ``--rounds`` rounds so drift on a
shared machine falls on both.  Linux only (/proc).

``--events`` measures RecordEvents instead: two ``maple serve`` with a fresh
SQLite store each, one reading requests and writing answers in C (the
default) and one through the protobuf runtime (``MAPLE_ENCODER=runtime``),
sent the same batches of 100 events of bench/profiles_bench.py's month
(each batch once per server) in alternating rounds: the server's CPU per
batch, store included.

``--base REF`` adds a third server: this checkout's ``engine`` with every
``.py`` file of ``engine/`` as of REF laid over it (the compiled parts stay
this checkout's), so a change to the Python of the decision path is
measured against its parent in the same rounds.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import loadgen                        # noqa: E402
from bench import profiles as bench_profiles     # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def base_code(ref: str, into: Path) -> Path:
    """A directory holding this checkout's ``engine`` (extensions and stubs
    included) with the Python files of ``engine/`` as of ``ref`` over it."""
    shutil.copytree(ROOT / "engine", into / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "engine"], check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, members=[m for m in t.getmembers() if m.name.endswith(".py")], filter="data")
    return into


WARMUP_CALLS = 500


def connect(targets: dict, payloads: list[bytes], channels: list) -> dict:
    """name -> a unary call of each target (pid, address, method), each
    warmed up with its first WARMUP_CALLS payloads; the channels opened go into ``channels``."""
    import grpc
    calls = {}
    for name, (_pid, address, method) in targets.items():
        ch = grpc.insecure_channel(address)
        channels.append(ch)
        calls[name] = ch.unary_unary(method)
        for p in payloads[:WARMUP_CALLS]:
            calls[name](p, timeout=10)
    return calls


def measure(call, pid: int, payloads: list[bytes], n: int) -> tuple[float, float]:
    """(server CPU µs per request, wall µs per request)."""
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    for i in range(n):
        call(payloads[i % len(payloads)], timeout=10)
    wall = time.perf_counter() - t0
    return (cpu_seconds(pid) - c0) / n * 1e6, wall / n * 1e6


def stop(channels: list, started: list, tmp) -> None:
    for ch in channels:
        ch.close()
    for proc in started:
        proc.terminate()
        proc.wait()
    tmp.cleanup()


def median_table(seen: dict) -> dict:
    """name -> (CPU µs, wall µs) of the median round, printed as a table."""
    print(f"{'':8} {'CPU µs (median round)':>22} {'wall µs':>9}")
    med = {}
    for name, rounds in seen.items():
        med[name] = tuple(sorted(r[i] for r in rounds)[len(rounds) // 2] for i in (0, 1))
        print(f"{name:8} {med[name][0]:>22.0f} {med[name][1]:>9.0f}")
    return med


def events_main(args) -> int:
    """``--events``: server CPU per RecordEvents batch, C codec vs runtime."""
    import grpc
    rounds, n, warm = args.rounds, args.requests, 50
    stores = ["wire", "runtime"]
    payloads = bench_profiles.event_requests(warm + rounds * n, 100, 20_000, time.time(), seed=1,
                                             store_ids=loadgen.store_ids(args.rules))
    tmp = tempfile.TemporaryDirectory(prefix="maple-server-cpu-events-")
    started, targets, channels = [], {}, []
    try:
        for name in stores:
            proc, info = loadgen.start_maple(args.rules, 1, f"sqlite://{tmp.name}/{name}.db",
                                             env={"MAPLE_ENCODER": name})
            started.append(proc)
            ch = grpc.insecure_channel(info["decisions"])
            channels.append(ch)
            targets[name] = (info["pid"], ch.unary_unary(loadgen.EVENTS))
        for _pid, call in targets.values():
            for p in payloads[:warm]:
                call(p, timeout=30)
        seen = {name: [] for name in stores}
        for k in range(rounds):
            batch = payloads[warm + k * n: warm + (k + 1) * n]
            for name, (pid, call) in targets.items():
                seen[name].append(measure(call, pid, batch, n))
    finally:
        stop(channels, started, tmp)
    print(f"server CPU per RecordEvents of 100 events, {rounds} rounds of {n} batches, one caller, "
          f"a fresh SQLite store each ({os.cpu_count()} cores)\n")
    med = median_table(seen)
    print(f"\nthe C reader and writer: {med['wire'][0] / med['runtime'][0]:.2f}x the runtime path's CPU, "
          f"{med['runtime'][0] - med['wire'][0]:.0f} µs less a batch; wall {med['wire'][1] / med['runtime'][1]:.2f}x")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=4000, help="requests per server per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", default=str(ROOT / "rules"))
    ap.add_argument("--runtime", action="store_true",
                    help="also a maple serve with MAPLE_ENCODER=runtime (answers built by the protobuf "
                         "runtime): the baseline of the wire encoder, in the same rounds")
    ap.add_argument("--base", help="also a maple serve running the engine's Python files of this git ref")
    ap.add_argument("--events", action="store_true",
                    help="RecordEvents instead: the C reader and writer against the runtime path, store included "
                         "(--requests: batches per round, default 4000 is a lot; try 200)")
    args = ap.parse_args(argv)
    if args.events:
        return events_main(args)
    payloads = bench_profiles.decide_requests(bench_profiles.synthetic(2000), by_id=False)
    maple, info = loadgen.start_maple(args.rules, 1, None)
    started = [maple]
    targets = {"decide": (info["pid"], info["decisions"], "/maple.v1.DecisionService/Decide")}
    tmp = tempfile.TemporaryDirectory(prefix="maple-server-cpu-")
    if args.base:
        based, binfo = loadgen.start_maple(args.rules, 1, None, code=base_code(args.base, Path(tmp.name)))
        started.append(based)
        targets["base"] = (binfo["pid"], binfo["decisions"], "/maple.v1.DecisionService/Decide")
    if args.runtime:
        runtime, rinfo = loadgen.start_maple(args.rules, 1, None, env={"MAPLE_ENCODER": "runtime"})
        started.append(runtime)
        targets["runtime"] = (rinfo["pid"], rinfo["decisions"], "/maple.v1.DecisionService/Decide")
    echo, echo_address = loadgen.start_echo(1)
    started.append(echo)
    targets = {"echo": (echo.pid, echo_address, "/maple.bench.Echo/Echo"), **targets}
    channels = []
    try:
        calls = connect(targets, payloads, channels)
        seen = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (pid, _address, _method) in targets.items():
                seen[name].append(measure(calls[name], pid, payloads, args.requests))
    finally:
        stop(channels, started, tmp)
    print(f"server CPU per request, {args.rounds} rounds of {args.requests} closed-loop calls "
          f"({sum(map(len, payloads)) // len(payloads)}-byte requests, {os.cpu_count()} cores)\n")
    med = median_table(seen)
    print(f"\nDecide costs the server {med['decide'][0] - med['echo'][0]:.0f} µs of CPU beyond the echo "
          f"({med['decide'][0] / med['echo'][0]:.2f}x); wall {med['decide'][1] / med['echo'][1]:.2f}x")
    if "base" in med:
        extra, base = med["decide"][0] - med["echo"][0], med["base"][0] - med["echo"][0]
        print(f"{args.base} (base): {base:.0f} µs beyond the echo ({med['base'][0] / med['echo'][0]:.2f}x), "
              f"wall {med['base'][1] / med['echo'][1]:.2f}x; this checkout's extra is {extra / base:.2f}x "
              f"the base's, its CPU per Decide {med['decide'][0] / med['base'][0]:.2f}x")
    if "runtime" in med:
        extra, base = med["decide"][0] - med["echo"][0], med["runtime"][0] - med["echo"][0]
        print(f"with the protobuf runtime's encoder: {base:.0f} µs beyond the echo "
              f"({med['runtime'][0] / med['echo'][0]:.2f}x); the wire encoder's extra is "
              f"{extra / base:.2f}x the runtime's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
