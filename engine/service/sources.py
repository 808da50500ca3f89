"""Where profiles and store availability come from: small protocols.

The profile store (SQLite, Redis, cache) and the inventory/geo index are
built by other parts of the engine; they plug in by implementing
:class:`ProfileSource` and :class:`StoresSource`.  ``maple serve --store
sqlite:///PATH`` or ``redis://HOST:PORT/DB`` reads the profile store
(:class:`.stored.StoredProfiles`); ``jsonl:PATH`` serves
:class:`StaticProfiles` from a JSON Lines file; without ``--store`` the
null implementations answer (no stored profiles, no store data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec


class SourceUnavailable(Exception):
    """A source could not answer (down, timed out): the decision is degraded."""


class ProfileLookup(NamedTuple):
    """A profile (None: unknown customer) and, when it may be stale (the
    store is down and this is a cached copy), why: the decision is then
    marked degraded with that reason.  (A tuple: made on every Decide.)"""
    profile: dict | None
    degraded: str | None = None


def lookup_profile(source, customer_id: str, timeout: float | None, now: float) -> ProfileLookup:
    """Ask ``source`` for a profile as of ``now``: through its ``lookup``
    when it has one (stored profiles: lifecycle refreshed, stale copies
    flagged), else through ``get``."""
    lookup = getattr(source, "lookup", None)
    if lookup is not None:
        return lookup(customer_id, timeout, now)
    return ProfileLookup(source.get(customer_id, timeout))


def lookup_alias(source, kind: str, value: str, timeout: float | None, now: float) -> ProfileLookup:
    """Ask ``source`` for the profile of the customer another identifier
    (``kind``: loyalty_card, email_hash, device_id) points at, as of ``now``.
    A source that keeps no identifiers (no store, a file of profiles) knows
    nobody by one."""
    lookup = getattr(source, "lookup_alias", None)
    if lookup is None:
        return _NOBODY
    return lookup(kind, value, timeout, now)


_NOBODY = ProfileLookup(None)


# ---------------------------------------------------------------- profiles
@runtime_checkable
class ProfileSource(Protocol):
    def get(self, customer_id: str, timeout: float | None) -> dict | None:
        """The customer's profile, or None when the id is unknown.

        May be slow; must give up after ``timeout`` seconds (None: no
        deadline) and raise :class:`SourceUnavailable` when it cannot answer.
        """

    def describe(self) -> str:
        """For logs and GetRuleset: what this source is."""


class NullProfiles:
    """No profile store: every customer id is unknown."""

    def get(self, customer_id: str, timeout: float | None) -> dict | None:
        return None

    def describe(self) -> str:
        return "none"


class StaticProfiles:
    """Profiles held in memory, keyed by their ``customer_id``; from a
    file, each remembers the line it was read from (``lines``) so that
    :meth:`schema_problems` can say where a profile does not fit."""

    def __init__(self, profiles: dict[str, dict], origin: str = "memory",
                 path: str | None = None, lines: dict[str, int] | None = None):
        self._profiles = profiles
        self._origin = origin
        self.path = path
        self.lines = lines or {}
        self.repeats: list[tuple[int, str, int]] = []     # (line, customer_id, its earlier line)

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "StaticProfiles":
        profiles, lines, repeats = {}, {}, []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    p = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not JSON: {err.msg}") from None
                cid = p.get("customer_id") if isinstance(p, dict) else None
                if not isinstance(cid, str) or not cid:
                    raise ValueError(f"{path}:{n}: a profile needs a string customer_id")
                if cid in lines:                   # the later line is served: say so (schema_problems)
                    repeats.append((n, cid, lines[cid]))
                profiles[cid] = p
                lines[cid] = n
        out = cls(profiles, f"jsonl:{path} ({len(profiles)} profiles)", str(path), lines)
        out.repeats = repeats
        return out

    def schema_problems(self, ruleset) -> list[str]:
        """``PATH:LINE: problem`` for each attribute of a profile the pack's
        ``schema profile`` does not declare or would read as missing
        (``"lifecycle": "vipp"``, ``"orders_count": "3"``, ``"lifecyle"``):
        the rules would quietly decide on defaults for that customer.  The
        checks and their words are the rule tests' (engine.ruletest); the
        profiles are served as they are."""
        from ..ruletest import profile_problems
        where = self.path or self._origin
        out = [f"{where}:{line}: customer_id {cid!r} again (first on line {first}): this line is served, "
               f"line {first} is not" for line, cid, first in self.repeats]
        for cid, profile in sorted(self._profiles.items(), key=lambda item: self.lines.get(item[0], 0)):
            line = self.lines.get(cid)
            at = f"{where}:{line}" if line else f"{where}: {cid}"
            out += [f"{at}: {problem}" for problem in profile_problems(profile, ruleset)]
        return out

    def get(self, customer_id: str, timeout: float | None) -> dict | None:
        return self._profiles.get(customer_id)

    def describe(self) -> str:
        return self._origin


def open_profile_source(url: str | None, **store_options) -> ProfileSource:
    """``--store URL``: empty or ``none`` for no store, ``jsonl:PATH`` for a
    file of profiles (read-only), ``sqlite:///PATH``,
    ``redis://HOST:PORT/DB`` or ``redis-cluster://HOST:PORT`` for the
    profile store behind a cache (:class:`.stored.StoredProfiles`;
    ``store_options``: cache_ttl,
    cache_size, cache_mib).  ValueError says what is wrong with the URL."""
    if not url or url == "none":
        return NullProfiles()
    scheme, _, rest = url.partition(":")
    if scheme == "jsonl" and rest:
        return StaticProfiles.from_jsonl(rest)
    from .stored import SCHEMES, StoredProfiles
    if scheme in SCHEMES:
        return StoredProfiles.open(url, **store_options)
    raise ValueError(f"unsupported profile store {url!r}: use sqlite:///PATH, redis://HOST:PORT/DB, "
                     "redis-cluster://HOST:PORT, jsonl:PATH or none")


# ---------------------------------------------------------------- stores
class NearbyQuery(msgspec.Struct):
    """Which stores near the customer hold ``sku`` in ``size``.

    Where the customer is comes from the first that is known: the request's
    location, the location of the store the request comes from (a till), the
    preferred store's location, the profile's home."""
    sku: str | None
    size: str | None
    request_location: tuple[float, float] | None
    preferred_store: str | None
    home: tuple[float, float] | None
    radius_km: float
    max_stores: int
    min_quantity: int
    low_stock_below: int = 0
    open_at: float | None = None        # only stores open at this time (seconds since the epoch)
    at: float | None = None             # the decision's time: each store found says if it is open then
    request_store: str | None = None    # the store the request comes from (context.store: a till, a kiosk)


@dataclass(frozen=True)
class StoreStock:
    store_id: str
    name: str
    distance_km: float
    quantity: int
    open_now: bool | None = None        # at NearbyQuery.at; None: not known


class NearbyFound(msgspec.Struct):
    """Stores found, nearest first, where the search was centred
    ("request", "request_store", "preferred_store", "home" or None) and, when empty, why
    ("no_location", "no_sku", "no_size", "no_stock", "none_open", "no_data")."""
    stores: tuple[StoreStock, ...]
    located_by: str | None
    empty_reason: str | None = None


@runtime_checkable
class StoresSource(Protocol):
    def nearby(self, query: NearbyQuery, timeout: float | None) -> NearbyFound:
        """Stores within the radius holding at least ``min_quantity``,
        nearest first; raise :class:`SourceUnavailable` when it cannot answer."""


class NullStores:
    """No store or inventory data: no store is ever nearby."""

    def nearby(self, query: NearbyQuery, timeout: float | None) -> NearbyFound:
        return NearbyFound((), None, "no_data")


class StaticStores:
    """A fixed list of stores for tests: (store_id, name, lat, lon, {sku/size: qty}).
    They have no opening hours: ``open_at`` is ignored (every store counts as open)."""

    def __init__(self, stores: list[tuple[str, str, float, float, dict[str, int]]]):
        self._stores = stores

    def nearby(self, query: NearbyQuery, timeout: float | None) -> NearbyFound:
        from ..eval.values import haversine_km
        location, located_by = query.request_location, "request"
        if location is None:
            location, located_by = query.home, "home"
        if location is None:
            return NearbyFound((), None, "no_location")
        if query.sku is None:
            return NearbyFound((), located_by, "no_sku")
        key = f"{query.sku}/{query.size}" if query.size else query.sku
        found = []
        for sid, name, lat, lon, stock in self._stores:
            d = haversine_km(location, (lat, lon))
            qty = stock.get(key, 0)
            if d <= query.radius_km and qty >= max(query.min_quantity, 1):
                found.append(StoreStock(sid, name, d, qty))
        found.sort(key=lambda s: s.distance_km)
        return NearbyFound(tuple(found[:query.max_stores]), located_by, None if found else "no_stock")
