"""Retention of the dedupe records: an event id is remembered as long as a
copy of the event could be accepted, and forgotten after (SQLite: pruned
through an index; Redis: the key's TTL)."""
from __future__ import annotations

import logging
import sqlite3
import threading

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.profiles import ValidationConfig, open_store
from engine.profiles.events import DEDUPE_CLOCK_SKEW
from engine.profiles.sqlite_store import SQLiteStore
from engine.service.retention import DedupePruner, pruner_for
from engine.service.sources import open_profile_source
from profiles_support import DAY, NOW, ev, item

HORIZON = ValidationConfig().dedupe_horizon


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_horizon_covers_every_acceptable_copy():
    cfg = ValidationConfig()
    assert HORIZON == cfg.max_past + cfg.max_future + DEDUPE_CLOCK_SKEW == 401 * DAY + 3600
    assert ValidationConfig(max_past=7 * DAY, max_future=60).dedupe_horizon == 7 * DAY + 60 + 3600


# ---------------------------------------------------------------- SQLite
CFG = ValidationConfig(max_past=10 * DAY, max_future=DAY)       # short, so the cases stay readable


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ahead=st.floats(-CFG.max_past + 1, CFG.max_future),          # the event's time - when applied
       later=st.floats(0, CFG.max_past + CFG.max_future + 2 * 3600))  # when the copy comes, after applying
def test_a_copy_that_would_be_accepted_is_still_known_after_pruning(tmp_path_factory, ahead, later):
    """However far ahead or behind its event's time, and whenever a copy
    comes, pruning as of then never forgets an id a copy of which the
    validator would accept: the copy is a duplicate, never applied twice."""
    clock = Clock(NOW)
    path = tmp_path_factory.mktemp("prune") / "p.db"
    with SQLiteStore(str(path), validation=CFG, clock=clock, checkpoint_every=0) as s:
        first = s.apply([ev("purchase", NOW + ahead, event_id="E", items=[item("S1")])])
        assert first.accepted == ("E",)
        clock.t = NOW + later
        s.prune_applied()
        copy = s.apply([ev("purchase", NOW + ahead, event_id="E", items=[item("S1")])])
        if copy.errors:                          # too old now: refused, not applied
            assert clock.t - (NOW + ahead) > CFG.max_past and copy.accepted == ()
        else:
            assert copy.duplicates == ("E",) and copy.accepted == ()
            assert s.applied("E") == "C1"
        assert s.get("C1")["orders_count"] == 1


def test_prune_deletes_only_rows_past_the_horizon_a_chunk_at_a_time(sqlite_url):
    clock = Clock(NOW)
    with open_store(sqlite_url, clock=clock) as s:
        s.apply([ev("page_view", NOW - i, event_id=f"old{i}") for i in range(10)])
        clock.t = NOW + 100 * DAY
        s.apply([ev("page_view", clock.t - i, event_id=f"new{i}") for i in range(4)])
        seen = []
        assert s.prunable(NOW + HORIZON - 1) == 0 and s.prunable(NOW + HORIZON + 1) == 10
        assert s.prune_applied(NOW + HORIZON - 1, chunk=3) == 0        # not yet: kept to the second
        assert s.prune_applied(NOW + HORIZON + 1, chunk=3, progress=seen.append) == 10
        assert seen == [3, 6, 9, 10]
        assert s.count("events") == 4 and s.applied("new0") == "C1" and s.applied("old0") is None
        assert s.prune_applied(NOW + HORIZON + 1) == 0
        assert s.get("C1")["last_seen_at"] == NOW + 100 * DAY            # profiles untouched
        with pytest.raises(ValueError):
            s.prune_applied(chunk=0)


def test_pruning_reads_the_index_and_an_older_file_gets_it(tmp_path):
    path = tmp_path / "p.db"
    open_store(f"sqlite://{path}").close()
    db = sqlite3.connect(path)
    plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE applied_at < 1 LIMIT 5"))
    assert "events_by_applied_at" in plan, plan
    db.execute("DROP INDEX events_by_applied_at")          # a file made before the index existed
    db.commit()
    db.close()
    with open_store(f"sqlite://{path}", clock=lambda: NOW) as s:
        s.apply([ev("page_view", NOW, event_id="x")])
        assert s.prune_applied(NOW + HORIZON + 1) == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
                      "AND name = 'events_by_applied_at'").fetchone() is not None
    db.close()


def test_a_pass_stops_between_transactions_when_asked(sqlite_url):
    clock = Clock(NOW)
    with open_store(sqlite_url, clock=clock) as s:
        s.apply([ev("page_view", NOW - i, event_id=f"old{i}") for i in range(10)])
        clock.t = NOW + HORIZON + 1
        stop = threading.Event()
        assert s.prune_applied(chunk=3, progress=lambda n: n >= 6 and stop.set(), stop=stop) == 6
        assert s.count("events") == 4
        assert s.prune_applied(chunk=3, stop=stop) == 0                 # set before: nothing starts
        stop.clear()
        assert s.prune_applied(chunk=3, stop=stop) == 4


def test_events_keep_committing_between_pruning_chunks(sqlite_url):
    """Each chunk takes the write lock on its own: a batch applied from
    another thread while a pruning pass runs is stored (not blocked for
    the whole pass), and the pass deletes only old rows."""
    clock = Clock(NOW)
    with open_store(sqlite_url, clock=clock) as s:
        s.apply([ev("page_view", NOW - i, event_id=f"old{i}") for i in range(40)])
        clock.t = NOW + HORIZON + 1
        applied = []

        def progress(n: int) -> None:
            if not applied:                     # mid-pass: another writer gets its turn
                t = threading.Thread(target=lambda: applied.append(
                    s.apply([ev("page_view", clock.t, event_id="during")])))
                t.start()
                t.join()
        assert s.prune_applied(chunk=10, progress=progress) == 40
        assert applied[0].accepted == ("during",) and s.applied("during") == "C1"


# ---------------------------------------------------------------- Redis
def test_redis_records_live_as_long_as_the_horizon(redis_url):
    with open_store(redis_url, clock=lambda: NOW) as s:
        assert s.keeps_dedupe_rows is False and s.prune_applied() == 0
        s.apply([ev("page_view", NOW, event_id="r1")])
        client = redis.Redis.from_url(redis_url)
        try:
            ttl = client.ttl(f"{s.prefix}e:r1")
        finally:
            client.close()
        assert HORIZON - 60 <= ttl <= HORIZON, ttl


# ---------------------------------------------------------------- the pruner in maple serve
class FakeStore:
    url = "fake://"
    validation = ValidationConfig()

    def __init__(self, results):
        self.results = list(results)
        self.calls = threading.Semaphore(0)

    def prune_applied(self, stop=None):
        self.stop = stop
        try:
            r = self.results.pop(0)
            if isinstance(r, Exception):
                raise r
            return r
        finally:
            self.calls.release()


def test_a_pass_logs_what_it_forgot_and_a_failure_is_tried_again_next_time(caplog):
    p = DedupePruner(FakeStore([7, RuntimeError("disk gone"), 0]))
    with caplog.at_level(logging.INFO, logger="maple.service"):
        assert [p.run_once(), p.run_once(), p.run_once()] == [7, 0, 0]
    assert (p.passes, p.deleted) == (3, 7)
    text = caplog.text
    assert "forgot 7 event ids older than 401 days in fake://" in text
    assert "pruning the dedupe records of fake:// failed" in text and "disk gone" in text


def test_the_pruner_thread_runs_passes_until_stopped():
    store = FakeStore([1, 2, 3] + [0] * 1000)
    p = DedupePruner(store, every=0.001, first_after=0).start()
    for _ in range(3):
        assert store.calls.acquire(timeout=30)
    p.stop()
    assert not p._thread.is_alive() and p.passes >= 3 and p.deleted == 6
    assert store.stop is p._stop and store.stop.is_set()          # a pass in progress is told to end
    with pytest.raises(ValueError):
        DedupePruner(store, every=0)


def test_a_pruner_is_made_for_sqlite_only(sqlite_url, redis_url, tmp_path):
    sources = [open_profile_source(sqlite_url), open_profile_source(redis_url), open_profile_source("none")]
    try:
        sqlite_pruner, redis_pruner, none_pruner = (pruner_for(src) for src in sources)
        assert isinstance(sqlite_pruner, DedupePruner) and 60 <= sqlite_pruner.first_after <= 660
        assert sqlite_pruner.store is sources[0].store and sqlite_pruner.every == DAY
        assert redis_pruner is None and none_pruner is None
    finally:
        for src in sources:
            getattr(src, "close", lambda: None)()


# ---------------------------------------------------------------- maple profile prune
def test_the_prune_command(sqlite_url, redis_url, tmp_path, capsys):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        s.apply([ev("page_view", NOW - i, event_id=f"e{i}") for i in range(5)])
    assert main(["profile", "prune", "--store", sqlite_url, "--now", str(NOW + 30 * DAY)]) == 0
    out = capsys.readouterr().out
    assert "forgot 0 event ids applied before" in out
    assert main(["profile", "prune", "--store", sqlite_url, "--now", str(NOW + HORIZON + 1)]) == 0
    out = capsys.readouterr().out
    assert "forgot 5 event ids applied before 2025-10-09" in out and "401 days before now" in out
    assert main(["profile", "prune", "--store", redis_url]) == 0
    assert "nothing to prune (its dedupe records expire by themselves after 401 days)" in capsys.readouterr().out
    assert main(["profile", "prune", "--store", f"sqlite://{tmp_path / 'missing.db'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_prune_command_shows_a_progress_bar_on_a_terminal(sqlite_url):
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        s.apply([ev("page_view", NOW - i, event_id=f"e{i}") for i in range(12_000)])
    main_fd, term = pty.openpty()
    fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = subprocess.run([sys.executable, "-m", "engine", "profile", "prune", "--store", sqlite_url,
                               "--now", str(NOW + HORIZON + 1)], stdout=subprocess.PIPE, stderr=term, timeout=120)
    finally:
        os.close(term)
    shown = b""
    while select.select([main_fd], [], [], 5)[0]:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:                          # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    assert done.returncode == 0 and b"forgot 12,000 event ids" in done.stdout
    assert b"prune:   0%" in shown and b"12000/12000" in shown, shown
