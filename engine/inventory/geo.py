"""A spatial index over store positions: "which stores lie within R km?".

:class:`GeoIndex` is a stack of latitude/longitude grids, one per cell size
(0.01° doubling up to ~164°).  A query picks the finest grid whose cells are
at least as wide as its radius, so it reads a handful of cells whatever the
radius, then measures each candidate with the same great-circle distance the
rule language uses (:func:`engine.eval.values.haversine_km`, Earth radius
6371.0088 km) and keeps those within the radius.

The cells only prune; the decision is the distance, so the index answers
exactly what :func:`linear_scan` (the oracle in the tests and the baseline in
bench/geo_bench.py) answers, in the same order: by distance, then store id.

The box of cells around a query is the exact bounding box of the spherical
cap (lat ± r; lon ± asin(sin r / cos lat)), widened by a few metres so
rounding can never drop a store on the rim:

* a cap that reaches a pole takes every longitude of its rows;
* a longitude range that crosses ±180° is split in two;
* a row with fewer filled cells than the range asks for is read whole, so
  polar and huge queries cost at most the filled cells;
* a candidate outside the box is dropped with four comparisons before the
  (ten times dearer) haversine.
"""
from __future__ import annotations

import math
from typing import Iterable

from ..eval.values import EARTH_RADIUS_KM, haversine_km

FINEST_DEG = 0.01                 # ~1.1 km of latitude
LEVELS = 15                       # 0.01° .. 163.84°
PAD_RAD = 1e-6                    # ~6 m: covers rounding in the box and in haversine


def _cell(value: float, offset: float, size: float, count: int) -> int:
    """The cell number of a coordinate; monotonic in ``value``."""
    return min(int((value + offset) / size), count - 1)


class _Grid:
    """One level: rows of latitude, each a dict of longitude cells."""

    __slots__ = ("size", "rows", "cols", "cells")

    def __init__(self, size: float):
        self.size = size
        self.rows = math.ceil(180.0 / size)
        self.cols = math.ceil(360.0 / size)
        self.cells: dict[int, dict[int, list]] = {}

    def add(self, entry: tuple) -> None:
        (lat, lon), _ = entry
        row = self.cells.setdefault(_cell(lat, 90.0, self.size, self.rows), {})
        row.setdefault(_cell(lon, 180.0, self.size, self.cols), []).append(entry)

    def gather(self, lat_lo: float, lat_hi: float, lon_ranges) -> list[list]:
        """The cells of rows lat_lo..lat_hi, columns in ``lon_ranges``
        (a list of (lo, hi) in -180..180, or None for every column)."""
        size, cols, cells = self.size, self.cols, self.cells
        col_ranges = None if lon_ranges is None else [
            (_cell(lo, 180.0, size, cols), _cell(hi, 180.0, size, cols)) for lo, hi in lon_ranges]
        out = []
        for r in range(_cell(lat_lo, 90.0, size, self.rows), _cell(lat_hi, 90.0, size, self.rows) + 1):
            row = cells.get(r)
            if not row:
                continue
            if col_ranges is None:
                out.extend(row.values())
                continue
            for c0, c1 in col_ranges:
                if c1 - c0 + 1 > len(row):
                    out.extend(cell for c, cell in row.items() if c0 <= c <= c1)
                else:
                    for c in range(c0, c1 + 1):
                        cell = row.get(c)
                        if cell:
                            out.append(cell)
        return out


class GeoIndex:
    """Points (store id, lat, lon) indexed for radius queries.  Immutable
    once built; build a new one to change the points."""

    __slots__ = ("_entries", "item_indexes", "table", "_grids", "__dict__", "__weakref__")

    def __init__(self, points: Iterable[tuple[str, float, float]]):
        self._entries = [((float(lat), float(lon)), key) for key, lat, lon in points]
        #: per (sku, size): (its stock dict, its compiled ItemIndex); see
        #: availability._item_index (lives here because it is valid exactly
        #: as long as these store positions are)
        self.item_indexes: dict = {}
        #: the stores as a compiled table (availability._geo_of), same lifetime
        self.table = None
        self._grids = [_Grid(FINEST_DEG * 2 ** k) for k in range(LEVELS)]
        for entry in self._entries:
            for grid in self._grids:
                grid.add(entry)

    @classmethod
    def of_stores(cls, stores) -> "GeoIndex":
        return cls((s.id, s.lat, s.lon) for s in stores)

    def __len__(self) -> int:
        return len(self._entries)

    def within(self, lat: float, lon: float, radius_km: float) -> list[tuple[float, str]]:
        """(distance km, id) of every point within ``radius_km`` of (lat, lon),
        nearest first, ties by id."""
        found = self.unsorted_within(lat, lon, radius_km)
        found.sort()
        return found

    def unsorted_within(self, lat: float, lon: float, radius_km: float,
                        among=None) -> list[tuple[float, str]]:
        """Like :meth:`within`, in no particular order (callers that filter
        further sort only what they keep).  With ``among`` (a set or dict of
        ids), only those points are measured."""
        check_query(lat, lon, radius_km)
        here = (lat, lon)
        out = []
        cells, (lat_lo, lat_hi, lon_lo, lon_hi) = self._cells(lat, lon, radius_km)
        for cell in cells:
            for pos, key in cell:
                if not (lat_lo <= pos[0] <= lat_hi and lon_lo <= pos[1] <= lon_hi):
                    continue                                  # outside the box: cannot be within
                if among is not None and key not in among:
                    continue
                d = haversine_km(here, pos)
                if d <= radius_km:
                    out.append((d, key))
        return out

    def _cells(self, lat: float, lon: float, radius_km: float) -> tuple[list[list], tuple]:
        """The cells to read and the box (lat_lo, lat_hi, lon_lo, lon_hi)
        a point must lie in to be measured (lon unbounded when the range
        wraps or takes every longitude)."""
        inf = math.inf
        r = radius_km / EARTH_RADIUS_KM + PAD_RAD            # angular radius, padded
        if r >= math.pi:
            return [self._entries], (-inf, inf, -inf, inf)
        r_deg = math.degrees(r)
        grid = self._grid_for(r_deg)
        lat_lo, lat_hi = lat - r_deg, lat + r_deg
        if lat_lo <= -90.0 or lat_hi >= 90.0:                # the cap holds a pole
            return grid.gather(max(lat_lo, -90.0), min(lat_hi, 90.0), None), (lat_lo, lat_hi, -inf, inf)
        x = math.sin(r) / math.cos(math.radians(lat))
        if x >= 1.0:
            return grid.gather(lat_lo, lat_hi, None), (lat_lo, lat_hi, -inf, inf)
        half = math.degrees(math.asin(x) + PAD_RAD)
        ranges = _lon_ranges(lon - half, lon + half)
        box = (lat_lo, lat_hi, *(ranges[0] if len(ranges) == 1 else (-inf, inf)))
        return grid.gather(lat_lo, lat_hi, ranges), box

    def _grid_for(self, r_deg: float) -> _Grid:
        for grid in self._grids:
            if grid.size >= r_deg:
                return grid
        return self._grids[-1]


def _lon_ranges(lo: float, hi: float) -> list[tuple[float, float]]:
    """[lo, hi] (at most 180° + a few metres wide) as ranges inside
    -180..180, split where it reaches ±180: -180 and 180 are one meridian,
    and a store may be filed under either."""
    if lo <= -180.0:
        return [(lo + 360.0, 180.0), (-180.0, hi)]
    if hi >= 180.0:
        return [(lo, 180.0), (-180.0, hi - 360.0)]
    return [(lo, hi)]


def check_query(lat: float, lon: float, radius_km: float) -> None:
    """ValueError unless lat/lon are in range and the radius is finite, >= 0."""
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat must be between -90 and 90, got {lat!r}")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"lon must be between -180 and 180, got {lon!r}")
    if not 0.0 <= radius_km < math.inf:
        raise ValueError(f"radius_km must be a finite number >= 0, got {radius_km!r}")


def linear_scan(points: Iterable[tuple[str, float, float]], lat: float, lon: float,
                radius_km: float) -> list[tuple[float, str]]:
    """The oracle: measure every point.  Same answer and order as
    :meth:`GeoIndex.within`."""
    check_query(lat, lon, radius_km)
    here = (lat, lon)
    out = []
    for key, plat, plon in points:
        d = haversine_km(here, (plat, plon))
        if d <= radius_km:
            out.append((d, key))
    out.sort()
    return out
