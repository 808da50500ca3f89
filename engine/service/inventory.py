"""Store availability for decisions, and live stock changes.

:class:`InventoryHolder` owns one process's in-memory stores and stock
(engine.inventory: data files, geo index, copy-on-write snapshots) and
applies changes and reloads; :class:`InventoryStores` answers the decision
service's nearby-store questions from it.  The server builds one holder per
decision process (``--data DIR``, default ``RULES/data``); with several
workers the supervisor sends every change to each of them in order.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..inventory import Inventory
from ..inventory.availability import Snapshot, StockUpdate, UpdateResult, nearby_in
from ..inventory.loader import InventoryLoadError, LoadReport
from ..inventory.location import locate_point
from ._decide import inventory_nearby
from .errors import FailedPrecondition, InvalidArgument
from .sources import NearbyFound, NearbyQuery

log = logging.getLogger("maple.inventory")

MAX_CHANGES = 100_000
#: data problems logged one per line at a load; the rest are counted (``maple check`` lists them all)
MAX_LOGGED = 20


@dataclass(frozen=True)
class InventoryInfo:
    directory: str
    stores: int
    skus: int
    stock_rows: int
    version: int
    loaded_at: float


@dataclass(frozen=True)
class ReloadSummary:
    info: InventoryInfo
    problems: tuple[str, ...]
    report: LoadReport | None = None


class DataRefused(FailedPrecondition):
    """A reload whose files cannot be used as a whole; the current data stays.
    ``errors``: the loader's (``file:line:col: error[Dxxx]: ...``)."""

    def __init__(self, errors):
        self.errors = tuple(errors)
        super().__init__("the data files cannot be used; the current data stays: "
                         + "; ".join(str(e) for e in self.errors[:10]))


def log_load(what: str, info: InventoryInfo, report: LoadReport | None, logger: logging.Logger = log,
             trigger: str | None = None) -> None:
    """Log a load of the data files: each problem (``file:line:col: error[Dxxx]:
    column `c`: `text`: ...``, at most :data:`MAX_LOGGED`) at WARNING, then
    one line with the counts and what was skipped: the rows with errors and
    the stock rows dropped with a skipped store or sku (WARNING when
    anything was, INFO otherwise).  ``what``: "loaded" or "reloaded";
    ``trigger``: what reloaded it (``watch``, ``ReloadInventory``)."""
    report = report if report is not None else LoadReport()
    for err in report.errors[:MAX_LOGGED]:
        logger.warning("data: %s", err)
    unlogged = len(report.errors) + report.dropped - MAX_LOGGED
    if unlogged > 0:
        logger.warning("data: ... and %d more problem%s (maple check lists them all)", unlogged,
                       "s" * (unlogged != 1))
    summary = report.summary()
    (logger.warning if summary else logger.info)(
        "data: store data %s from %s%s: %d stores, %d skus, %d stock rows (version %d)%s", what, info.directory,
        f" ({trigger})" if trigger else "", info.stores, info.skus, info.stock_rows, info.version,
        f"; {summary}" if summary else "")


class InventoryHolder:
    __slots__ = ("directory", "inventory", "loaded_at", "signature", "__dict__", "__weakref__")

    def __init__(self, directory: str | Path, inventory: Inventory | None, loaded_at: float,
                 signature: tuple = ()):
        self.directory = str(directory)
        self.inventory = inventory
        self.loaded_at = loaded_at
        self.signature = signature          # the data files as they were when last read

    def changed_on_disk(self) -> bool:
        """Whether the data files differ (size, mtime) from those last read."""
        return bool(self.directory) and files_signature(self.directory) != self.signature

    @classmethod
    def open(cls, directory: str | Path | None, report: bool = True) -> "InventoryHolder":
        """Load the data files; no directory (or no stores.csv) means no data.
        ``report``: log the load and its problems (:func:`log_load`); a worker
        of several does not, its supervisor reads the same files and does."""
        if not directory or not (Path(directory) / "stores.csv").exists():
            return cls(directory or "", None, 0.0)
        signature = files_signature(directory)      # before reading: a later edit is then seen as one
        inventory, load_report = Inventory.from_dir(directory)
        holder = cls(directory, inventory, time.time(), signature)
        if report:
            log_load("loaded", holder.info(), load_report)
        return holder

    def known_stores(self) -> "KnownStores | None":
        """The store ids events may name, following reloads of the data
        (None without store data: any id is accepted)."""
        return KnownStores(self) if self.inventory is not None else None

    # -- changes
    def update(self, updates: Sequence[StockUpdate]) -> UpdateResult:
        if self.inventory is None:
            raise FailedPrecondition(f"no store data is loaded (no stores.csv in {self.directory or '--data'})")
        if len(updates) > MAX_CHANGES:
            raise InvalidArgument("changes", f"at most {MAX_CHANGES} changes per call, got {len(updates)}")
        return self.inventory.apply(updates)

    def reload(self) -> ReloadSummary:
        if not self.directory:
            raise FailedPrecondition("the server was started without a data directory (--data)")
        signature = files_signature(self.directory)
        try:
            if self.inventory is None:
                self.inventory, report = Inventory.from_dir(self.directory)
            else:
                report = self.inventory.reload(self.directory)
        except InventoryLoadError as err:
            raise DataRefused(err.errors) from None
        self.loaded_at = time.time()
        self.signature = signature
        return ReloadSummary(self.info(), tuple(str(e) for e in report.errors[:100]), report)

    def info(self) -> InventoryInfo:
        if self.inventory is None:
            return InventoryInfo(self.directory, 0, 0, 0, 0, 0.0)
        data = self.inventory.snapshot.data
        rows = sum(len(by_store) for by_store in data.stock.values())
        return InventoryInfo(self.directory, len(data.stores), len(data.catalog), rows,
                             self.inventory.version, self.loaded_at)


def reload_logged(holder: InventoryHolder, reload, trigger: str, logger: logging.Logger = log) -> ReloadSummary:
    """``reload()`` the data files of ``holder`` (its own ``reload``, or the
    supervisor's fan-out to every worker) and log the outcome once, whatever
    asked for it (``trigger``: ``watch``, ``ReloadInventory``): the loaded
    counts as :func:`log_load` does, or, for files that cannot be used, one
    ERROR with every problem as ``file:line:col: error[Dxxx]: ...`` (the
    current data keeps serving; the error is raised on)."""
    try:
        summary = reload()
    except FailedPrecondition as err:
        problems = [str(e) for e in getattr(err, "errors", ())] or [err.message]
        shown = "\n  ".join(problems[:MAX_LOGGED])
        if len(problems) > MAX_LOGGED:
            shown += f"\n  ... and {len(problems) - MAX_LOGGED} more"
        serving = (f"version {holder.info().version} keeps serving" if holder.inventory is not None
                   else "no store data is served")
        logger.error("data: the store data in %s was not reloaded (%s); %s:\n  %s",
                     holder.directory or "--data", trigger, serving, shown)
        raise
    log_load("reloaded", summary.info, summary.report, logger, trigger)
    return summary


class InventoryStores:
    """The decision service's StoresSource over an InventoryHolder."""

    __slots__ = ("holder", "__dict__", "__weakref__")          # read by the compiled Decide

    def __init__(self, holder: InventoryHolder):
        self.holder = holder

    def nearby(self, query: NearbyQuery, timeout: float | None) -> NearbyFound:
        """Where the customer is (request, preferred store, home), then the
        stores there holding the item: compiled (``_decide.inventory_nearby``)."""
        return inventory_nearby(self.holder, query)


def reference_nearby(holder: InventoryHolder, query: NearbyQuery) -> NearbyFound:
    """:meth:`InventoryStores.nearby` in Python, step by step through
    ``locate_point`` and ``nearby_in``: the reference the compiled one is
    held to (tests/server/test_inventory_domain.py)."""
    inv = holder.inventory
    if inv is None:
        return NearbyFound((), None, "no_data")
    snap = inv.snapshot                          # one state for every step
    stores = snap.data.stores
    point, source = locate_point(query.request_location, query.preferred_store, query.home, stores,
                                 query.request_store)
    if point is None:
        return NearbyFound((), None, "no_location")
    located_by = source                          # REQUEST, REQUEST_STORE, PREFERRED_STORE, HOME: the answer's names
    sku = query.sku
    if not sku:
        return NearbyFound((), located_by, "no_sku")
    size = query.size if query.size is not None else _one_size(snap, sku)
    if size is None:
        return NearbyFound((), located_by, "no_size")
    preferred = query.preferred_store if type(query.preferred_store) is str else None
    min_quantity = max(1, query.min_quantity)
    found = nearby_in(snap, point[0], point[1], sku, size, query.radius_km, query.max_stores, min_quantity,
                      max(0, query.low_stock_below), preferred, query.open_at, query.at)
    if found:
        return NearbyFound(tuple(found), located_by, None)
    if query.open_at is not None and nearby_in(snap, point[0], point[1], sku, size, query.radius_km, 1,
                                               min_quantity, 0, preferred):
        return NearbyFound((), located_by, "none_open")   # in stock nearby, but every such store is closed now
    return NearbyFound((), located_by, "no_stock")


def _one_size(snap: Snapshot, sku: str) -> str | None:
    """A product sold in a single size needs no size from the customer."""
    item = snap.data.catalog.get(sku)
    sizes = getattr(item, "sizes", ()) if item is not None else ()
    return sizes[0] if len(sizes) == 1 else None


DATA_FILES = ("stores.csv", "catalog.csv", "inventory.csv")


def files_signature(directory: str | Path) -> tuple:
    out = []
    for name in DATA_FILES:
        try:
            st = os.stat(os.path.join(directory, name))
            out.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


class KnownStores:
    """``store_id in known``: the stores of the inventory loaded now (the
    event validator's ``known_stores``)."""

    def __init__(self, holder: InventoryHolder):
        self.holder = holder

    def __contains__(self, store_id) -> bool:
        inv = self.holder.inventory
        return inv is None or store_id in inv.snapshot.data.stores
