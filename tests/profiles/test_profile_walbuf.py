"""The SQLite store's WAL-write VFS (engine/profiles/_walbuf.pyx, walbuf.py).

It must leave exactly the database the default VFS leaves, make every
commit visible to other connections as it returns (whatever ``PRAGMA
synchronous`` says), and write a commit's frames in a few system calls
instead of two per page.  Its kill -9 durability is tested with the store
in test_profile_durability.py.
"""
from __future__ import annotations

import math
import os
import sqlite3
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.profiles import open_store, walbuf

NAME = walbuf.vfs()
needs_vfs = pytest.mark.skipif(NAME is None, reason="the walbuf VFS is not available here")


def test_available_where_it_can_be():
    """setup.py builds the module on Linux; where Python's sqlite3 links a
    shared libsqlite3 the VFS must register, or the store would quietly
    fall back to the slow path."""
    if not sys.platform.startswith("linux"):
        pytest.skip("built on Linux only")
    if walbuf._loaded_sqlite() is None:
        pytest.skip("this Python's sqlite3 has SQLite linked in statically")
    from engine.profiles import _walbuf     # noqa: F401  (built by setup.py)
    assert NAME == "maple-walbuf"


def connect(path: str, vfs: str | None, sync: str = "FULL", cache_pages: int = 2000) -> sqlite3.Connection:
    db = sqlite3.connect(walbuf.uri(path, vfs) if vfs else path, uri=bool(vfs), isolation_level=None)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute(f"PRAGMA synchronous={sync}")
    db.execute(f"PRAGMA cache_size={cache_pages}")
    db.execute("PRAGMA wal_autocheckpoint=0")
    return db


def content(db: sqlite3.Connection) -> list[tuple]:
    return db.execute("SELECT k, v FROM t ORDER BY k").fetchall()


def blob(key: int, size: int, n: int) -> bytes:
    return bytes((key * 31 + n * 7 + i) % 251 for i in range(size))


OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 60), st.integers(0, 9000)),   # up to two overflow pages
    st.tuples(st.just("delete"), st.integers(0, 60), st.just(0)),
    st.tuples(st.sampled_from(["commit", "rollback"]), st.just(0), st.just(0)),
    st.tuples(st.just("checkpoint"), st.sampled_from(["PASSIVE", "FULL", "RESTART", "TRUNCATE"]), st.just(0)),
), max_size=60)


@needs_vfs
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, sync=st.sampled_from(["OFF", "NORMAL", "FULL"]), cache_pages=st.sampled_from([5, 2000]))
def test_same_database_as_the_default_vfs_and_every_commit_visible(ops, sync, cache_pages):
    """The same operations through the VFS and through the default one;
    after every commit a third connection (default VFS, its own file
    handle) reads the VFS's file and sees exactly what was committed.  A
    5-page cache makes SQLite spill uncommitted frames to the WAL and read
    them back in the middle of a transaction; checkpoints restart the WAL,
    so later frames overwrite earlier ones."""
    with tempfile.TemporaryDirectory() as tmp:
        a = connect(f"{tmp}/a.db", NAME, sync, cache_pages)
        b = connect(f"{tmp}/b.db", None, sync, cache_pages)
        for db in (a, b):
            db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        watcher = sqlite3.connect(f"{tmp}/a.db", isolation_level=None)
        in_tx = False
        for n, (op, arg, size) in enumerate(ops):
            if op in ("put", "delete") and not in_tx:
                for db in (a, b):
                    db.execute("BEGIN IMMEDIATE")
                in_tx = True
            if op == "put":
                for db in (a, b):
                    db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (arg, blob(arg, size, n)))
            elif op == "delete":
                for db in (a, b):
                    db.execute("DELETE FROM t WHERE k = ?", (arg,))
            elif op in ("commit", "rollback") and in_tx:
                for db in (a, b):
                    db.execute(op.upper())
                in_tx = False
                assert content(watcher) == content(b)
            elif op == "checkpoint" and not in_tx:
                for db in (a, b):
                    db.execute(f"PRAGMA wal_checkpoint({arg})").fetchone()
        if in_tx:
            for db in (a, b):
                db.execute("COMMIT")
        assert content(watcher) == content(b) == content(a)
        for db in (a, b, watcher):
            db.close()
        reopened = sqlite3.connect(f"{tmp}/a.db")
        assert reopened.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert content(reopened) == content(sqlite3.connect(f"{tmp}/b.db"))


@needs_vfs
def test_a_commit_is_a_few_writes_not_two_per_page(tmp_path):
    db = connect(str(tmp_path / "a.db"), NAME)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    wal = tmp_path / "a.db-wal"
    before, wal_before = walbuf.stats(), os.path.getsize(wal)
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(k, blob(k, 3000, 0)) for k in range(200)])
    db.execute("COMMIT")
    after = walbuf.stats()
    frames = (os.path.getsize(wal) - wal_before) // (24 + 4096)
    assert frames >= 200
    assert after["buffered"] - before["buffered"] >= 2 * frames        # every header and page kept...
    assert after["direct"] == before["direct"]
    assert after["commits"] - before["commits"] == 1
    wal_bytes = frames * (24 + 4096)
    assert after["flushes"] - before["flushes"] <= math.ceil(wal_bytes / 0x1F000) + 1   # ...and written in chunks
    assert sqlite3.connect(tmp_path / "a.db").execute("SELECT count(*) FROM t").fetchone() == (200,)


@needs_vfs
def test_the_default_vfs_is_untouched(tmp_path):
    before = walbuf.stats()
    db = connect(str(tmp_path / "plain.db"), None)
    db.execute("CREATE TABLE t (k)")
    db.execute("INSERT INTO t VALUES (1)")
    assert walbuf.stats() == before


@needs_vfs
@pytest.mark.parametrize("name", ["with space.db", "q?x=1.db", "h#ash.db", "per%20cent.db"])
def test_uri_opens_exactly_the_path(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in (str(tmp_path / name), name):            # absolute, and relative to the working directory
        db = sqlite3.connect(walbuf.uri(path, NAME), uri=True)
        db.execute("CREATE TABLE IF NOT EXISTS t (k)")
        db.commit()
        db.close()
        assert (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@needs_vfs
def test_the_store_uses_it_and_says_so(sqlite_url):
    with open_store(sqlite_url) as store:
        assert store.health().detail.endswith(f", vfs={NAME}")
    with open_store(sqlite_url, coalesce_wal=False) as store:
        assert "vfs=" not in store.health().detail


def test_without_it_the_store_opens_its_file_as_before(sqlite_url, monkeypatch):
    """No loaded libsqlite3 found (a Python with SQLite linked in), or
    MAPLE_SQLITE_WALBUF=0: the default VFS, the same file."""
    try:
        for patch in (lambda: monkeypatch.setattr(walbuf, "_loaded_sqlite", lambda: None),
                      lambda: monkeypatch.setenv("MAPLE_SQLITE_WALBUF", "0")):
            walbuf.vfs.cache_clear()
            monkeypatch.undo()
            patch()
            walbuf.vfs.cache_clear()
            assert walbuf.vfs() is None
            with open_store(sqlite_url) as store:
                assert "vfs=" not in store.health().detail
                store.apply([{"event_id": "e1", "type": "page_view", "channel": "web",
                              "timestamp": 1.8e9, "customer_id": "c1"}], now=1.8e9)
                assert store.applied("e1") == "c1"
    finally:
        monkeypatch.undo()
        walbuf.vfs.cache_clear()
        assert walbuf.vfs() == NAME


@needs_vfs
@pytest.mark.parametrize("sync", ["OFF", "FULL"])
def test_a_transaction_reads_back_the_frames_it_spilled(tmp_path, sync):
    """A transaction bigger than the page cache spills pages to the WAL
    before its commit and reads them back when it changes them again: the
    read must see the frames still in the buffer."""
    db = connect(str(tmp_path / "a.db"), NAME, sync, cache_pages=10)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    before = walbuf.stats()
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(k, blob(k, 3000, 0)) for k in range(100)])
    assert walbuf.stats()["buffered"] > before["buffered"]          # spilled before the commit
    assert [len(v) for _, v in content(db)] == [3000] * 100         # read back
    db.executemany("UPDATE t SET v = ? WHERE k = ?", [(blob(k, 2000, 1), k) for k in range(100)])
    db.execute("COMMIT")
    expected = [(k, blob(k, 2000, 1)) for k in range(100)]
    assert content(db) == expected
    db.close()
    reopened = sqlite3.connect(tmp_path / "a.db")
    assert reopened.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert content(reopened) == expected


@needs_vfs
def test_the_server_says_at_start_which_vfs_its_store_uses(sqlite_url, caplog):
    from engine.service.stored import StoredProfiles
    caplog.set_level("INFO")
    with open_store(sqlite_url) as store:
        StoredProfiles(store).check_at_start()
    assert [r.getMessage() for r in caplog.records] == [
        f"profile store {sqlite_url}: journal_mode=wal, synchronous=FULL, vfs={NAME}"]


@needs_vfs
@pytest.mark.parametrize("then", ["read", "write"])
def test_a_rolled_back_transactions_frames_never_land_on_another_writers_commit(tmp_path, then):
    """Two writers on one file (maple serve --workers 2, or an import beside
    the server): B spills frames of a transaction it then rolls back, A
    commits over that part of the WAL, and B goes on.  B's stale frames
    must not reach the file after A's commit (SQLite wrote them at once,
    while B held the write lock)."""
    path = str(tmp_path / "a.db")
    a, b = connect(path, NAME), connect(path, NAME, cache_pages=10)
    a.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    a.execute("PRAGMA wal_checkpoint(TRUNCATE)")     # nothing committed left in the WAL for B's rollback to read
    before = walbuf.stats()
    b.execute("BEGIN IMMEDIATE")
    b.executemany("INSERT INTO t VALUES (?, ?)", [(k, blob(k, 3000, 0)) for k in range(100, 200)])  # spills
    b.execute("ROLLBACK")
    assert walbuf.stats()["released"] == before["released"] + 1     # written as B gave up the write lock
    a.execute("BEGIN IMMEDIATE")
    a.executemany("INSERT INTO t VALUES (?, ?)", [(k, blob(k, 3000, 1)) for k in range(100)])
    a.execute("COMMIT")
    if then == "read":
        assert len(content(b)) == 100
    else:
        b.execute("INSERT INTO t VALUES (1000, x'00')")
    expected = [(k, blob(k, 3000, 1)) for k in range(100)] + ([] if then == "read" else [(1000, b"\0")])
    for db in (a, b):
        db.close()
    fresh = sqlite3.connect(path)
    assert fresh.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert content(fresh) == expected


TRANSACTIONS = st.lists(st.tuples(
    st.sampled_from("ab"),                                                  # whose transaction
    st.lists(st.tuples(st.integers(0, 40), st.integers(-1, 6000)), min_size=1, max_size=25),  # -1: delete
    st.sampled_from(["commit", "rollback"]),
    st.sampled_from([None, "PASSIVE", "RESTART", "TRUNCATE"]),              # then a checkpoint by the other
), max_size=12)


@needs_vfs
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(txs=TRANSACTIONS, sync=st.sampled_from(["OFF", "FULL"]))
def test_two_writers_through_the_vfs_keep_every_commit_and_nothing_else(txs, sync):
    """Two connections writing one file in turns, both through the VFS, one
    with a cache so small that its transactions spill (and some roll back):
    after every transaction the other connection reads exactly what was
    committed, and the file ends whole, holding exactly that."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/a.db"
        dbs = {"a": connect(path, NAME, sync), "b": connect(path, NAME, sync, cache_pages=10)}
        dbs["a"].execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        model: dict[int, bytes] = {}
        for n, (who, writes, end, checkpoint) in enumerate(txs):
            db, other = dbs[who], dbs["b" if who == "a" else "a"]
            pending = dict(model)
            db.execute("BEGIN IMMEDIATE")
            for k, size in writes:
                if size < 0:
                    db.execute("DELETE FROM t WHERE k = ?", (k,))
                    pending.pop(k, None)
                else:
                    pending[k] = blob(k, size, n)
                    db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (k, pending[k]))
            db.execute(end.upper())
            if end == "commit":
                model = pending
            assert content(other) == sorted(model.items())
            if checkpoint:
                other.execute(f"PRAGMA wal_checkpoint({checkpoint})").fetchone()
        for db in dbs.values():
            db.close()
        fresh = sqlite3.connect(path)
        assert fresh.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert content(fresh) == sorted(model.items())
