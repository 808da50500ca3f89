"""Build Maple's compiled modules with profile-guided optimisation (GCC).

    python -m bench.pgo              # what ``make`` runs after ``pip install -e``
    python -m bench.pgo --strict     # fail instead of falling back to a plain build

Three steps, each module rebuilt in place (``setup.py build_ext --inplace``):

1. ``MAPLE_PGO=generate``: the modules built to count what runs;
2. the training run, a child process (``--train``): the reference pack's
   Decides through the handler (inline snapshots, by customer id from the
   profile cache and from a SQLite store, DecideBatch of both), and
   a month of events recorded in a SQLite store as RecordEvents answers
   them (the request read and the answer written in C); each module
   writes its counts when the child exits;
3. ``MAPLE_PGO=use``: the modules built again, laid out by those counts:
   GCC keeps the paths that ran together and moves the error paths away.

Why: a Decide in the server runs with the CPU's caches emptied by the gRPC
stack between two calls, and over half of the lines it fetches from memory
are code. Laid out by the profile, the compiled modules fetch fewer of
them: on 2026-12-04 a Decide fetched 3,655 -> 3,409 lines cold (by id
3,494 -> 3,204) in 3.7 % (6.0 %) fewer instructions (``bench.decide_cost
--cold``), and the server's handler took 0.88-0.92x the time at p50 and
0.87-0.93x at p99 (``bench.layers --base-dir``, four runs; docs/performance.md).

It is an optimisation, never a reason for an install to fail: without GCC
10 or later, or when any step fails, the modules are built as without it
and a warning says so (``--strict``: exit 1 instead).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_TEMP = ROOT / "build" / "pgo"      # the objects and their counts (.gcda), kept apart from plain builds
TRAIN_STAGES = ("handled", "batch_handled", "served_stored", "batch_stored", "served_feed", "served_miss")
TRAIN_CUSTOMERS = 400
TRAIN_PASSES = 3
TRAIN_EVENTS, TRAIN_EVENT_CUSTOMERS = 6000, 1200


class PgoError(Exception):
    pass


def gcc_major() -> int | None:
    """The major version of the C compiler extensions are built with, when it is GCC."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]     # as setuptools picks it
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.lower()
    except (OSError, subprocess.SubprocessError):
        return None
    if "clang" in out or ("gcc" not in out and "free software foundation" not in out):
        return None                                     # clang's profiles are another format
    m = re.search(r"(\d+)\.\d+(?:\.\d+)?", out.splitlines()[0] if out else "")
    return int(m.group(1)) if m else None


def build(mode: str | None, jobs: int) -> None:
    """Every compiled module, rebuilt in place; ``mode``: MAPLE_PGO's value."""
    env = {k: v for k, v in os.environ.items() if k != "MAPLE_PGO"}
    if mode:
        env["MAPLE_PGO"] = mode
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force", "--parallel", str(jobs),
           "--build-temp", str(BUILD_TEMP if mode else ROOT / "build" / "plain")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PgoError(f"setup.py build_ext ({mode or 'plain'}) exited {done.returncode}:\n"
                       + "\n".join(done.stderr.splitlines()[-20:]))


def counts() -> list[Path]:
    return sorted(BUILD_TEMP.rglob("*.gcda")) if BUILD_TEMP.exists() else []


def train() -> None:
    """The workload the profile is made of (run in a child: the counts are
    written when it exits)."""
    import tempfile

    sys.path.insert(0, str(ROOT))
    from bench.decide_cost import _NoDeadline, _stage_calls
    from bench.profiles import NOW, event_requests
    from engine.profiles import open_store
    from engine.server import wire
    from engine.server.events import EventsServicer
    from engine.service.events import EventRecorder
    from engine.service.stored import StoredProfiles

    for stage in TRAIN_STAGES:
        fn, inputs = _stage_calls(stage, TRAIN_CUSTOMERS)
        for _ in range(TRAIN_PASSES):
            for x in inputs:
                fn(x)
    # RecordEvents as maple serve answers it: the request read in C, the month's events
    # folded into SQLite, the answer written in C
    requests = event_requests(TRAIN_EVENTS // 100, 100, TRAIN_EVENT_CUSTOMERS, NOW, 1, [])
    with tempfile.TemporaryDirectory(prefix="maple-pgo-") as tmp:
        store = open_store(f"sqlite://{tmp}/profiles.db")
        try:
            servicer = EventsServicer(EventRecorder.for_source(StoredProfiles(store)))
            for raw in requests:
                servicer.record_events_bytes(wire.record_events_request(raw), _NoDeadline())
        finally:
            store.close()


def say(step: str, t0: float) -> None:
    print(f"pgo: {step} ({time.monotonic() - t0:.0f} s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pgo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--strict", action="store_true", help="exit 1 when a step fails, instead of a plain build")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="modules compiled at once")
    ap.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.train:
        train()
        return 0
    t0 = time.monotonic()
    major = gcc_major()
    if major is None or major < 10:
        print("pgo: warning: the C compiler is not GCC 10 or later; the modules stay built without a profile",
              file=sys.stderr)
        return 1 if args.strict else 0
    try:
        shutil.rmtree(BUILD_TEMP, ignore_errors=True)
        say("1/3 building the modules instrumented", t0)
        build("generate", args.jobs)
        say("2/3 training: the reference pack's Decides and an event month", t0)
        trained = subprocess.run([sys.executable, "-m", "bench.pgo", "--train"], cwd=ROOT,
                                 capture_output=True, text=True)
        if trained.returncode != 0:
            raise PgoError(f"the training run exited {trained.returncode}:\n"
                           + "\n".join(trained.stderr.splitlines()[-20:]))
        written = counts()
        if not written:
            raise PgoError(f"the training run wrote no counts under {BUILD_TEMP}")
        say(f"3/3 building the modules laid out by {len(written)} modules' counts", t0)
        build("use", args.jobs)
    except (PgoError, OSError) as err:
        print(f"pgo: warning: {err}\npgo: building the modules without a profile", file=sys.stderr)
        build(None, args.jobs)
        return 1 if args.strict else 0
    say("done: the compiled modules are built with profile-guided optimisation", t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
