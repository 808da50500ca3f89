"""Where to look for stores: the request's location, else the store the
request comes from (a till's or kiosk's ``context.store``), else the
preferred store's, else the profile's home; with none of them, no stores
and a reason.

Inputs are the raw request and profile values: a geo is ``{"lat": .., "lon":
..}`` or ``[lat, lon]`` (:func:`engine.eval.values.to_geo`); anything else
counts as invalid and the next source is tried.  Every source passed over is
listed in :attr:`Location.skipped`, so an answer can say why it used the
home address, or why it found no stores at all.
"""
from __future__ import annotations

from typing import Mapping

import msgspec

from ..eval.values import to_geo
from .model import Store

# Sources, in the order they are tried.
REQUEST, REQUEST_STORE, PREFERRED_STORE, HOME = "request", "request_store", "preferred_store", "home"
# Why a source was passed over.
MISSING, INVALID, UNKNOWN_STORE = "missing", "invalid", "unknown_store"
# Why there is no location at all.
NO_LOCATION = "no_location"


class Location(msgspec.Struct):         # built on every nearby lookup: a Struct is built in C; read-only
    point: tuple[float, float] | None       # (lat, lon); None when nothing is known
    source: str | None                      # REQUEST | REQUEST_STORE | PREFERRED_STORE | HOME; None: not found
    skipped: tuple[tuple[str, str], ...] = ()   # (source, why) for each source passed over

    @property
    def found(self) -> bool:
        return self.point is not None

    @property
    def reason(self) -> str | None:
        """NO_LOCATION when no source gave a location, else None."""
        return None if self.found else NO_LOCATION

    def explain(self) -> str:
        """One line for logs and --explain: where the location came from."""
        passed = "; ".join(f"{src} {why.replace('_', ' ')}" for src, why in self.skipped)
        if not self.found:
            return f"{NO_LOCATION}: {passed}"
        return f"from {self.source}" + (f" ({passed})" if passed else "")


def locate_point(request_location, preferred_store, home, stores: Mapping[str, Store], request_store=None
                 ) -> tuple[tuple[float, float] | None, str | None]:
    """(point, source) by the same order as :func:`locate`, without the
    account of what was passed over: the decision path's (it runs on every
    Decide that shows stores)."""
    point = to_geo(request_location)
    if point is not None:
        return point, REQUEST
    if request_store is not None and type(request_store) is str and request_store in stores:
        return stores[request_store].position, REQUEST_STORE
    if type(preferred_store) is str and preferred_store in stores:
        return stores[preferred_store].position, PREFERRED_STORE
    point = to_geo(home)
    if point is not None:
        return point, HOME
    return None, None


def locate(request_location, preferred_store, home, stores: Mapping[str, Store], request_store=None
           ) -> Location:
    """The point to search around, by the fallback order above.  The
    request's store is listed as passed over only when one was given (web
    and app requests come from no store)."""
    skipped = []
    point = to_geo(request_location)
    if point is not None:
        return Location(point, REQUEST)
    skipped.append((REQUEST, MISSING if request_location is None else INVALID))
    if request_store is not None:
        if type(request_store) is str and request_store in stores:
            return Location(stores[request_store].position, REQUEST_STORE, tuple(skipped))
        skipped.append((REQUEST_STORE, UNKNOWN_STORE if type(request_store) is str else INVALID))
    if preferred_store is None:
        skipped.append((PREFERRED_STORE, MISSING))
    elif type(preferred_store) is str and preferred_store in stores:
        return Location(stores[preferred_store].position, PREFERRED_STORE, tuple(skipped))
    else:
        skipped.append((PREFERRED_STORE, UNKNOWN_STORE if type(preferred_store) is str else INVALID))
    point = to_geo(home)
    if point is not None:
        return Location(point, HOME, tuple(skipped))
    skipped.append((HOME, MISSING if home is None else INVALID))
    return Location(None, None, tuple(skipped))
