"""A cache of hot profiles in front of a store, and what happens when the
store is down.

:class:`CachedStore` wraps any :class:`~.store.ProfileStore`:

* **Fresh reads** come from the cache: an entry is served without asking the
  store while it is younger than ``ttl`` seconds (default 1 s).
* **Writes from this process** (``apply``) invalidate the entries of every
  customer they touched, including merged-away ids and any alias the
  profile was cached under, and of every identifier they (re)pointed (a
  loyalty card read as unknown finds its customer once an event links it),
  so this process reads its own writes.
* **Other replicas' writes** are seen once the entry expires: a replica
  serves a profile at most ``ttl`` seconds older than the store.  That is
  the staleness bound, and it holds with any number of replicas on Redis.
  (A fetch that races a local write is not cached: a generation counter
  drops it.)
* **Unless the store has a change feed** (SQLite: every process writing
  the file feeds it, see ``sqlite_store.FEED``; Redis: each batch's script
  appends to a stream): then :meth:`sync`, run every quarter ``ttl`` (at
  most a second apart) by :meth:`start_sync`'s thread, drops the entries
  of what other processes changed, and an entry stays valid until it is
  changed, for as long as the last sync is younger than ``ttl``: the same
  staleness bound, with entries living past one ``ttl`` (up to
  ``feed_max_age``, 60 s, a backstop).  A sync that fails, or stops,
  leaves the entries to expire as without a feed.
* **Store down** (:class:`~.store.StoreUnavailable`): reads are answered from
  the cache, expired entries included, marked ``degraded`` with the reason;
  a customer not in the cache reads as missing (so decisions use defaults),
  also marked degraded.  For ``retry_after`` seconds after a failure, reads
  do not even try the store (a dead store costs a failed connect, not one
  per request); then the next read tries again and, if the store answers,
  the cache is healthy again: recovery needs no restart.  Writes always go to
  the store and raise StoreUnavailable while it is down.  An outage logs one
  WARNING when it starts (with the reason) and one INFO when the store
  answers again (with how long it was down), not one line per request.  A
  store already down when it was opened is logged by its opener
  (:meth:`down_at_start`), and only its end here.

**Memory the garbage collector does not walk.**  A decoded profile is a
few dozen containers holding hundreds of floats and strings, and every full
pass of Python's collector visits each of them (a cache of 20k decoded
profiles made one pass take ~0.4 s here, a pause for whichever request
triggered it).  An entry past ``ttl`` only serves the store-down fallback,
so each fetch also re-holds the decoded profiles fetched more than ``ttl``
ago as their encoded bytes (:meth:`_Entries.settle`), which the collector
does not track; the fallback decodes them again.  Decoded entries are thus
bounded by the fetches of one ``ttl`` (and by ``maxsize``).

**Two bounds.**  At most ``maxsize`` entries (``--profile-cache-size``)
and at most ``max_bytes`` of them as :func:`held_size` counts an entry
(``--profile-cache-mib``, 256 MiB by default): its bytes, ~4x while held
decoded, and ~300 bytes of bookkeeping.  An entry count alone does not
bound memory: a profile grows with its customer up to the fold's caps,
from ~0.5 KB for a month's events to tens of KB.  Past either bound the
least recently fetched entries go first.

With a change feed, an entry held encoded still answers while valid: it
is decoded for each read (msgpack's ~3 µs), which still spares the store's
read.

**Profiles as the rules see them.**  The cache holds each profile without
the fold's bookkeeping (``_fold`` and any other top-level key starting
with ``_``, as ``fold.public``): no rule, no decision and no log reads it,
and it is half of a stored profile's bytes and objects.  The store's bytes
are cut (``store.public_bytes``, compiled: the entries skipped, nothing
decoded) before they are decoded or held, so a fetch decodes, and an
entry keeps, half as much.  The cache serves only decisions: writes read
their profiles from the store itself.

**How often the cache answers** (:attr:`CachedStore.reads`, what
``maple_profile_cache_reads_total`` exports): each read for a decision is
counted once by where its answer came from.  ``hit``: a fresh entry (a
known miss included), the store not asked; ``miss``: the store was asked
(:meth:`read`'s fetch); ``stale``: the store is down, or failed this read,
and the answer is an expired entry or nothing (degraded).  ``prefetched``
counts the ids :meth:`prefetch` fetched and cached for a DecideBatch; its
items are then read from fresh entries and counted as hits, so the share
of reads the store was spared is ``(hit - prefetched) / (hit + miss +
stale)`` (a little low when batch items were refused before reading their
profile: their ids were fetched, not read).
The counts are kept without a lock where the read takes none
(:meth:`fresh`, the compiled Decide's ``stored_hit``): a figure for a
ratio, not an audit.

The clock is injected (``clock``, monotonic seconds), so expiry and
recovery are tested without sleeping.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, NamedTuple, Sequence

from cachetools import Cache

from .store import (BatchResult, Health, ProfileStore, StoreUnavailable, decode, encode, public_bytes,
                    without_bookkeeping)


log = logging.getLogger(__name__)

STALE = object()        # CachedStore.fresh: not answerable from the cache alone
# CachedStore.reads: the index of each count (what maple_profile_cache_reads_total labels "result")
HIT, MISS, STALE_READ, PREFETCHED = range(4)
READ_RESULTS = ("hit", "miss", "stale", "prefetched")
# CachedStore.feed: the index of each count (maple_profile_cache_feed_total's "event")
SYNCED, SYNC_FAILED, FEED_MISSED, FEED_DROPPED = range(4)
FEED_EVENTS = ("synced", "failed", "missed", "dropped")
FEED_MAX_AGE = 60.0     # seconds an entry may live on the change feed's word (CachedStore.feed_max_age)
SYNC_EVERY_MAX = 1.0    # seconds between two syncs at most (start_sync: a quarter ttl, or this)
MAX_BYTES = 256 * 2**20     # the entries' memory as held_size counts it (CachedStore.max_bytes; --profile-cache-mib)
MAX_ENTRIES = 100_000       # entries at most (CachedStore.maxsize; --profile-cache-size)
TTL = 1.0                   # seconds an entry is served without the feed's word (CachedStore.ttl; --profile-cache-ttl)


class ProfileRead(NamedTuple):
    """A profile and where it came from.  (A tuple: made on every read
    that misses, at half a frozen dataclass's cost.)"""
    profile: dict | None
    source: str                     # "store" | "cache" | "none"
    degraded: bool = False
    reason: str | None = None       # why degraded
    age: float | None = None        # seconds since the profile was read from the store


def _profile(held) -> dict | None:
    """A cached profile as held (a dict, None, or encoded bytes) -> the profile."""
    return decode(held) if type(held) is bytes else held


class _Entries(Cache):
    """The cache of (profile, fetched_at, its customer id), evicting the
    least recently *fetched* entry, plus an index from each profile's
    customer id to the keys it is cached under (ids and aliases).  The
    profile is held decoded while young and as its encoded bytes once
    :meth:`settle` has seen it pass ``ttl`` (see CachedStore).

    Not cachetools' LRUCache: its order is an OrderedDict, whose linked
    nodes every full pass of the garbage collector walks one by one (20k
    entries: ~13 ms of each pass, ~65 ms at the default 100k).  Here the
    order is the insertion order of cachetools' plain dict: a fetch puts its
    entry last, and :meth:`popitem` (MutableMapping's) takes the first.  A
    read of a young entry does not move it, but a customer still being read
    is fetched again every ``ttl`` (with a change feed: when changed, and at
    least every ``feed_max_age``) and so stays near the end: least recently
    used, to within that time.  The index holds one key as itself (a str,
    or an identifier's (kind, value) pair) and a set only for a customer
    cached under several (sets are objects
    the collector visits too)."""

    __slots__ = ("table",)          # (cachetools' Cache has a __dict__ for the rest)

    def __init__(self, maxsize: int, max_bytes: int | None = None):
        super().__init__(maxsize)
        #: the entries' memory as :func:`held_size` counts it, and its bound (None: none)
        self.held_bytes = 0
        self.max_bytes = max_bytes
        # cachetools keeps the entries in one dict (Cache.__data), made once and
        # never replaced: the decision path's reads look a key up in it directly,
        # one dict lookup instead of Cache.get's three Python calls (a test holds
        # it to Cache's own view; None if a cachetools release renames it)
        self.table: dict | None = getattr(self, "_Cache__data", None)
        self.keys_of: dict[str, object] = {}        # customer id -> a key (str or (kind, value)), or a set
        self.young: deque[tuple[str, float]] = deque()     # (key, fetched_at) of decoded entries, oldest first

    def put(self, key: str, profile: dict | None, at: float, encoded: bytes | None = None) -> None:
        """``encoded``: the profile as the store holds it, if the store handed
        it out; :meth:`settle` keeps it instead of encoding the profile."""
        cid = profile.get("customer_id", key) if profile is not None else key
        # (held_size inlined, and cachetools' dict read directly: this runs on every miss)
        table = self.table
        old = table.get(key) if table is not None else Cache.get(self, key)
        if old is not None:
            held = old[0]
            self.held_bytes -= ENTRY_BYTES + (len(held) if type(held) is bytes else 0 if held is None else
                                              DECODED_FACTOR * len(old[3]) if old[3] is not None else DECODED_GUESS)
            Cache.__delitem__(self, key)              # last in the order again: fetched just now
        self.held_bytes += ENTRY_BYTES if profile is None else ENTRY_BYTES + (
            DECODED_FACTOR * len(encoded) if encoded is not None else DECODED_GUESS)
        Cache.__setitem__(self, key, (profile, at, cid, encoded))    # past maxsize: popitem, which counts
        if self.max_bytes is not None:
            while self.held_bytes > self.max_bytes and len(self) > 1:
                self.popitem()                        # the least recently fetched, never this one
        if profile is not None:
            keys = self.keys_of.get(cid)
            if keys is None or keys == key:
                self.keys_of[cid] = key
            elif type(keys) is not set:                  # one key: a str, or an identifier's (kind, value)
                self.keys_of[cid] = {keys, key}
            else:
                keys.add(key)
            self.young.append((key, at))

    def settle(self, before: float) -> None:
        """Encode the decoded profiles fetched before ``before`` (and the
        oldest, past ``maxsize`` young ones): they stay for the store-down
        fallback, but as bytes, which the garbage collector does not track.
        Keeps the order (a dict keeps a key's place when its value changes)."""
        young, table = self.young, self.table
        while young and (young[0][1] < before or len(young) > self.maxsize):
            key, at = young.popleft()
            value = table.get(key) if table is not None else Cache.get(self, key)
            if value is None:
                continue
            if value[1] == at and type(value[0]) is dict:
                held = value[3] if value[3] is not None else encode(value[0])
                # held_size: the decoded count goes, the bytes' comes
                self.held_bytes += len(held) - (DECODED_FACTOR * len(value[3]) if value[3] is not None
                                                else DECODED_GUESS)
                Cache.__setitem__(self, key, (held, at, value[2], None))

    def clear(self) -> None:
        Cache.clear(self)                             # (cachetools': its dict at once, no popitem)
        self.keys_of.clear()
        self.young.clear()
        self.held_bytes = 0

    def popitem(self):
        key, value = super().popitem()
        self.held_bytes -= held_size(value)
        self._unindex(key, value)
        return key, value

    def drop(self, customer_id: str) -> None:
        keys = self.keys_of.pop(customer_id, None)
        for key in _keys(keys) | {customer_id}:
            value = self.pop(key, None)
            if value is not None:
                self.held_bytes -= held_size(value)
                self._unindex(key, value)

    def _unindex(self, key: str, value: tuple) -> None:
        if value[0] is None:
            return
        cid = value[2]
        keys = self.keys_of.get(cid)
        if keys is None:
            return
        if type(keys) is not set:
            if keys == key:
                del self.keys_of[cid]
            return
        keys.discard(key)
        if len(keys) == 1:
            self.keys_of[cid] = next(iter(keys))
        elif not keys:
            del self.keys_of[cid]


#: what an entry costs beside its profile: the entry's tuple, its key, its
#: fetch time and customer id, its slots in the entries' dict and the id
#: index (tracemalloc, 100,000 entries of a month's profiles: ~265 bytes)
ENTRY_BYTES = 300
#: a decoded profile's memory over its bytes' (tracemalloc, the public bytes of a month's
#: profiles: median 2.3x, p90 3.3x, the 200 largest 3.4x, at most 5.8x; counted high)
DECODED_FACTOR = 4
#: a decoded profile of unknown size (from a store that hands out no bytes: test stand-ins)
DECODED_GUESS = 3_300


def held_size(value: tuple) -> int:
    """What an entry ``(profile, fetched_at, customer id, encoded)`` is
    counted as against ``--profile-cache-mib``: the bytes it is held as,
    ~4x those while held decoded, plus :data:`ENTRY_BYTES`.  An estimate
    of its memory, not a measure (a decoded profile is not walked)."""
    held, encoded = value[0], value[3]
    if type(held) is bytes:
        return ENTRY_BYTES + len(held)
    if held is None:
        return ENTRY_BYTES
    return ENTRY_BYTES + (DECODED_FACTOR * len(encoded) if encoded is not None else DECODED_GUESS)


def _keys(keys) -> set:
    if keys is None:
        return set()
    return set(keys) if type(keys) is set else {keys}


class CachedStore:
    """A profile store with a cache of hot profiles (see the module docstring)."""

    # what a Decide's cache hit reads (engine/service/_decide.pyx, stored_hit), in slots
    __slots__ = ("ttl", "feed_max_age", "clock", "_entries", "_down_until", "_feed_since", "_feed_until", "reads",
                 "__dict__", "__weakref__")

    def __init__(self, store: ProfileStore, *, maxsize: int = MAX_ENTRIES, ttl: float = TTL,
                 retry_after: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 feed_max_age: float = FEED_MAX_AGE, max_bytes: int | None = MAX_BYTES):
        self.store = store
        self.ttl = ttl
        #: an entry the change feed vouches for is fetched again once this old
        #: (a backstop, should a writer that does not feed it change the store)
        self.feed_max_age = feed_max_age
        self.retry_after = retry_after
        self.clock = clock
        self._entries = _Entries(maxsize, max_bytes)
        # a ProfileStore hands out profiles as stored (get_encoded ...); a store
        # that does not (a stand-in with get() alone) is read with get()
        self._encoded_reads = isinstance(store, ProfileStore) or hasattr(store, "get_encoded")
        self._lock = threading.Lock()
        self._generation = 0
        self._down_until: float | None = None
        self._down_reason: str | None = None
        self._down_since: float | None = None     # the outage's first failure (clock), for the log
        #: reads by result, indexed by HIT, MISS, STALE_READ, PREFETCHED (see the module docstring);
        #: one list, its items replaced, so a reader may hold it (the compiled stored_hit counts here too)
        self.reads = [0, 0, 0, 0]
        # the change feed (sync): entries fetched after _feed_since (strictly: a fetch
        # at the same clock reading may have raced the sync) are valid until
        # _feed_until (the last sync's start + ttl) unless a sync dropped them
        self._feed_position: int | str | None = None     # Feed.head: a row number, a stream entry id
        self._feed_since = float("inf")
        self._feed_until = float("-inf")
        self._sync_stop: threading.Event | None = None
        self._sync_thread: threading.Thread | None = None
        #: the change feed's events, indexed by SYNCED (feed reads), SYNC_FAILED (reads
        #: that failed), FEED_MISSED (reads that found the feed pruned past this cache)
        #: and FEED_DROPPED (entries dropped: another process changed them)
        self.feed = [0, 0, 0, 0]
        self._feed_failing = False          # the last read failed (logged once per run of failures)

    # -- reads
    def read(self, customer_id) -> ProfileRead:
        """The profile with its provenance; never raises StoreUnavailable.
        ``customer_id``: a customer id, or a (kind, value) pair of another
        identifier (loyalty_card, email_hash, device_id), cached under the
        pair (a tuple: no customer id equals it)."""
        now = self.clock()
        reads = self.reads
        entries = self._entries
        with self._lock:
            table = entries.table
            cached = table.get(customer_id) if table is not None else entries.get(customer_id)
            if cached is not None and (now - cached[1] < self.ttl or self._vouched(cached[1], now)):
                reads[HIT] += 1
                return self._from_cache(cached, now, fresh=True)
            if self._down_until is not None and now < self._down_until:
                reads[STALE_READ] += 1
                return self._fallback(cached, now)
            generation = self._generation
        try:
            profile, encoded = self._fetch(customer_id)
        except StoreUnavailable as err:
            with self._lock:
                reads[STALE_READ] += 1
                started = self._mark_down(str(err), now)
                answer = self._fallback(self._entries.get(customer_id), now)
            self._log_down(started, str(err))
            return answer
        except BaseException:           # e.g. a stored profile that does not decode: the store was asked
            with self._lock:
                reads[MISS] += 1
            raise
        with self._lock:
            reads[MISS] += 1
            was_down = None
            if self._down_since is not None or self._down_until is not None:
                was_down = self._mark_up(now)
            if generation == self._generation:
                entries.put(customer_id, profile, now, encoded)
            entries.settle(now - self.ttl)
        if was_down is not None:
            self._log_up(was_down)
        return ProfileRead(profile, "store" if profile is not None else "none", age=0.0)

    def _fetch(self, key) -> tuple[dict | None, bytes | None]:
        """A key's stored profile (a customer id, or a (kind, value) pair of
        another identifier), and the bytes it is stored as when the store
        hands them out (``get_encoded``), which the cache keeps for when the
        profile is no longer fresh."""
        store = self.store
        if not self._encoded_reads:
            return without_bookkeeping(store.get(key) if type(key) is str else store.get_by(*key)), None
        encoded = store.get_encoded(key) if type(key) is str else store.get_by_encoded(*key)
        if encoded is None:
            return None, None
        encoded = public_bytes(encoded)
        return decode(encoded), encoded

    def get(self, customer_id: str) -> dict | None:
        return self.read(customer_id).profile

    def prefetch(self, customer_ids: Sequence[str]) -> int:
        """Read into the cache, in one call of the store (``get_many``), the
        profiles of the ``customer_ids`` it holds no fresh entry for, as
        :meth:`read` would one by one (known misses included); return how
        many were asked for.  DecideBatch calls this before its items, which
        are then cache hits: one round trip to Redis instead of one per item.

        Nothing is asked while the store is marked down (each item then
        reads as :meth:`read` does), nor with ``ttl`` 0 (nothing would be
        fresh when read).  A store that fails is marked down as by
        :meth:`read`, and this returns 0; it raises nothing the store raises."""
        now = self.clock()
        if self.ttl <= 0:
            return 0
        with self._lock:
            if self._down_until is not None and now < self._down_until:
                return 0
            entries = self._entries
            # cachetools' dict read directly, as the decision path reads it: Cache.get is three
            # Python calls an id, and a DecideBatch by id asks for every item's
            get = entries.table.get if entries.table is not None else entries.get
            missing = [c for c in dict.fromkeys(customer_ids) if (hit := get(c)) is None
                       or not (now - hit[1] < self.ttl or self._vouched(hit[1], now))]
            generation = self._generation
        if not missing:
            return 0
        try:
            if self._encoded_reads:
                encoded = self.store.get_many_encoded(missing)
            else:
                found, encoded = {cid: without_bookkeeping(p) for cid, p in self.store.get_many(missing).items()}, {}
        except StoreUnavailable as err:
            with self._lock:
                started = self._mark_down(str(err), now)
            self._log_down(started, str(err))
            return 0
        if self._encoded_reads:
            encoded = {cid: None if raw is None else public_bytes(raw) for cid, raw in encoded.items()}
            found = {cid: None if raw is None else decode(raw) for cid, raw in encoded.items()}
        with self._lock:
            was_down = self._mark_up(now)
            if generation == self._generation:          # no write of this process raced the read
                self.reads[PREFETCHED] += len(missing)
                for cid in missing:
                    self._entries.put(cid, found.get(cid), now, encoded.get(cid))
            self._entries.settle(now - self.ttl)
        if was_down is not None:
            self._log_up(was_down)
        return len(missing)

    def fresh(self, customer_id: str):
        """The decision path's fast case: the cached profile (None: a known
        miss) when an entry younger than ``ttl`` is held and the store is not
        marked down; else :data:`STALE` (call :meth:`read`).

        Without the lock (a quarter of a hit's cost): each read here is one
        dict lookup or attribute read, atomic under the GIL, and every
        writer replaces whole values.  A read racing an invalidation may
        return the entry just dropped, as it would have a moment earlier;
        one racing :meth:`_Entries.put` (the entry briefly absent) answers
        STALE and :meth:`read` takes the lock.

        The feed's times are read before the entry, ``_feed_until`` first:
        :meth:`sync` drops what changed, then writes ``_feed_since`` (when
        it must), then ``_feed_until``.  So the ``_feed_until`` read here is
        one whose sync's drops this lookup already sees, and a sync racing
        the reads can only make the answer STALE (read the other way round,
        a sync between the lookup and the check would vouch for the entry
        it had just dropped)."""
        until, since = self._feed_until, self._feed_since
        table = self._entries.table
        cached = table.get(customer_id) if table is not None else self._entries.get(customer_id)
        if cached is not None and self._down_until is None:
            now, at = self.clock(), cached[1]
            if now - at < self.ttl or (now < until and at > since and now - at < self.feed_max_age):
                self.reads[HIT] += 1
                return _profile(cached[0])
        return STALE

    def _from_cache(self, cached, now: float, fresh: bool) -> ProfileRead:
        profile, at = _profile(cached[0]), cached[1]
        degraded = not fresh or self._down_until is not None
        return ProfileRead(profile, "cache" if profile is not None else "none", degraded,
                           self._down_reason if degraded else None, now - at)

    def _fallback(self, cached, now: float) -> ProfileRead:
        if cached is not None:
            return self._from_cache(cached, now, fresh=False)
        return ProfileRead(None, "none", True, self._down_reason)

    def down_at_start(self, reason: str) -> None:
        """The store did not answer when it was opened, and its opener said
        so in the log: the outage starts now.  The first read that fails
        does not log it again; the first answer logs its end.  Reads still
        try the store at once (no ``retry_after`` wait)."""
        with self._lock:
            self._down_reason = reason
            if self._down_since is None:
                self._down_since = self.clock()

    def _mark_down(self, reason: str, now: float) -> bool:
        """(Under the lock.)  True when this failure starts an outage."""
        self._down_until = now + self.retry_after
        self._down_reason = reason
        if self._down_since is None:
            self._down_since = now
            return True
        return False

    def _mark_up(self, now: float) -> float | None:
        """(Under the lock.)  The store answered: how long it had been down,
        or None when it was not."""
        self._down_until = self._down_reason = None
        since, self._down_since = self._down_since, None
        return None if since is None else max(0.0, now - since)

    def _log_down(self, started: bool, reason: str) -> None:
        if started:
            log.warning("profile store %s is unavailable: %s; reads are served from the cache (degraded) "
                        "and writes are refused until it answers", self.store.url,
                        reason.removeprefix(f"{self.store.url}: "))      # the store's errors name it too

    def _log_up(self, was_down: float | None) -> None:
        if was_down is not None:
            log.info("profile store %s answers again after %.1f s unavailable", self.store.url, was_down)

    # -- the change feed
    def _feed_usable(self) -> bool:
        """The store has a change feed, and entries are cached at all (ttl > 0)."""
        return getattr(self.store, "has_change_feed", False) and self.ttl > 0

    @property
    def following(self) -> bool:
        """Whether :meth:`start_sync`'s thread follows the change feed."""
        return self._sync_thread is not None

    def _vouched(self, at: float, now: float) -> bool:
        """(Under the lock.)  Whether the change feed vouches for an entry
        fetched at ``at``: fetched after the first sync, the last sync began
        less than ``ttl`` ago, and younger than ``feed_max_age``."""
        return now < self._feed_until and at > self._feed_since and now - at < self.feed_max_age

    def sync(self) -> bool:
        """Read the store's change feed once and drop the entries of what
        changed since the last read (another process's writes; this
        process's own were dropped when written).  Then every entry fetched
        after the first sync stays valid until ``ttl`` after this sync
        started, unless a later sync drops it.  The first sync, and one
        that finds the feed pruned past its last read (it had not run for
        longer than the feed keeps changes), vouches only for entries
        fetched after it; those held before stay valid for their ``ttl``.  Returns
        whether the feed was read (False: the store has none, or it did not
        answer; entries then expire after ``ttl`` as without a feed).

        A sync that read changes (or could not tell) bumps the generation,
        so a fetch that raced it (its read may predate a change the sync has
        now passed) is not cached.  An entry the feed vouches for is still
        fetched again once ``feed_max_age`` old (60 s), a backstop should a
        writer that does not feed it (an earlier Maple on Redis) change it."""
        if not self._feed_usable():
            return False
        store = self.store
        started = self.clock()
        try:
            feed = store.changes_since(self._feed_position)
        except Exception as err:
            with self._lock:
                self.feed[SYNC_FAILED] += 1
                first, self._feed_failing = not self._feed_failing, True
            if first and not isinstance(err, StoreUnavailable):     # (an outage: the reads log it)
                log.exception("reading the profile store's change feed failed; cached profiles expire "
                              "after the ttl until it is read again")
            return False
        lost = False
        with self._lock:
            self.feed[SYNCED] += 1
            self._feed_failing = False
            if feed.keys or not feed.complete:
                self._generation += 1       # a fetch racing this sync may predate what it passed
            entries = self._entries
            if feed.complete:
                drops = 0
                for key in dict.fromkeys(feed.keys):
                    kind, _, value = key.partition(":")
                    target = value if kind == "customer_id" else (kind, value)
                    if Cache.__contains__(entries, target) or target in entries.keys_of:
                        drops += 1
                        entries.drop(target)
                self.feed[FEED_DROPPED] += drops
            else:
                lost = self._feed_position is not None
                if lost:
                    self.feed[FEED_MISSED] += 1
                # what changed before this read is unknown: the entries held now
                # are valid for their ttl only, those fetched from now on as before
                self._feed_since = self.clock()
            self._feed_position = feed.head
            self._feed_until = started + self.ttl
        if lost:
            log.warning("profile cache: the store's change feed was pruned past this cache's last read "
                        "(it had not synced for longer than the feed keeps changes): the profiles cached "
                        "until now are kept for the ttl only")
        return True

    def sync_period(self) -> float:
        """Seconds between two syncs of :meth:`start_sync`: a quarter of
        ``ttl``, at most SYNC_EVERY_MAX (1 s): a long ttl must not outlast
        the minute the SQLite feed keeps changes, nor let another process's
        writes wait long."""
        return min(self.ttl / 4, SYNC_EVERY_MAX)

    def start_sync(self, every: float | None = None) -> bool:
        """Run :meth:`sync` now and then every ``every`` seconds (default
        :meth:`sync_period`) on a daemon thread, until :meth:`close`.  False
        (and no thread) when the store has no change feed or ``ttl`` is 0."""
        if not self._feed_usable() or self._sync_thread is not None:
            return False
        period = every if every is not None else self.sync_period()
        stop = threading.Event()

        def run() -> None:
            while True:
                try:
                    self.sync()
                except Exception:           # (sync catches the store's errors: this is a bug)
                    log.exception("profile cache: syncing with the change feed failed")
                if stop.wait(period):
                    return

        self._sync_stop = stop
        self._sync_thread = threading.Thread(target=run, name="maple-profile-feed", daemon=True)
        self._sync_thread.start()
        return True

    def stop_sync(self) -> None:
        """Stop :meth:`start_sync`'s thread (entries then expire after ``ttl``)."""
        stop, thread = self._sync_stop, self._sync_thread
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._sync_stop = self._sync_thread = None

    # -- writes
    def apply(self, raw_events: Sequence[Any], now: float | None = None) -> BatchResult:
        """Apply a batch in the store (raises StoreUnavailable while it is
        down), then drop this cache's entries for every customer touched."""
        try:
            result = self.store.apply(raw_events, now)
        except StoreUnavailable as err:
            with self._lock:
                started = self._mark_down(str(err), self.clock())
            self._log_down(started, str(err))
            raise
        self.invalidate([*result.touched, *(tuple(key.split(":", 1)) for key in result.linked
                                            if not key.startswith("customer_id:"))])
        with self._lock:
            was_down = self._mark_up(self.clock())
        self._log_up(was_down)
        return result

    def invalidate(self, customer_ids: Sequence[str]) -> None:
        with self._lock:
            self._generation += 1
            for cid in customer_ids:
                self._entries.drop(cid)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    # -- state
    @property
    def degraded(self) -> str | None:
        """Why reads are degraded now, or None."""
        with self._lock:
            return self._down_reason

    def health(self) -> Health:
        h = self.store.health()
        if not h.ok:
            with self._lock:
                started = self._mark_down(h.detail, self.clock())
            self._log_down(started, h.detail)
        return h

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """The entries' memory as :func:`held_size` counts it (bounded by
        ``max_bytes``; ``maple_profile_cache_bytes``)."""
        return self._entries.held_bytes

    def close(self) -> None:
        self.stop_sync()
        self.store.close()
