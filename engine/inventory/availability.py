"""Live stock and the nearby-store query.

:class:`Inventory` holds one immutable :class:`Snapshot` (the data, its geo
index and a version) and replaces it whole on every change:

* ``apply(updates)`` takes a batch of absolute counts and deltas, builds the
  next snapshot copy-on-write (only the touched (sku, size) tables and the
  top-level dict are copied; everything else is shared), then publishes it
  with one reference assignment;
* ``reload(directory)`` loads the data files into a new snapshot (new geo
  index too) and publishes it the same way.

Writers take a lock, so batches and reloads apply one at a time in call
order.  Readers take no lock: each query reads ``self._snapshot`` once and
answers from that object alone, so it sees every update of a batch or none
of them, never half a batch, and never a store table from one load with the
stock of another.

Update semantics (docs/inventory.md):

* ``quantity=n`` sets the count (0 <= n <= ``MAX_QUANTITY``); ``delta=d``
  adds d.  A delta that would go below zero clamps to 0 (a sale recorded
  against a count that was already stale must not make the item look "in
  stock" later), one that would go above ``MAX_QUANTITY`` clamps to it (the
  count stays one a client can be sent), and the index is reported in
  ``UpdateResult.clamped``.
* A bad update (unknown store, unknown sku, a size the sku does not come in,
  neither or both of quantity/delta, a non-integer, a quantity out of
  0..MAX_QUANTITY) is reported by index in ``UpdateResult.errors``; the rest
  of the batch is applied, as one batch.
* Updates within a batch apply in order; a reload replaces all counts,
  including those set by updates since the last load (the files are the
  new truth).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterable

import msgspec

from .geo import GeoIndex, check_query
from .loader import LoadReport, load_dir
from ._nearby import ItemIndex, StoreTable
from .location import Location, locate
from .model import MAX_QUANTITY, InventoryData, StoreAvailability, local_weekday_minute


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class Snapshot:
    data: InventoryData
    geo: GeoIndex
    version: int


@dataclass(frozen=True, slots=True)
class StockUpdate:
    """One change: ``quantity`` (an absolute count) or ``delta`` (a change)."""
    store_id: str
    sku: str
    size: str
    quantity: int | None = None
    delta: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateError:
    index: int          # position in the batch
    field: str          # the field at fault
    message: str


@dataclass(frozen=True)
class UpdateResult:
    applied: int                      # updates applied
    clamped: tuple[int, ...]          # indices of deltas that clamped at 0 or MAX_QUANTITY
    errors: tuple[UpdateError, ...]   # updates rejected, by index
    version: int                      # the snapshot version after the batch


class NearbyAnswer(msgspec.Struct):     # built on every nearby lookup: a Struct is built in C; read-only
    location: Location
    stores: list[StoreAvailability]


class Inventory:
    """Stores, catalogue and stock, updated live and queried by location."""

    __slots__ = ("_write", "_snapshot", "__dict__", "__weakref__")

    def __init__(self, data: InventoryData):
        self._write = threading.Lock()
        self._snapshot = Snapshot(data, _geo_of(data), 1)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> tuple["Inventory", LoadReport]:
        """Load the data files; raises InventoryLoadError when a file is unusable."""
        result = load_dir(directory)
        return cls(result.data), result.report

    # -- state
    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot; keep it to answer several questions from one state."""
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    def quantity(self, store_id: str, sku: str, size: str) -> int:
        return self._snapshot.data.quantity(store_id, sku, size)

    # -- writers
    def reload(self, directory: str | os.PathLike) -> LoadReport:
        """Load the files and swap them in whole.  When a file is unusable
        this raises InventoryLoadError and the current data stays."""
        result = load_dir(directory)
        self.replace(result.data)
        return result.report

    def replace(self, data: InventoryData) -> None:
        """Swap in a whole new data set (its geo index is built first)."""
        geo = _geo_of(data)
        with self._write:
            self._snapshot = Snapshot(data, geo, self._snapshot.version + 1)

    def apply(self, updates: Iterable[StockUpdate]) -> UpdateResult:
        """Apply a batch atomically (see the module docstring)."""
        with self._write:
            snap = self._snapshot
            data = snap.data
            stock = dict(data.stock)              # the next snapshot's top level
            copied: set[tuple[str, str]] = set()
            applied, clamped, errors = 0, [], []
            for i, u in enumerate(updates):
                problem = _check(u, data)
                if problem is not None:
                    errors.append(UpdateError(i, *problem))
                    continue
                key = (u.sku, u.size)
                if key not in copied:
                    stock[key] = dict(stock.get(key, ()))
                    copied.add(key)
                if _apply_one(stock[key], u):
                    clamped.append(i)
                applied += 1
            version = snap.version
            if applied:
                version += 1
                new = InventoryData(data.stores, data.catalog, stock)
                for key in copied:          # the changed items' indexes, before any Decide reads them
                    _build_item_index(new, snap.geo, key, stock[key])
                self._snapshot = Snapshot(new, snap.geo, version)
            return UpdateResult(applied, tuple(clamped), tuple(errors), version)

    # -- readers
    def nearby(self, lat: float, lon: float, sku: str, size: str, radius_km: float = 10.0,
               limit: int = 5, min_quantity: int = 1, low_stock_below: int = 3,
               preferred_store: str | None = None, open_at: float | None = None,
               at: float | None = None) -> list[StoreAvailability]:
        """Stores within ``radius_km`` holding at least ``min_quantity`` of
        (sku, size), nearest first (ties by store id), at most ``limit``.
        The preferred store comes first when it qualifies (within the radius
        and in stock), even if it is not among the ``limit`` nearest.
        ``low_stock`` is quantity < ``low_stock_below``.  With ``open_at``
        (seconds since the epoch) only stores open then count, by their
        hours in their time zone; a store without a time zone is kept (its
        hours cannot be placed in time).  With ``at``, each store found says
        whether it is open then (``open_now``; None without a time zone)."""
        return nearby_in(self._snapshot, lat, lon, sku, size, radius_km, limit, min_quantity, low_stock_below,
                         preferred_store, open_at, at)

    def locate(self, request_location, preferred_store, home, request_store=None) -> Location:
        """Where to search: request location, else the request's store (a
        till's), else preferred store, else home."""
        return locate(request_location, preferred_store, home, self._snapshot.data.stores, request_store)

    def nearby_for(self, request_location, preferred_store, home, sku: str, size: str,
                   radius_km: float = 10.0, limit: int = 5, min_quantity: int = 1,
                   low_stock_below: int = 3, open_at: float | None = None,
                   at: float | None = None, request_store: str | None = None) -> NearbyAnswer:
        """:meth:`locate`, then :meth:`nearby` around it with the preferred
        store first, both from one snapshot; no location means no stores,
        and the Location says why."""
        snap = self._snapshot
        where = locate(request_location, preferred_store, home, snap.data.stores, request_store)
        if not where.found:
            return NearbyAnswer(where, [])
        preferred = preferred_store if type(preferred_store) is str else None
        return NearbyAnswer(where, nearby_in(snap, *where.point, sku, size, radius_km, limit, min_quantity,
                                             low_stock_below, preferred, open_at, at))


def nearby_in(snap: Snapshot, lat, lon, sku, size, radius_km, limit, min_quantity, low_stock_below,
              preferred_store, open_at=None, at=None) -> list[StoreAvailability]:
    """:meth:`Inventory.nearby`, answered from ``snap`` alone (positional:
    the decision path calls it on every Decide that shows stores)."""
    check_query(lat, lon, radius_km)
    if limit < 0 or min_quantity < 1 or low_stock_below < 0:
        raise ValueError("limit must be >= 0, min_quantity >= 1 and low_stock_below >= 0")
    by_store = snap.data.stock.get((sku, size))
    if not by_store or limit == 0:
        return []
    index = _item_index(snap, (sku, size), by_store)
    stores = snap.data.stores
    min_quantity = min(min_quantity, MAX_QUANTITY + 1)      # none holds more: the index's counts are 64-bit
    if open_at is None:                 # nearest first, the preferred store first, cut: in C
        hits = index.nearest(lat, lon, radius_km, min_quantity, min(limit, len(index)), preferred_store)
    else:
        hits = ranked(_open_only(index.within(lat, lon, radius_km, min_quantity), stores, open_at),
                      preferred_store)[:limit]     # before the limit: a closed store leaves room for the next
    if at is None:
        return [StoreAvailability(sid, stores[sid].name, d, n, n < low_stock_below)
                for d, sid, n in hits]
    local: dict = {}
    return [StoreAvailability(sid, stores[sid].name, d, n, n < low_stock_below,
                              stores[sid].open_at_time(at, local))
            for d, sid, n in hits]


def ranked(hits: list, preferred_store) -> list:
    """Hits (distance, store id, quantity) nearest first, the preferred
    store's first when it is among them (``ItemIndex.nearest``'s order)."""
    hits = sorted(hits)
    if preferred_store is not None:
        first = [h for h in hits if h[1] == preferred_store]
        hits = first + [h for h in hits if h[1] != preferred_store] if first else hits
    return hits


def _open_only(hits: list, stores: dict, t: float) -> list:
    """The hits (distance, store id, quantity) whose store is open at ``t``
    (:meth:`Store.open_at_time`, inlined: this runs per candidate), or has
    no time zone."""
    local: dict = {}                    # zone -> (weekday, minute) at t
    out = []
    for h in hits:
        store = stores[h[1]]
        tz = store.tz
        if tz is not None:
            wm = local.get(tz)
            if wm is None:
                wm = local[tz] = local_weekday_minute(tz, t)
            hours, m = store.hours, wm[1]
            for a, b in hours.spans_on(wm[2]) if hours.by_date else hours.spans[wm[0]]:
                if a <= m < b:
                    break
            else:
                continue
        out.append(h)
    return out


def _geo_of(data: InventoryData) -> GeoIndex:
    """The stores' geo index, with their compiled table (``geo.table``:
    valid exactly as long as the index) and every item's ``ItemIndex``
    (``geo.item_indexes``): built here, with the data, so that no Decide
    builds one (the first Decide to ask for an item used to, ~25 µs hot
    and several times that cold: the server-side p99 of a server's first
    minutes was set by them; docs/inventory.md)."""
    geo = GeoIndex.of_stores(data.stores.values())
    geo.table = StoreTable(data.stores)
    for key, by_store in data.stock.items():
        _build_item_index(data, geo, key, by_store)
    return geo


def _build_item_index(data: InventoryData, geo: GeoIndex, key: tuple[str, str], by_store: dict) -> ItemIndex:
    """One item's compiled index, kept in ``geo.item_indexes`` with the
    stock dict it was built from (its identity says when it is current)."""
    stores = data.stores
    index = ItemIndex([(stores[sid].lat, stores[sid].lon, sid, n) for sid, n in by_store.items() if sid in stores],
                      geo.table)
    geo.item_indexes[key] = (by_store, index)
    return index


def _item_index(snap: Snapshot, key: tuple[str, str], by_store: dict) -> ItemIndex:
    """The compiled index of the stores holding one item: the one built
    with the snapshot's data or its last update, or else (a reader still
    holding an older snapshot) built now."""
    hit = snap.geo.item_indexes.get(key)
    if hit is not None and hit[0] is by_store:
        return hit[1]
    return _build_item_index(snap.data, snap.geo, key, by_store)


def _check(u: StockUpdate, data: InventoryData) -> tuple[str, str] | None:
    """(field, message) when an update cannot apply, else None."""
    if u.store_id not in data.stores:
        return "store_id", f"unknown store {u.store_id!r}"
    item = data.catalog.get(u.sku)
    if item is None:
        return "sku", f"unknown sku {u.sku!r}"
    if u.size not in item.sizes:
        return "size", f"{u.sku} comes in {' '.join(item.sizes)}, not {u.size!r}"
    if (u.quantity is None) == (u.delta is None):
        return "quantity", "give exactly one of quantity (a count) or delta (a change)"
    if u.quantity is not None and (type(u.quantity) is not int or not 0 <= u.quantity <= MAX_QUANTITY):
        return "quantity", f"a quantity is a whole number from 0 to {MAX_QUANTITY}, not {u.quantity!r}"
    if u.delta is not None and type(u.delta) is not int:
        return "delta", f"a delta is a whole number, not {u.delta!r}"
    return None


def _apply_one(by_store: dict[str, int], u: StockUpdate) -> bool:
    """Apply one checked update to a private table; True when it clamped
    (at 0 or at MAX_QUANTITY)."""
    if u.quantity is not None:
        by_store[u.store_id] = u.quantity
        return False
    n = by_store.get(u.store_id, 0) + u.delta
    by_store[u.store_id] = min(max(n, 0), MAX_QUANTITY)
    return not 0 <= n <= MAX_QUANTITY
