"""Where profiles and store availability come from: small protocols.

The profile store (SQLite, Redis, cache) and the inventory/geo index are
built by other parts of the engine; they plug in by implementing
:class:`ProfileSource` and :class:`StoresSource`.  Until then the service
runs with the null implementations (no stored profiles, no store data), or
with :class:`StaticProfiles` loaded from a JSON Lines file
(``maple serve --store jsonl:PATH``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable


class SourceUnavailable(Exception):
    """A source could not answer (down, timed out): the decision is degraded."""


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
    """Profiles held in memory, keyed by their ``customer_id``."""

    def __init__(self, profiles: dict[str, dict], origin: str = "memory"):
        self._profiles = profiles
        self._origin = origin

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "StaticProfiles":
        profiles = {}
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
                profiles[cid] = p
        return cls(profiles, f"jsonl:{path} ({len(profiles)} profiles)")

    def get(self, customer_id: str, timeout: float | None) -> dict | None:
        return self._profiles.get(customer_id)

    def describe(self) -> str:
        return self._origin


def open_profile_source(url: str | None) -> ProfileSource:
    """``--store URL``: empty or ``none`` for no store, ``jsonl:PATH`` for a
    file of profiles.  Other schemes (sqlite:, redis:) arrive with the
    profile store; until then they are refused with a clear message."""
    if not url or url == "none":
        return NullProfiles()
    scheme, _, rest = url.partition(":")
    if scheme == "jsonl" and rest:
        return StaticProfiles.from_jsonl(rest)
    raise ValueError(f"unsupported profile store {url!r}: use jsonl:PATH or none "
                     "(sqlite: and redis: come with the profile store)")


# ---------------------------------------------------------------- stores
@dataclass(frozen=True)
class NearbyQuery:
    """Which stores near ``location`` hold ``sku`` in ``size``."""
    sku: str | None
    size: str | None
    location: tuple[float, float] | None
    radius_km: float
    max_stores: int
    min_quantity: int


@dataclass(frozen=True)
class StoreStock:
    store_id: str
    name: str
    distance_km: float
    quantity: int


@runtime_checkable
class StoresSource(Protocol):
    def nearby(self, query: NearbyQuery, timeout: float | None) -> Sequence[StoreStock]:
        """Stores within the radius holding at least ``min_quantity``,
        nearest first; raise :class:`SourceUnavailable` when it cannot answer."""


class NullStores:
    """No store or inventory data: no store is ever nearby."""

    def nearby(self, query: NearbyQuery, timeout: float | None) -> Sequence[StoreStock]:
        return ()


class StaticStores:
    """A fixed list of stores for tests: (store_id, name, lat, lon, {sku/size: qty})."""

    def __init__(self, stores: list[tuple[str, str, float, float, dict[str, int]]]):
        self._stores = stores

    def nearby(self, query: NearbyQuery, timeout: float | None) -> Sequence[StoreStock]:
        from ..eval.values import haversine_km
        if query.location is None or query.sku is None:
            return ()
        key = f"{query.sku}/{query.size}" if query.size else query.sku
        found = []
        for sid, name, lat, lon, stock in self._stores:
            d = haversine_km(query.location, (lat, lon))
            qty = stock.get(key, 0)
            if d <= query.radius_km and qty >= max(query.min_quantity, 1):
                found.append(StoreStock(sid, name, d, qty))
        found.sort(key=lambda s: s.distance_km)
        return found[:query.max_stores]
