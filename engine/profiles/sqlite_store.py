"""The default profile store: one SQLite file.

Durability: the file runs in WAL mode with ``synchronous=FULL``, so a
transaction is on disk (the WAL fsynced) when COMMIT returns, and
:meth:`SQLiteStore.apply` returns only after COMMIT: an acknowledged batch
survives a crash of the process and of the machine.  Each batch is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
processes sharing the file serialise their batches instead of failing at
commit).  Readers never wait for writers (WAL).

Tables::

    customers(customer_id PK, profile MessagePack, updated_at)
    aliases(alias PK, customer_id)          -- "email_hash:ab12" -> customer
    events(event_id PK, customer_id, applied_at)   -- the dedupe table
    meta(key PK, value)                      -- schema version, creation counter

Applied event ids are kept for good (an event older than the validator's
``max_past`` could never be accepted again, so a pruning job may delete
rows older than that; none runs yet).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import Iterator, Sequence

from .ingest import Changes, plan
from .store import Health, ProfileStore, StoreError, StoreUnavailable, decode, encode

SCHEMA_VERSION = 1
CHUNK = 500                  # ids per IN (...) query
CACHE_KIB = 64 * 1024        # page cache per connection
CHECKPOINT_PAGES = 10_000    # WAL pages (~40 MB) before a checkpoint: hot pages are copied
                             # back once for many commits instead of once for a few

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    profile     BLOB NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aliases (
    alias       TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_by_customer ON aliases (customer_id);
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    applied_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema_version', 1), ('seq', 0);
"""


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def _in(n: int) -> str:
    return ",".join("?" * n)


class _Reader:
    """The store as the running transaction sees it (see ingest.Reader)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.seq: int | None = None         # the creation counter, advanced in memory

    def _rows(self, sql: str, keys: Sequence[str]):
        for chunk in _chunks(keys):
            yield from self.db.execute(sql.format(_in(len(chunk))), chunk)

    def seen(self, event_ids):
        return {r[0] for r in self._rows("SELECT event_id FROM events WHERE event_id IN ({})", event_ids)}

    def aliases(self, keys):
        return dict(self._rows("SELECT alias, customer_id FROM aliases WHERE alias IN ({})", keys))

    def profiles(self, customer_ids):
        sql = "SELECT customer_id, profile FROM customers WHERE customer_id IN ({})"
        return {cid: decode(text) for cid, text in self._rows(sql, customer_ids)}

    def aliases_of(self, customer_id):
        return [r[0] for r in self.db.execute("SELECT alias FROM aliases WHERE customer_id = ?", (customer_id,))]

    def next_seq(self):
        if self.seq is None:
            self.seq = self.db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]
        self.seq += 1
        return self.seq

    def write_seq(self) -> None:
        """Store the counter (in the same transaction) if it moved."""
        if self.seq is not None:
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (self.seq,))


class SQLiteStore(ProfileStore):
    """Profiles in one SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: str, *, create: bool = True, timeout: float = 10.0, **options):
        super().__init__(f"sqlite://{path}", **options)
        self.path = path
        if not create and not os.path.exists(path):
            raise StoreError(f"no profile store at {self.url} (the file does not exist)")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        try:
            self._db = self._connect(timeout)
            self._db.executescript(SCHEMA)
            self._check_version()
            self._reader_db = self._connect(timeout)
        except sqlite3.Error as err:
            raise StoreUnavailable(f"{self.url}: {err}") from err

    @classmethod
    def from_url(cls, url: str, **options) -> "SQLiteStore":
        path = url[len("sqlite://"):]
        if not path:
            raise StoreError(f"{url!r} names no file: use sqlite:///path/to/file.db")
        return cls(path, **options)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.url}: cannot switch to WAL mode (journal_mode={mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        return db

    def _check_version(self) -> None:
        version = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.url}: profile store schema version {version}, "
                             f"this Maple reads version {SCHEMA_VERSION}")

    # -- writes
    def _commit(self, events) -> Changes:
        with self._write_lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    reader = _Reader(db)
                    changes = plan(events, reader, self.fold_config)
                    reader.write_seq()
                    self._write(db, changes)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"{self.url}: {err}; nothing was acknowledged") from err
            return changes

    def _write(self, db: sqlite3.Connection, changes: Changes) -> None:
        now = self.clock()
        if changes.deleted:
            db.executemany("DELETE FROM customers WHERE customer_id = ?", [(c,) for c in changes.deleted])
        db.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?, ?)",
                       [(cid, encode(p), now) for cid, p in changes.profiles.items()])
        db.executemany("INSERT OR REPLACE INTO aliases VALUES (?, ?)", list(changes.aliases.items()))
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(e, c, now) for e, c in changes.applied])

    # -- reads
    def _one(self, sql: str, args: tuple):
        with self._read_lock:
            try:
                return self._reader_db.execute(sql, args).fetchone()
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"{self.url}: {err}") from err

    def get(self, customer_id: str) -> dict | None:
        row = self._one("SELECT profile FROM customers WHERE customer_id = ?", (customer_id,))
        if row is None:
            cid = self.resolve("customer_id", customer_id)
            if cid is None or cid == customer_id:
                return None
            row = self._one("SELECT profile FROM customers WHERE customer_id = ?", (cid,))
        return decode(row[0]) if row else None

    def resolve(self, kind: str, value: str) -> str | None:
        row = self._one("SELECT customer_id FROM aliases WHERE alias = ?", (f"{kind}:{value}",))
        return row[0] if row else None

    def applied(self, event_id: str) -> str | None:
        row = self._one("SELECT customer_id FROM events WHERE event_id = ?", (event_id,))
        return row[0] if row else None

    def count(self, table: str) -> int:
        if table not in ("customers", "aliases", "events"):
            raise ValueError(table)
        return self._one(f"SELECT count(*) FROM {table}", ())[0]

    def health(self) -> Health:
        try:
            mode = self._one("PRAGMA journal_mode", ())[0]
            sync = self._one("PRAGMA synchronous", ())[0]
        except (StoreUnavailable, sqlite3.Error) as err:
            return Health(False, self.url, str(err), None)
        durable = mode == "wal" and sync >= 2
        return Health(True, self.url, f"journal_mode={mode}, synchronous={'FULL' if sync == 2 else sync}",
                      durable)

    def close(self) -> None:
        for db in (getattr(self, "_db", None), getattr(self, "_reader_db", None)):
            if db is not None:
                db.close()


__all__ = ["SQLiteStore"]
