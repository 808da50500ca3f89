"""kill -9: every acknowledged event is in the store afterwards.

A child process applies batches and prints the ids of each acknowledged
batch; the test reads a few acknowledgements, SIGKILLs the child in the
middle of its next batches, reopens the store and checks every acknowledged
event: its id is recorded and its purchase is in the customer's profile.
For Redis the server is then killed -9 as well and restarted from its
append-only file (appendfsync always), and the check is repeated.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.profiles import open_store

WORKER = Path(__file__).with_name("ingest_worker.py")
BATCHES_BEFORE_KILL = 5


def run_and_kill(url: str, run: str, env: dict | None = None) -> tuple[list[str], str]:
    """Start the worker, collect acknowledged ids, SIGKILL it; the ids and
    the store's health detail as the worker saw it."""
    proc = subprocess.Popen([sys.executable, str(WORKER), url, run], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, **(env or {})})
    acked = []
    try:
        ready, _, detail = proc.stdout.readline().strip().partition(" ")
        assert ready == "READY", ready
        for _ in range(BATCHES_BEFORE_KILL):
            line = proc.stdout.readline()
            assert line.startswith("ACK "), line
            acked.extend(line.split()[1:])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in proc.stdout:               # acknowledged after we stopped reading, before the kill
        if line.startswith("ACK ") and line.endswith("\n"):
            acked.extend(line.split()[1:])
    return acked, detail


def assert_all_present(url: str, acked: list[str]) -> None:
    assert len(acked) >= BATCHES_BEFORE_KILL * 100
    with open_store(url) as store:
        profiles = {f"K{i}": store.get(f"K{i}") for i in range(100)}
        for event_id in acked:
            customer = f"K{event_id.rsplit('-', 1)[1]}"
            assert store.applied(event_id) == customer, event_id
            assert event_id in profiles[customer]["purchased_skus"], event_id


@pytest.mark.parametrize("walbuf", ["1", "0"], ids=["wal-writes-coalesced", "default-vfs"])
def test_sqlite_survives_kill_9(sqlite_url, walbuf):
    """With the store's own VFS (one write per commit, walbuf) and without."""
    acked, detail = run_and_kill(sqlite_url, "sq", {"MAPLE_SQLITE_WALBUF": walbuf})
    assert ("vfs=maple-walbuf" in detail) == (walbuf == "1"), detail
    assert_all_present(sqlite_url, acked)


def test_redis_survives_kill_9_of_the_writer_and_of_the_server(own_redis):
    acked, _ = run_and_kill(own_redis.url, "rd")
    assert_all_present(own_redis.url, acked)
    own_redis.kill()
    own_redis.start()              # reloads the append-only file
    assert_all_present(own_redis.url, acked)
