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


class _Memo(dict):
    """Answers that repeat from customer to customer (one per rule, or per
    policy a pack writes), kept instead of built again on every Decide.
    Forgets everything past ``limit`` entries (reloaded packs, offers' fresh
    reasons). What it hands out is shared: read-only, as every result is."""

    def __init__(self, limit: int = 10_000):
        super().__init__()
        self.limit = limit

    def put(self, key, value):
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


_COMMONS = _Memo()
_POLICIES = _Memo()


def common(o: Outcome) -> Common:
    r = o.reason if o.source == "rule" else None
    if (r is not None and r.score is not None) or type(o.experiments) is not tuple:
        # a scored offer's reason is made for this call; a list cannot be a key
        return _common(o.source, r, o.experiments)
    # keyed by the reason's identity (the ruleset keeps one per rule; the
    # entry holds it, so the id cannot be reused while the entry lives)
    key = (o.source, o.experiments, id(r))
    hit = _COMMONS.get(key)
    if hit is not None and hit[0] is r:
        return hit[1]
    return _COMMONS.put(key, (r, _common(o.source, r, o.experiments)))[1]


def _common(source: str, r, experiments) -> Common:
    reason = Reason(r.name, r.because, r.location) if r is not None else None
    return Common(source, reason, tuple(experiments))


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
    return policy_of(o.value if isinstance(o.value, dict) else {})


def policy_of(v: dict) -> NearbyStoresPolicy:
    """The policy a nearby_stores record's fields say (shared per value)."""
    try:
        key = tuple((k, x, x.__class__) for k, x in v.items())   # the class too: True == 1 == 1.0
        hit = _POLICIES.get(key)
    except TypeError:                                            # an unhashable field value
        return _policy(v)
    return hit if hit is not None else _POLICIES.put(key, _policy(v))


def _policy(v: dict) -> NearbyStoresPolicy:
    return NearbyStoresPolicy(
        radius_km=_number(v.get("radius")),
        max_stores=_count(v.get("max_stores")),
        min_quantity=_count(v.get("min_quantity"), 1),
        low_stock_below=_count(v.get("low_stock_below")),
        preferred_first=v.get("preferred_first") is True,
        open_now=v.get("open_now") is True)


def nearby_answer(p: NearbyStoresPolicy, c: Common, found: NearbyFound, preferred_store: str | None) -> NearbyStores:
    """The policy the rules chose applied to what the stores source found."""
    if not found.stores:
        reason = found.empty_reason
        return NearbyStores((), p, c, found.located_by, reason if reason is not None else "no_stock")
    stores = [StoreAvailability(s.store_id, s.name, s.distance_km, s.quantity,
                                s.quantity < p.low_stock_below, s.store_id == preferred_store, s.open_now)
              for s in found.stores if s.quantity >= p.min_quantity]
    if len(stores) > 1:
        stores.sort(key=_preferred_then_nearest if p.preferred_first else _nearest)
    reason = found.empty_reason if not stores else None
    if not stores and reason is None:
        reason = "no_stock"
    return NearbyStores(tuple(stores[:p.max_stores]), p, c, found.located_by, reason)


def _nearest(s: StoreAvailability):
    return s.distance_km


def _preferred_then_nearest(s: StoreAvailability):
    return (not s.preferred, s.distance_km)


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


def from_outcomes(ds, asked: set | None) -> tuple[dict, dict, list, tuple | None]:
    """The reference for ``assemble.Plan.map``: the same (typed fields,
    generic decisions, decided_by, nearby) made from a DecisionSet's
    outcomes, one outcome at a time, as Decide did before the plan."""
    fields: dict = {}
    others: dict = {}
    decided_by: list = []
    nearby_ = None
    for name, o in ds.outcomes.items():
        if asked is not None and name not in asked:
            continue
        reasons = o.reasons
        decided_by.append((name, reasons[0].name if reasons and o.source == "rule" else None))
        if name in (HOMEPAGE, SIZE) and is_text(o):
            fields[name] = homepage(o) if name == HOMEPAGE else prefill(o)
        elif name == OFFER and o.kind == "offer":
            fields[name] = next_best(o)
        elif name == NEARBY and o.kind == "record":
            nearby_ = (policy(o), common(o))
        else:
            others[name] = generic(o)
    return fields, others, decided_by, nearby_
