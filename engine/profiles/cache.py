"""A cache of hot profiles in front of a store, and what happens when the
store is down.

:class:`CachedStore` wraps any :class:`~.store.ProfileStore`:

* **Fresh reads** come from the cache: an entry is served without asking the
  store while it is younger than ``ttl`` seconds (default 1 s).
* **Writes from this process** (``apply``) invalidate the entries of every
  customer they touched, including merged-away ids and any alias the
  profile was cached under, so this process reads its own writes.
* **Other replicas' writes** are seen once the entry expires: a replica
  serves a profile at most ``ttl`` seconds older than the store.  That is
  the staleness bound, and it holds with any number of replicas on Redis.
  (A fetch that races a local write is not cached: a generation counter
  drops it.)
* **Store down** (:class:`~.store.StoreUnavailable`): reads are answered from
  the cache, expired entries included, marked ``degraded`` with the reason;
  a customer not in the cache reads as missing (so decisions use defaults),
  also marked degraded.  For ``retry_after`` seconds after a failure, reads
  do not even try the store (a dead store costs a failed connect, not one
  per request); then the next read tries again and, if the store answers,
  the cache is healthy again: recovery needs no restart.  Writes always go to
  the store and raise StoreUnavailable while it is down.

The clock is injected (``clock``, monotonic seconds), so expiry and
recovery are tested without sleeping.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from cachetools import LRUCache

from .store import BatchResult, Health, ProfileStore, StoreUnavailable


STALE = object()        # CachedStore.fresh: not answerable from the cache alone


@dataclass(frozen=True)
class ProfileRead:
    """A profile and where it came from."""
    profile: dict | None
    source: str                     # "store" | "cache" | "none"
    degraded: bool = False
    reason: str | None = None       # why degraded
    age: float | None = None        # seconds since the profile was read from the store


class _Entries(LRUCache):
    """The LRU cache of (profile, fetched_at) plus an index from each
    profile's customer id to the keys it is cached under (ids and aliases)."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.keys_of: dict[str, set[str]] = {}

    def put(self, key: str, profile: dict | None, at: float) -> None:
        self[key] = (profile, at)
        if profile is not None:
            self.keys_of.setdefault(profile.get("customer_id", key), set()).add(key)

    def popitem(self):
        key, value = super().popitem()
        self._unindex(key, value[0])
        return key, value

    def drop(self, customer_id: str) -> None:
        for key in self.keys_of.pop(customer_id, set()) | {customer_id}:
            value = self.pop(key, None)
            if value is not None:
                self._unindex(key, value[0])

    def _unindex(self, key: str, profile: dict | None) -> None:
        if profile is None:
            return
        keys = self.keys_of.get(profile.get("customer_id", key))
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.keys_of[profile.get("customer_id", key)]


class CachedStore:
    """A profile store with a cache of hot profiles (see the module docstring)."""

    def __init__(self, store: ProfileStore, *, maxsize: int = 100_000, ttl: float = 1.0,
                 retry_after: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.ttl = ttl
        self.retry_after = retry_after
        self.clock = clock
        self._entries = _Entries(maxsize)
        self._lock = threading.Lock()
        self._generation = 0
        self._down_until: float | None = None
        self._down_reason: str | None = None

    # -- reads
    def read(self, customer_id: str) -> ProfileRead:
        """The profile with its provenance; never raises StoreUnavailable."""
        now = self.clock()
        with self._lock:
            cached = self._entries.get(customer_id)
            if cached is not None and now - cached[1] < self.ttl:
                return self._from_cache(cached, now, fresh=True)
            if self._down_until is not None and now < self._down_until:
                return self._fallback(cached, now)
            generation = self._generation
        try:
            profile = self.store.get(customer_id)
        except StoreUnavailable as err:
            with self._lock:
                self._mark_down(str(err), now)
                return self._fallback(self._entries.get(customer_id), now)
        with self._lock:
            self._down_until = self._down_reason = None
            if generation == self._generation:
                self._entries.put(customer_id, profile, now)
        return ProfileRead(profile, "store" if profile is not None else "none", age=0.0)

    def get(self, customer_id: str) -> dict | None:
        return self.read(customer_id).profile

    def fresh(self, customer_id: str):
        """The decision path's fast case: the cached profile (None: a known
        miss) when an entry younger than ``ttl`` is held and the store is not
        marked down; else :data:`STALE` (call :meth:`read`)."""
        with self._lock:
            cached = self._entries.get(customer_id)
            if cached is not None and self._down_until is None and self.clock() - cached[1] < self.ttl:
                return cached[0]
        return STALE

    def _from_cache(self, cached, now: float, fresh: bool) -> ProfileRead:
        profile, at = cached
        degraded = not fresh or self._down_until is not None
        return ProfileRead(profile, "cache" if profile is not None else "none", degraded,
                           self._down_reason if degraded else None, now - at)

    def _fallback(self, cached, now: float) -> ProfileRead:
        if cached is not None:
            return self._from_cache(cached, now, fresh=False)
        return ProfileRead(None, "none", True, self._down_reason)

    def _mark_down(self, reason: str, now: float) -> None:
        self._down_until = now + self.retry_after
        self._down_reason = reason

    # -- writes
    def apply(self, raw_events: Sequence[Any], now: float | None = None) -> BatchResult:
        """Apply a batch in the store (raises StoreUnavailable while it is
        down), then drop this cache's entries for every customer touched."""
        try:
            result = self.store.apply(raw_events, now)
        except StoreUnavailable as err:
            with self._lock:
                self._mark_down(str(err), self.clock())
            raise
        self.invalidate(result.touched)
        with self._lock:
            self._down_until = self._down_reason = None
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
            self._entries.keys_of.clear()

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
                self._mark_down(h.detail, self.clock())
        return h

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self.store.close()
