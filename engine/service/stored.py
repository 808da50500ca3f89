"""Profiles from the profile store: the decision path's view of it.

:class:`StoredProfiles` is the :class:`~.sources.ProfileSource` of
``maple serve --store sqlite:///PATH`` and ``--store redis://HOST:PORT/DB``.
It reads through a :class:`~engine.profiles.CachedStore` (hot profiles in
memory for ``cache_ttl`` seconds: the staleness bound across replicas) and
it is also where RecordEvents writes (:class:`~.events.EventSink`), through
the same cache, so a process reads its own writes at once.

Store down: reads keep answering from the cache, expired entries included,
and say so (:attr:`ProfileLookup.degraded`); a customer the cache does not
hold raises :class:`~.sources.SourceUnavailable`, so the decision falls back
to the inline snapshot or defaults.  Recovery needs no restart: the cache
tries the store again ``retry_after`` seconds after a failure.

The stored lifecycle is as of the customer's latest event;
:meth:`StoredProfiles.lookup` brings it up to the decision's "now"
(:func:`engine.profiles.fold.refresh`), so a customer who stopped buying is
lapsed when decided for, not when they next send an event.

The decision path's common case, a customer id whose profile the cache
holds fresh, does not come through :meth:`StoredProfiles.lookup`: the
compiled Decide reads the cache's entry itself (``_decide.stored_hit``,
held to ``lookup`` by a test) and calls ``lookup`` for everything else.

Every process (each ``--workers`` worker) opens its own store connections.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence
from urllib.parse import urlsplit

from ..profiles.cache import MAX_BYTES, MAX_ENTRIES, STALE, TTL, CachedStore
from ..profiles.events import ValidationConfig
from ..profiles.fold import refresh
from ..profiles.store import BatchResult, ProfileStore, StoreError, open_store
from .sources import ProfileLookup, SourceUnavailable

log = logging.getLogger("maple.service")

SCHEMES = ("sqlite", "redis", "rediss", "unix", "redis-cluster", "rediss-cluster")


class StoredProfiles:
    """A profile store behind a cache, as a profile source and event sink."""

    __slots__ = ("cache", "store", "fold_config", "__dict__", "__weakref__")   # read by the compiled Decide

    def __init__(self, store: ProfileStore, *, cache_ttl: float = TTL, cache_size: int = MAX_ENTRIES,
                 cache_mib: float | None = MAX_BYTES / 2**20, retry_after: float = 1.0):
        self.cache = CachedStore(store, ttl=cache_ttl, maxsize=cache_size, retry_after=retry_after,
                                 max_bytes=None if cache_mib is None else int(cache_mib * 2**20))
        self.store = store
        self.fold_config = store.fold_config

    @classmethod
    def open(cls, url: str, known_stores=None, **options) -> "StoredProfiles":
        """Open the store a URL names.  A SQLite file's directory is created
        when missing (``sqlite://.maple/profiles.db`` works on a fresh clone).
        ``known_stores``: a container of the store ids events may name
        (``None``: any).  Raises ValueError with a message for the operator."""
        if urlsplit(url).scheme == "sqlite":
            parent = os.path.dirname(url[len("sqlite://"):])
            if parent:
                os.makedirs(parent, exist_ok=True)
        try:
            store = open_store(url, **({"validation": ValidationConfig(known_stores=known_stores)}
                                       if known_stores is not None else {}))
        except StoreError as err:           # StoreUnavailable included: a file that cannot be opened
            raise ValueError(f"cannot open the profile store {url!r}: {err}") from None
        except OSError as err:
            raise ValueError(f"cannot open the profile store {url!r}: {err}") from None
        profiles = cls(store, **options)
        profiles.check_at_start()
        return profiles

    def check_at_start(self) -> None:
        """Say once if the store just opened is not fine: not durable, or not
        answering.  A store that does not answer has its outage begin here,
        in the cache, so the first request that fails on it logs no second
        WARNING, and the first that reaches it logs the end of the outage
        (``answers again after ...``), as for any later outage."""
        h = self.store.health()
        if h.ok and h.durable:              # (a store that is not durable gets its one WARNING below)
            log.info("profile store %s: %s", h.store, h.detail)
        if h.ok and h.durable is False and not self.store.warns_durability:
            log.warning("profile store %s is not durable (%s): acknowledged events can be lost", h.store, h.detail)
        elif not h.ok:
            self.cache.down_at_start(h.detail)
            log.warning("profile store %s is not reachable yet (%s): until it answers, decisions are degraded "
                        "(no stored profiles) and RecordEvents is refused (UNAVAILABLE)%s", h.store, h.detail,
                        "; its durability is checked when it answers" if self.store.warns_durability else "")

    # -- ProfileSource
    def get(self, customer_id: str, timeout: float | None) -> dict | None:
        return self.lookup(customer_id, timeout, None).profile

    def lookup(self, customer_id, timeout: float | None, now: float | None) -> ProfileLookup:
        """The profile (lifecycle as of ``now``), and why it may be stale.
        ``customer_id``: a customer id, or (kind, value) of another
        identifier (:meth:`lookup_alias`).

        ``timeout`` is not enforced per call: a read gives up after the
        store's own socket timeouts, and after a failure the cache does not
        try the store again for ``retry_after`` seconds."""
        hit = self.cache.fresh(customer_id)
        if hit is not STALE:
            return ProfileLookup(refresh(hit, now, self.fold_config) if hit is not None and now is not None
                                 else hit)
        return self.read_lookup(customer_id, now)

    def read_lookup(self, customer_id, now: float | None) -> ProfileLookup:
        """:meth:`lookup` without its lock-free first look at the cache: what
        the compiled Decide calls when its own look (``_decide.stored_hit``)
        found nothing fresh.  ``CachedStore.read`` looks again, under its
        lock, and answers as ``lookup`` would have."""
        read = self.cache.read(customer_id)
        profile = read.profile
        if read.degraded and profile is None:
            raise SourceUnavailable(read.reason or "the profile store did not answer")
        if profile is not None and now is not None:
            profile = refresh(profile, now, self.fold_config)
        if not read.degraded:
            return ProfileLookup(profile)
        age = f" {read.age:.1f} s old" if read.age is not None else ""
        return ProfileLookup(profile, f"profile store unavailable, using a cached profile{age}: {read.reason}")

    def lookup_alias(self, kind: str, value: str, timeout: float | None, now: float | None) -> ProfileLookup:
        """The profile of the customer a loyalty card, email hash or device
        id points at; cached (under the pair, which no customer id can
        equal) and invalidated like a profile read by id."""
        return self.lookup((kind, value), timeout, now)

    def prefetch(self, customer_ids: Sequence[str]) -> int:
        """The profiles of ``customer_ids`` read into the cache in one store
        call (``CachedStore.prefetch``): DecideBatch's items by id are then
        cache hits."""
        return self.cache.prefetch(customer_ids)

    def start_sync(self) -> bool:
        """Follow the store's change feed (``CachedStore.start_sync``): cached
        profiles then stay valid until another process changes them, not
        for one ttl.  False when the store has none."""
        return self.cache.start_sync()

    def describe(self) -> str:
        feed = "; entries kept until changed: the store's change feed is followed" if self.cache.following else ""
        return f"{self.store.url} (cache ttl {self.cache.ttl:g} s{feed})"

    # -- EventSink
    def apply(self, raw_events: Sequence[Any]) -> BatchResult:
        return self.cache.apply(raw_events)

    def close(self) -> None:
        self.cache.close()
