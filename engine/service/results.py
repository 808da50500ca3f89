"""From the ruleset's outcomes to the service's typed results.

The reference pack's four decisions have typed results
(``homepage_category``, ``prefill_size``, ``nearby_stores``,
``next_best_offer``); a decision with one of those names but another shape
(a custom pack) and every other decision go to the generic map.
"""
from __future__ import annotations

import math
from typing import Any

from ..ruleset import Outcome
from .model import (Common, GenericDecision, HomepageCategory, NearbyStores, NearbyStoresPolicy,
                    NextBestOffers, OfferResult, PrefilledSize, Reason, StoreAvailability)
from .sources import NearbyFound

HOMEPAGE, SIZE, NEARBY, OFFER = "homepage_category", "prefill_size", "nearby_stores", "next_best_offer"
TYPED = (HOMEPAGE, SIZE, NEARBY, OFFER)


def common(o: Outcome) -> Common:
    r = o.reason if o.source == "rule" else None
    reason = Reason(r.name, r.because, r.location) if r is not None else None
    return Common(o.source, reason, tuple(o.experiments))


def is_text(o: Outcome) -> bool:
    return o.kind == "value" and (o.value is None or isinstance(o.value, str))


def homepage(o: Outcome) -> HomepageCategory:
    return HomepageCategory(o.value, common(o))


def prefill(o: Outcome) -> PrefilledSize:
    return PrefilledSize(o.value, common(o))


def offers(o: Outcome) -> tuple[OfferResult, ...]:
    exp, variant = o.experiments[0] if o.experiments else (None, None)
    return tuple(OfferResult(c.id, c.message, _finite(c.score), exp, variant,
                             Reason(c.reason.name, c.reason.because, c.reason.location),
                             jsonable(c.fields)) for c in o.value)


def next_best(o: Outcome) -> NextBestOffers:
    return NextBestOffers(offers(o), common(o))


def policy(o: Outcome) -> NearbyStoresPolicy:
    v = o.value if isinstance(o.value, dict) else {}
    return NearbyStoresPolicy(
        radius_km=_number(v.get("radius")),
        max_stores=_count(v.get("max_stores")),
        min_quantity=_count(v.get("min_quantity"), 1),
        low_stock_below=_count(v.get("low_stock_below")),
        preferred_first=v.get("preferred_first") is True)


def nearby(o: Outcome, found: NearbyFound, preferred_store: str | None,
           p: NearbyStoresPolicy | None = None) -> NearbyStores:
    """The policy the rules chose applied to what the stores source found."""
    p = p or policy(o)
    stores = [StoreAvailability(s.store_id, s.name, s.distance_km, s.quantity,
                                s.quantity < p.low_stock_below, s.store_id == preferred_store)
              for s in found.stores if s.quantity >= p.min_quantity]
    stores.sort(key=lambda s: ((not s.preferred) if p.preferred_first else False, s.distance_km))
    reason = found.empty_reason if not stores else None
    if not stores and reason is None:
        reason = "no_stock"
    return NearbyStores(tuple(stores[:p.max_stores]), p, common(o), found.located_by, reason)


def generic(o: Outcome) -> GenericDecision:
    if o.kind == "offer":
        return GenericDecision(o.kind, None, common(o), offers(o))
    return GenericDecision(o.kind, jsonable(o.value), common(o))


def jsonable(v: Any) -> Any:
    """Kernel values as JSON-like values: geo points become {lat, lon}, sets
    sorted lists, non-finite numbers None."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return {"lat": v[0], "lon": v[1]}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (frozenset, set)):
        return sorted((jsonable(x) for x in v), key=repr)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


def _finite(x) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 0.0


def _number(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 else 0.0


def _count(x, default: int = 0) -> int:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return max(0, min(int(x), 1_000_000))
    return default
