"""The SQLite store's writer: what it remembers between transactions, how
a transaction reads the store, and the checkpoints it leaves to a thread.

**Writer state** (:class:`WriterState`).  Most of a batch's reads ask
about customers the writer itself touched a moment ago: the same
shopper's next click, the busy customers.  :class:`WriterState` keeps,
per writer, the store's current answers for what it read or wrote last,
so a batch asks the store only about the rest:
alias key -> customer id (or "no such alias"), customer id -> the stored
profile bytes (an LRU of ``max_profiles`` holding ``max_bytes`` at most),
and the creation counter.

Profiles are kept encoded, as stored, and decoded again for each batch,
except the biggest (``decoded_min_bytes`` stored, 3 KiB as the store
sets it): the last ``max_decoded`` (100) of those written are also kept
decoded and handed to the next plan as they are, which folds into them in
place.  They are the busiest customers', whose visits, cart history and
timelines grow them to ~6 KB, and decoding costs with the size: in the
bench's month these 100 save 17 % of a batch's instructions (23.0 ->
19.2 M; keeping 1,000 of 1 KiB and up, 18.8 M).  Why so few: every full
pass of Python's garbage collector visits each float and string a kept
profile holds, at a cache miss each -- measured, 526 kept profiles made a
full pass 50-70 ms longer, 100 of the biggest ~10 ms.  Bytes and strings
alone are not tracked by the collector.  A decoded profile is only right
while the plan that got it either gets written (then :meth:`wrote` keeps
the new state) or causes :meth:`forget`: the store calls :meth:`forget`
when a plan or a transaction fails.

It may only be used while nobody else has written to the store: the store
checks that at the start of each transaction (SQLite: ``PRAGMA
data_version`` of the writing connection, which changes exactly when
another connection has committed) and calls :meth:`WriterState.check`,
which forgets everything if the store moved.  :meth:`wrote` records each
batch's writes as soon as they are made, so the next batch of the same
transaction reads them; a transaction that then does not commit leaves
the state wrong, so the store calls :meth:`forget` on every failure.

**Reads** (:class:`Reader`, the :class:`.ingest.Reader` of a transaction):
one ``IN (...)`` query each for the event ids of a batch, for the aliases
and for the profiles the writer's state does not know.

**Checkpoints** (:class:`Checkpointer`): see the class.

**The change feed's pruning** (:class:`FeedPruner`): see the class.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict, deque
from itertools import islice
from typing import Iterable, Iterator, Sequence

from .ingest import Changes
from .store import decode

CHUNK = 500                  # ids per IN (...) query


# ---------------------------------------------------------------- writer state
def _trimmed_bytes(d: dict[str, bytes], limit: int, held: int) -> tuple[dict[str, bytes], int]:
    """``(d, held)``, or if its values' bytes (``held``) pass ``limit`` the
    newest entries holding at most three quarters of ``limit``, copied, and
    their bytes: :func:`_trimmed`'s policy, counted in bytes."""
    if held <= limit:
        return d, held
    keep, total, start = limit - limit // 4, 0, len(d)
    items = list(d.items())
    while start > 0 and total + len(items[start - 1][1]) <= keep:
        start -= 1
        total += len(items[start][1])
    return dict(items[start:]), total


def _trimmed(d: dict, limit: int) -> dict:
    """``d``, or if it holds more than ``limit`` entries its newest three
    quarters of ``limit``, copied.  The writer's maps are plain dicts of
    text and bytes, which the garbage collector does not track (an
    OrderedDict always is, and each full pass then visits every key and
    value: ~12 ms for 31k aliases here, at a cache miss each); a plain dict
    keeps insertion order but evicting its oldest entry one at a time would
    scan the holes deletions leave at its front, so a quarter goes at
    once, by copying the rest."""
    if len(d) <= limit:
        return d
    keep = limit - limit // 4
    return dict(islice(d.items(), len(d) - keep, None))


#: An alias key the store does not have (cached like a known one).
MISSING = None


class WriterState:
    """The store's state as last read or written by this writer."""

    def __init__(self, max_profiles: int = 10_000, max_aliases: int = 200_000,
                 max_decoded: int = 100, decoded_min_bytes: int = 3_072, max_bytes: int = 64 * 2**20):
        self.max_profiles, self.max_aliases = max_profiles, max_aliases
        self.max_bytes = max_bytes          # the kept profiles' stored bytes, at most (as max_profiles)
        self.profile_bytes = 0              # what they hold now
        self.max_decoded, self.decoded_min_bytes = max_decoded, decoded_min_bytes
        self.version: object = None
        # Plain dicts (insertion order: least recently written first) of text and
        # bytes only, so the garbage collector does not track them (_trimmed).
        self.profiles: dict[str, bytes] = {}
        self.aliases: dict[str, str | None] = {}                  # alias key -> customer id, or MISSING
        self.decoded: OrderedDict[str, dict] = OrderedDict()        # the big ones, decoded (see wrote)
        self.seq: int | None = None

    @property
    def enabled(self) -> bool:
        return self.max_profiles > 0

    def check(self, version: object) -> None:
        """Start of a transaction: ``version`` identifies the store's state
        as others left it; if it is not the one we last saw, forget all."""
        if version != self.version:
            self.forget()
            self.version = version

    def forget(self) -> None:
        self.profiles.clear()
        self.profile_bytes = 0
        self.decoded.clear()
        self.aliases.clear()
        self.seq = None
        self.version = None

    # -- reads inside a transaction
    def split_aliases(self, keys: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        """(the known aliases among ``keys``, the keys to ask the store about)."""
        known, ask = {}, []
        cache = self.aliases
        for key in keys:
            if key in cache:
                cid = cache[key]
                if cid is not MISSING:
                    known[key] = cid
            else:
                ask.append(key)
        return known, ask

    def read_aliases(self, asked: Iterable[str], found: dict[str, str]) -> None:
        """Remember the store's answer about ``asked`` keys (``found``: the known ones)."""
        if not self.enabled:
            return
        cache = self.aliases
        for key in asked:
            cache[key] = found.get(key, MISSING)

    def split_profiles(self, customer_ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, bytes], list[str]]:
        """(the kept decoded profiles among ``customer_ids``, the stored bytes
        of the other kept ones, the ids to read).  A decoded profile is handed
        out, not copied: the plan folds into it, and the store calls
        :meth:`wrote` (or :meth:`forget`) before it is handed out again."""
        decoded, have, ask = {}, {}, []
        dicts, blobs = self.decoded, self.profiles
        for cid in customer_ids:
            profile = dicts.get(cid)
            if profile is not None:
                decoded[cid] = profile
                continue
            blob = blobs.get(cid)
            if blob is None:
                ask.append(cid)
            else:
                have[cid] = blob
        return decoded, have, ask

    # -- writes
    def wrote(self, changes: Changes, stored: dict[str, bytes], seq: int | None) -> None:
        """Record what the running transaction wrote (``stored``: customer id
        -> the profile bytes written).  The state then describes the store
        inside the transaction: if it does not commit, call :meth:`forget`."""
        if not self.enabled:
            return
        profiles, dicts = self.profiles, self.decoded
        held = self.profile_bytes
        for cid in changes.deleted:
            old = profiles.pop(cid, None)
            if old is not None:
                held -= len(old)
            dicts.pop(cid, None)
        big, new = self.decoded_min_bytes, changes.profiles
        for cid, blob in stored.items():
            old = profiles.pop(cid, None)   # to the end
            if old is not None:
                held -= len(old)
            profiles[cid] = blob
            held += len(blob)
            if len(blob) >= big and self.max_decoded:
                dicts[cid] = new[cid]
                dicts.move_to_end(cid)
            else:
                dicts.pop(cid, None)
        kept = _trimmed(profiles, self.max_profiles)
        if kept is not profiles:
            held = sum(map(len, kept.values()))
        self.profiles, self.profile_bytes = _trimmed_bytes(kept, self.max_bytes, held)
        while len(dicts) > self.max_decoded:
            dicts.popitem(last=False)
        self.aliases.update(changes.aliases)
        self.aliases = _trimmed(self.aliases, self.max_aliases)
        if seq is not None:
            self.seq = seq


# ---------------------------------------------------------------- reads
def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def rows(db: sqlite3.Connection, sql: str, keys: Sequence[str]):
    """The rows of ``sql`` (one ``IN ({})``) over ``keys``, CHUNK at a time."""
    for chunk in _chunks(keys):
        yield from db.execute(sql.format(_in(len(chunk))), chunk)


def _in(n: int) -> str:
    return ",".join("?" * n)


class Reader:
    """The store as the running transaction sees it (see ingest.Reader),
    answered from the writer's :class:`WriterState` where it can."""

    def __init__(self, db: sqlite3.Connection, state: WriterState):
        self.db, self.state = db, state
        self.seq: int | None = state.seq    # the creation counter, advanced in memory
        self.seq_moved = False

    def _rows(self, sql: str, keys: Sequence[str]):
        return rows(self.db, sql, keys)

    def seen(self, event_ids):
        return {r[0] for r in self._rows("SELECT event_id FROM events WHERE event_id IN ({})", event_ids)}

    def aliases(self, keys):
        known, ask = self.state.split_aliases(keys)
        if ask:
            found = dict(self._rows("SELECT alias, customer_id FROM aliases WHERE alias IN ({})", ask))
            self.state.read_aliases(ask, found)
            known.update(found)
        return known

    def profiles(self, customer_ids):
        decoded, have, ask = self.state.split_profiles(customer_ids)
        if ask:
            sql = "SELECT customer_id, profile FROM customers WHERE customer_id IN ({})"
            have.update(self._rows(sql, ask))
        for cid, blob in have.items():
            decoded[cid] = decode(blob)
        return decoded

    def aliases_of(self, customer_id):
        return [r[0] for r in self.db.execute("SELECT alias FROM aliases WHERE customer_id = ?", (customer_id,))]

    def next_seq(self):
        if self.seq is None:
            self.seq = self.db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]
        self.seq += 1
        self.seq_moved = True
        return self.seq

    def write_seq(self) -> None:
        """Store the counter (in the same transaction) if it moved."""
        if self.seq_moved:
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (self.seq,))


# ---------------------------------------------------------------- the change feed
#: seconds a change stays in the feed (sqlite_store.FEED): the caches poll
#: it every quarter ttl, so only a cache stalled this long misses changes
#: (it then sees the feed was pruned past it and drops every entry)
FEED_KEEP = 60.0


class FeedPruner:
    """Deletes the change feed's rows older than ``keep`` seconds, in the
    writer's own transactions.  At most once a ``every`` seconds it notes
    the feed's last row as it stands at the start of a transaction
    (committed rows only); a mark older than ``keep`` is a cut-off: rows up
    to it are deleted (never the feed's last row, so row numbers are never
    reused) and ``meta.changes_pruned`` records it, which tells a cache
    that polls from before it that it missed rows.  Marks live in the
    writer's memory: after a restart, rows written before it go once the
    new process's first mark is ``keep`` old.  Rows of other processes that
    write the file are pruned with them (they are in commit order)."""

    def __init__(self, keep: float = FEED_KEEP, every: float = 1.0, clock=time.monotonic):
        self.keep, self.every, self.clock = keep, every, clock
        self.marks: deque[tuple[float, int]] = deque()
        self._noted = float("-inf")

    def run(self, db: sqlite3.Connection) -> int:
        """(In a write transaction, before its writes.)  The rows deleted."""
        now = self.clock()
        if now - self._noted >= self.every:
            self._noted = now
            last = db.execute("SELECT max(seq) FROM changes").fetchone()[0]
            if last is not None and (not self.marks or self.marks[-1][1] != last):
                self.marks.append((now, last))
        cutoff = None
        while self.marks and self.marks[0][0] <= now - self.keep:
            cutoff = self.marks.popleft()[1]
        if cutoff is None:
            return 0
        deleted = db.execute("DELETE FROM changes WHERE seq <= ? AND seq < (SELECT max(seq) FROM changes)",
                             (cutoff,)).rowcount
        db.execute("INSERT INTO meta VALUES ('changes_pruned', ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)", (cutoff,))
        return deleted


# ---------------------------------------------------------------- checkpoints
class Checkpointer:
    """Copies the WAL back into the database file on a thread of its own.

    A checkpoint writes every page changed since the last one back to the
    database file and fsyncs it: tens of milliseconds.  Run by the writer
    (SQLite's auto-checkpoint) it lands on the acknowledgement of whichever
    batch crosses the threshold.  Here a PASSIVE checkpoint, which never
    blocks the writer, runs every ``every`` commits on its own connection
    and thread (the sqlite3 module releases the GIL while SQLite works), so
    no batch waits for it.  Durability does not depend on it: a committed
    transaction is already fsynced in the WAL.  If the thread falls behind,
    the writer's own auto-checkpoint (at a higher threshold) still bounds
    the WAL."""

    def __init__(self, db: sqlite3.Connection, every: int):
        self.every, self._db = every, db
        self._commits = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="maple-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= self.every:
            self._commits = 0
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                pass            # busy or failing: the next round (or the writer's backstop) catches up
        self._db.close()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()


__all__ = ["WriterState", "Reader", "Checkpointer", "FeedPruner", "MISSING", "rows"]
