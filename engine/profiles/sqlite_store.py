"""The default profile store: one SQLite file.

Durability: the file runs in WAL mode with ``synchronous=FULL``, so a
transaction is on disk (the WAL fsynced) when COMMIT returns, and
:meth:`SQLiteStore.apply` returns only after the COMMIT of the transaction
holding its batch: an acknowledged batch survives a crash of the process
and of the machine.  Transactions are ``BEGIN IMMEDIATE`` (the write lock
is taken up front, so two processes sharing the file serialise their
batches instead of failing at commit).  Readers never wait for writers (WAL).

The write path, per transaction:

* group commit (:class:`.ingest.GroupCommit`): the batches of callers
  that arrive while a transaction runs are committed together in the next
  one, each acknowledged only after that COMMIT;
* the writer's state (:class:`.sqlite_writer.WriterState`): the aliases
  and profile bytes it read or wrote last are answered from memory,
  checked against ``PRAGMA data_version`` at the start of each transaction;
* one ``IN (...)`` query each for the event ids, aliases and profiles not
  known, ``executemany`` for the writes, profiles updated in place
  (:data:`UPSERT_PROFILE`);
* checkpoints run on a thread of their own
  (:class:`.sqlite_writer.Checkpointer`), off the acknowledgement path;
* the file is opened through the store's VFS (:mod:`.walbuf`), which writes
  a commit's WAL frames in a few system calls instead of two per page
  (``coalesce_wal=False`` or ``MAPLE_SQLITE_WALBUF=0``: SQLite's default).

Tables, version 2 (:func:`prepare` creates them, and upgrades version 1)::

    customers(id INTEGER PK, customer_id UNIQUE, profile MessagePack, updated_at)
    aliases(alias PK, customer_id)                 -- "email_hash:ab12" -> customer
    events(event_id PK, customer_id, applied_at)   -- the dedupe table,
                                                   -- indexed by applied_at (pruning)
    meta(key PK, value)                            -- schema version, creation counter,
                                                   -- how far the change feed was pruned
    changes(seq PK, key)                           -- the change feed, written by triggers
                                                   -- (FEED; not part of the schema version)

Why ``customers`` is a rowid table (it was ``WITHOUT ROWID`` in version 1):
a profile is ~0.5-4 KB, and a WITHOUT ROWID table keeps at most ~1 KB of a
row on its B-tree page (a quarter of the page), spilling the rest to
overflow pages, which are freed and allocated again on every rewrite.  A
rowid table keeps rows up to ~4 KB on the page, and the batch updates each
profile in place (``ON CONFLICT DO UPDATE``) without touching the
customer_id index.  Each page a transaction changes is one more frame the
commit writes to the WAL: this layout writes ~15 % fewer frames per batch.

Applied event ids are kept for the validator's ``dedupe_horizon`` (401
days and an hour: a copy of an event can be accepted that long after the
first): :meth:`SQLiteStore.prune_applied` deletes older ones, a few
thousand rows a transaction, through the ``events_by_applied_at`` index;
``maple serve`` runs it once a day (:mod:`engine.service.retention`), and
``maple profile prune`` runs it by hand.  The index is not part of the
schema version: a file without it (made before it existed) gets it when
opened, and a Maple that does not know it keeps it up to date all the
same (SQLite maintains every index of a table it writes).
"""
from __future__ import annotations

import functools
import os
import sqlite3
import threading
from typing import Sequence

from .ingest import Changes, GroupCommit, Ticket, plan
from .sqlite_writer import Checkpointer, FeedPruner, Reader, WriterState, rows as _rows
from . import walbuf
from .store import Feed, Health, ProfileStore, StoreError, StoreUnavailable, decode, encode, own_alias

CACHE_KIB = 16 * 1024        # page cache per connection, three a store (reads, writes, checkpoints): at
                             # 100,000 customers 64 MiB read and wrote no faster (the OS caches the file,
                             # and another process's commit empties a WAL connection's cache); 8 was no
                             # slower for groups of 1,000 events either (docs/service.md, "What a worker holds")
WRITER_CACHE = 20_000        # stored profiles the writer keeps between batches (WriterState)
WRITER_CACHE_BYTES = 64 * 2**20  # and their stored bytes, at most (~22 MiB for 20,000 of a month's profiles)
WRITER_DECODED = 100         # of those, the big ones (>= DECODED_MIN_BYTES stored) it keeps decoded:
DECODED_MIN_BYTES = 3_072    # ~30 KiB of memory each; each adds to a full GC pass (sqlite_writer)
GROUP_EVENTS = 1_000         # events of concurrent callers committed in one transaction, at most
CHECKPOINT_EVERY = 32        # commits between two background checkpoints (Checkpointer); 0: none
CHECKPOINT_PAGES = 10_000    # WAL pages (~40 MB) before a checkpoint by the writer itself: without
                             # the background thread, or as its backstop (x4) if it falls behind


# ---------------------------------------------------------------- tables
SCHEMA_VERSION = 2

TABLES = """
CREATE TABLE IF NOT EXISTS customers (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    profile     BLOB NOT NULL,
    updated_at  REAL NOT NULL
);
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
CREATE INDEX IF NOT EXISTS events_by_applied_at ON events (applied_at);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: Version 1 -> 2: customers becomes a rowid table (same columns, plus id).
UPGRADE_1_TO_2 = """
ALTER TABLE customers RENAME TO customers_v1;
CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    profile     BLOB NOT NULL,
    updated_at  REAL NOT NULL
);
INSERT INTO customers (customer_id, profile, updated_at)
    SELECT customer_id, profile, updated_at FROM customers_v1;
DROP TABLE customers_v1;
UPDATE meta SET value = 2 WHERE key = 'schema_version';
"""

#: The change feed: one row per key a transaction changed, written by
#: triggers (so every writer of the file feeds it, whatever its version),
#: read by each process's profile cache (:meth:`SQLiteStore.changes_since`,
#: ``CachedStore.sync``) to drop what another process changed, and pruned
#: by the writers a minute after (:class:`.sqlite_writer.FeedPruner`).
#: Keys are alias keys: ``customer_id:<id>`` for a profile written or
#: deleted, ``<kind>:<value>`` for an identifier (re)pointed.  Not part of
#: the schema version: a file made before it gets it when opened.  ``seq``
#: is a rowid (the largest + 1); the pruner never deletes the largest, so
#: numbers are never reused.
FEED = [
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, key TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS changes_customer_inserted AFTER INSERT ON customers BEGIN "
    "INSERT INTO changes (key) VALUES ('customer_id:' || NEW.customer_id); END",
    "CREATE TRIGGER IF NOT EXISTS changes_customer_updated AFTER UPDATE ON customers BEGIN "
    "INSERT INTO changes (key) VALUES ('customer_id:' || NEW.customer_id); END",
    "CREATE TRIGGER IF NOT EXISTS changes_customer_deleted AFTER DELETE ON customers BEGIN "
    "INSERT INTO changes (key) VALUES ('customer_id:' || OLD.customer_id); END",
    "CREATE TRIGGER IF NOT EXISTS changes_alias_written AFTER INSERT ON aliases BEGIN "
    "INSERT INTO changes (key) VALUES (NEW.alias); END",
]

#: Rows of the change feed one read returns at most; past them the read
#: says it is incomplete (the cache then trusts only what it fetches next).
FEED_ROWS = 10_000

#: Pruning the dedupe table reads it by age (a file made before this index
#: existed gets it when opened: one scan of the table, once).
EVENTS_BY_APPLIED_AT = "CREATE INDEX IF NOT EXISTS events_by_applied_at ON events (applied_at)"

#: Rows deleted per pruning transaction: each holds the write lock for a few
#: milliseconds, so event batches keep committing between them.
PRUNE_ROWS = 5_000

#: Writes one profile: updated in place when the customer exists.
UPSERT_PROFILE = ("INSERT INTO customers (customer_id, profile, updated_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (customer_id) DO UPDATE SET profile = excluded.profile, "
                  "updated_at = excluded.updated_at")


#: Event ids are inserted EVENT_ROWS to a statement (``INSERT ... VALUES (...), (...)``):
#: one step of one statement instead of executemany's step, reset and Python
#: round per row (~2,300 instructions an event less).  A batch of 100 reuses one
#: cached statement; 300 parameters stay far inside SQLite's limit (999 before 3.32).
#: OR FAIL: a statement that writes many rows and may ABORT keeps a statement
#: journal of every page it changes, which spills to a temporary file past 64 KiB
#: (~1 ms of kernel time a batch, invisible to instruction counts).  FAIL keeps
#: none; a failure (none can happen: the plan drops known and repeated ids) rolls
#: the whole transaction back anyway, as it did one row per statement.
EVENT_ROWS = 100


@functools.lru_cache(maxsize=EVENT_ROWS)
def _insert_events(n: int) -> str:
    return "INSERT OR FAIL INTO events VALUES " + ", ".join(["(?, ?, ?)"] * n)


class SchemaError(Exception):
    """A file this version of Maple cannot read."""


def _version(db: sqlite3.Connection) -> int | None:
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else None


def prepare(db: sqlite3.Connection) -> None:
    """Make the file behind ``db`` (autocommit mode) a current profile
    store: create it, or upgrade it, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)
        if version is None:
            for statement in TABLES.split(";"):        # (executescript would COMMIT first)
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('seq', 0)", (SCHEMA_VERSION,))
        elif version == 1:
            for statement in UPGRADE_1_TO_2.split(";"):
                if statement.strip():
                    db.execute(statement)
        elif version != SCHEMA_VERSION:
            raise SchemaError(f"profile store schema version {version}, "
                              f"this Maple reads version {SCHEMA_VERSION}")
        db.execute(EVENTS_BY_APPLIED_AT)         # files made before the index existed
        for statement in FEED:                   # and before the change feed
            db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@functools.lru_cache(maxsize=1)
def _status64():
    """``sqlite3_status64`` of the SQLite the ``sqlite3`` module runs on
    (looked up through ``_sqlite3``'s own handle, so a module linked
    statically or against its own copy is asked, not the system's), or
    None where it cannot be found."""
    import ctypes
    import _sqlite3
    try:
        fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_status64
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def memory_used() -> int | None:
    """Bytes SQLite holds in this process now (``SQLITE_STATUS_MEMORY_USED``:
    every connection's page cache, schema and statements), or None where
    SQLite does not say (``maple_sqlite_memory_bytes``)."""
    import ctypes
    fn = _status64()
    if fn is None:
        return None
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    if fn(0, ctypes.byref(current), ctypes.byref(highest), 0) != 0:        # SQLITE_OK
        return None
    return current.value


# ---------------------------------------------------------------- the store
class SQLiteStore(ProfileStore):
    """Profiles in one SQLite file (WAL, synchronous=FULL)."""

    keeps_dedupe_rows = True    # they stay until prune_applied deletes them (engine.service.retention)
    has_change_feed = True      # FEED: every writer's changes, for other processes' caches

    def __init__(self, path: str, *, create: bool = True, timeout: float = 10.0,
                 writer_cache: int = WRITER_CACHE, writer_decoded: int = WRITER_DECODED,
                 decoded_min_bytes: int = DECODED_MIN_BYTES, checkpoint_every: int = CHECKPOINT_EVERY,
                 coalesce_wal: bool = True, cache_kib: int = CACHE_KIB, **options):
        super().__init__(f"sqlite://{path}", **options)
        self.path = path
        self._cache_kib = cache_kib
        self._state = WriterState(max_profiles=writer_cache, max_bytes=WRITER_CACHE_BYTES,
                                  max_decoded=writer_decoded, decoded_min_bytes=decoded_min_bytes)
        if not create and not os.path.exists(path):
            raise StoreError(f"no profile store at {self.url} (the file does not exist)")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._group: GroupCommit[Changes] = GroupCommit(self._commit_group, GROUP_EVENTS)
        self._autocheckpoint = 4 * CHECKPOINT_PAGES if checkpoint_every else CHECKPOINT_PAGES
        self._feed_pruner = FeedPruner()
        self._vfs = walbuf.vfs() if coalesce_wal else None
        try:
            self._db = self._connect(timeout)
            prepare(self._db)
            self._reader_db = self._connect(timeout)
            self._checkpointer = Checkpointer(self._connect(timeout), checkpoint_every) \
                if checkpoint_every else None
        except SchemaError as err:
            self.close()
            raise StoreError(f"{self.url}: {err}") from err
        except sqlite3.Error as err:
            self.close()
            raise StoreUnavailable(f"{self.url}: {err}") from err

    @classmethod
    def from_url(cls, url: str, **options) -> "SQLiteStore":
        path = url[len("sqlite://"):]
        if not path:
            raise StoreError(f"{url!r} names no file: use sqlite:///path/to/file.db")
        return cls(path, **options)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self._vfs is not None:       # the WAL's frames written in one call per commit (walbuf)
            db = sqlite3.connect(walbuf.uri(self.path, self._vfs), uri=True, timeout=timeout,
                                 isolation_level=None, check_same_thread=False)
        else:
            db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.url}: cannot switch to WAL mode (journal_mode={mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{int(self._cache_kib)}")
        db.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
        return db

    # -- writes
    def _commit(self, events) -> Changes:
        return self._group.submit(events, len(events))

    def _commit_group(self, tickets: Sequence[Ticket[Changes]]) -> None:
        """ONE transaction for the batches of concurrent callers (see
        :class:`.ingest.GroupCommit`).  Each batch is planned (reads only), its
        profiles encoded, and then written; a batch whose plan or encoding
        fails is left out alone (its caller gets the error, the others go on),
        a failed write fails the whole transaction.  Nothing is settled as a
        success before COMMIT has returned."""
        db, state = self._db, self._state
        planned = []
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    state.check(db.execute("PRAGMA data_version").fetchone()[0])
                    self._feed_pruner.run(db)
                    reader = Reader(db, state)
                    for t in tickets:
                        changes = self._plan_one(reader, t)
                        stored = self._encode_one(t, changes) if changes is not None else None
                        if stored is not None:
                            self._write(db, changes, stored)
                            state.wrote(changes, stored, reader.seq)   # the group's next batch reads it
                            planned.append((t, changes))
                    reader.write_seq()
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except BaseException as err:
                state.forget()          # it learnt about writes that are not committed
                for t in tickets:
                    if not t.done:
                        t.fail(self._failure(err))
                return
        for t, changes in planned:
            t.succeed(changes)
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _plan_one(self, reader: Reader, ticket: Ticket[Changes]) -> Changes | None:
        """One batch's plan.  If planning fails (a bug: it only reads, so
        nothing was written), that batch's caller gets the error and the
        group goes on.  A failure of SQLite itself fails the whole group: it
        may have rolled the transaction back, and writing on would then
        commit statement by statement."""
        try:
            changes = plan(ticket.work, reader, self.fold_config)
        except sqlite3.Error:
            raise
        except Exception as err:
            self._state.forget()    # the plan may have folded into profiles the state hands out
            ticket.fail(self._failure(err))
            return None
        if not reader.db.in_transaction:
            raise sqlite3.OperationalError("the transaction was rolled back")
        return changes

    def _encode_one(self, ticket: Ticket[Changes], changes: Changes) -> dict[str, bytes] | None:
        """The batch's profiles as stored, before anything of it is written:
        a profile the codec cannot write (a bug; e.g. an integer past int64)
        fails its own caller, not the group's other batches."""
        try:
            return {cid: encode(p) for cid, p in changes.profiles.items()}
        except Exception as err:
            self._state.forget()    # the plan may have folded into profiles the state hands out
            ticket.fail(self._failure(err))
            return None

    def _failure(self, err: BaseException) -> BaseException:
        if isinstance(err, sqlite3.OperationalError):
            return StoreUnavailable(f"{self.url}: {err}; nothing was acknowledged")
        return err

    def _write(self, db: sqlite3.Connection, changes: Changes, stored: dict[str, bytes]) -> None:
        """Write ``changes``, its profiles as ``stored`` (encoded)."""
        now = self.clock()
        if changes.deleted:
            db.executemany("DELETE FROM customers WHERE customer_id = ?", [(c,) for c in changes.deleted])
        # bound as bytearray: the sqlite3 module binds int, float, str and bytearray
        # as they are but offers bytes to its adapters first (~2,000 instructions a
        # profile, two failed attribute lookups); the copy costs far less.  Same blob.
        db.executemany(UPSERT_PROFILE, [(cid, bytearray(blob), now) for cid, blob in stored.items()])
        db.executemany("INSERT OR REPLACE INTO aliases VALUES (?, ?)", list(changes.aliases.items()))
        applied = changes.applied
        for i in range(0, len(applied), EVENT_ROWS):
            chunk = applied[i:i + EVENT_ROWS]
            db.execute(_insert_events(len(chunk)), [x for e, c in chunk for x in (e, c, now)])

    # -- retention
    def _prune_cutoff(self, now: float | None) -> float:
        """Rows applied before this are past the dedupe horizon."""
        return (self.clock() if now is None else now) - self.validation.dedupe_horizon

    def prunable(self, now: float | None = None) -> int:
        """How many dedupe rows :meth:`prune_applied` would delete now (a
        count over the index)."""
        return self._one("SELECT count(*) FROM events WHERE applied_at < ?", (self._prune_cutoff(now),))[0]

    def prune_applied(self, now: float | None = None, chunk: int = PRUNE_ROWS, progress=None,
                      stop: threading.Event | None = None) -> int:
        """Delete the dedupe rows of events applied more than the
        validator's ``dedupe_horizon`` before ``now`` (default: the store's
        clock): no copy of those events can be accepted any more (see
        ValidationConfig.dedupe_horizon).  ``chunk`` rows a transaction,
        each taking the write lock as an event batch does; ``progress``
        (rows deleted so far) is called after each; once ``stop`` is set,
        no further transaction starts.  Returns the rows deleted."""
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        cutoff = self._prune_cutoff(now)
        total = 0
        while stop is None or not stop.is_set():
            with self._write_lock:
                db = self._db
                try:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        n = db.execute("DELETE FROM events WHERE event_id IN (SELECT event_id FROM events "
                                       "WHERE applied_at < ? LIMIT ?)", (cutoff, chunk)).rowcount
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                except sqlite3.OperationalError as err:
                    raise StoreUnavailable(f"{self.url}: {err}; pruning stopped after {total} rows") from err
            total += n
            if self._checkpointer is not None:
                self._checkpointer.committed()
            if progress is not None and n:
                progress(total)
            if n < chunk:
                break
        return total

    # -- reads
    def _one(self, sql: str, args: tuple):
        with self._read_lock:
            try:
                return self._reader_db.execute(sql, args).fetchone()
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"{self.url}: {err}") from err

    def get(self, customer_id: str) -> dict | None:
        raw = self.get_encoded(customer_id)
        return None if raw is None else decode(raw)

    def get_encoded(self, customer_id: str) -> bytes | None:
        row = self._one("SELECT profile FROM customers WHERE customer_id = ?", (customer_id,))
        if row is None:
            cid = self.resolve("customer_id", customer_id)
            if cid is None or cid == customer_id:
                return None
            row = self._one("SELECT profile FROM customers WHERE customer_id = ?", (cid,))
        return row[0] if row else None

    def get_many_encoded(self, customer_ids: Sequence[str]) -> dict[str, bytes | None]:
        """As ``get_encoded`` for each id, in one read transaction (one state
        of the file for all): the profiles by id, then the merged-away ids
        among the rest through their own alias, then their survivors'
        profiles, one ``IN (...)`` query each."""
        ids = list(dict.fromkeys(customer_ids))
        with self._read_lock:
            db = self._reader_db
            try:
                db.execute("BEGIN")
                try:
                    blobs = dict(_rows(db, "SELECT customer_id, profile FROM customers WHERE customer_id IN ({})",
                                       ids))
                    own = {own_alias(c): c for c in ids if c not in blobs}
                    moved = {own[alias]: cid for alias, cid in _rows(
                        db, "SELECT alias, customer_id FROM aliases WHERE alias IN ({})", list(own))
                        if cid != own[alias]}
                    wanted = [cid for cid in dict.fromkeys(moved.values()) if cid not in blobs]
                    blobs.update(_rows(db, "SELECT customer_id, profile FROM customers WHERE customer_id IN ({})",
                                       wanted))
                finally:
                    db.execute("COMMIT")
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"{self.url}: {err}") from err
        return {cid: blobs.get(moved.get(cid, cid)) for cid in ids}

    def changes_since(self, position: int | None) -> Feed:
        """The change feed (:data:`FEED`) after ``position``, in one read
        transaction: the keys of the rows after it and the last row's
        number; incomplete for None, when the pruner deleted rows past it
        (``meta.changes_pruned``), and past FEED_ROWS rows (reading and
        dropping them would hold the reader and the cache up)."""
        with self._read_lock:
            db = self._reader_db
            try:
                db.execute("BEGIN")
                try:
                    row = db.execute("SELECT value FROM meta WHERE key = 'changes_pruned'").fetchone()
                    pruned = row[0] if row else 0
                    last = db.execute("SELECT max(seq) FROM changes").fetchone()[0]
                    head = max(pruned, last or 0)
                    if position is None or position < pruned or position > head:
                        return Feed(head, [], False)    # (past the head: another file, or rows reused)
                    rows = db.execute("SELECT key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                                      (position, FEED_ROWS + 1)).fetchall()
                    if len(rows) > FEED_ROWS:           # (a bulk import): cheaper to trust nothing held
                        return Feed(head, [], False)
                finally:
                    db.execute("COMMIT")
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"{self.url}: {err}") from err
        return Feed(head, [r[0] for r in rows], True)

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
        detail = f"journal_mode={mode}, synchronous={'FULL' if sync == 2 else sync}"
        if self._vfs is not None:
            detail += f", vfs={self._vfs}"
        return Health(True, self.url, detail, durable)

    def close(self) -> None:
        checkpointer = getattr(self, "_checkpointer", None)
        if checkpointer is not None:
            checkpointer.close()
            self._checkpointer = None
        for db in (getattr(self, "_db", None), getattr(self, "_reader_db", None)):
            if db is not None:
                db.close()


__all__ = ["SQLiteStore"]
