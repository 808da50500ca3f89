"""Hypothesis strategies for the profile tests: random event histories of
one customer over a small universe (few skus, categories, stores, times),
so collisions, ties and reorderings are common."""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from engine.profiles.events import CHANNELS, validate_batch
from engine.profiles.fold import FoldConfig
from profiles_support import NOW, T0, ev, item

#: Bounds far above what a history here can reach: the properties hold exactly.
ROOMY = FoldConfig(max_cart_ops=1000, max_cart_barriers=1000, max_visits=1000, max_offer_times=1000)


def events(*raws):
    """Validated events (the test fails on any validation error)."""
    result = validate_batch(list(raws), NOW)
    assert result.errors == (), [str(e) for e in result.errors]
    return result.events


_times = st.integers(0, 300).map(lambda k: T0 + k * 450.0)          # collisions and shared visit slots
_sku = st.sampled_from(["S1", "S2", "S3"])
_cat = st.sampled_from(["shoes", "shirts"])
_size = st.sampled_from(["40", "42", "M"])
_line = st.builds(lambda s, c, p, q, z: item(s, c, p, q, z), _sku, _cat,
                  st.sampled_from([0.0, 1.1, 9.99, 25.0]), st.sampled_from([None, 1, 2]), st.none() | _size)
_kinds = {
    "page_view": st.fixed_dictionaries({}),
    "product_view": st.fixed_dictionaries({"sku": _sku, "category": _cat}),
    "search": st.fixed_dictionaries({"category": _cat, "size": _size}),
    "add_to_cart": st.fixed_dictionaries({"items": st.lists(_line, min_size=1, max_size=2)}),
    "remove_from_cart": st.fixed_dictionaries({"items": st.lists(
        st.builds(lambda s, q: {"sku": s, **({"qty": q} if q else {})}, _sku, st.sampled_from([None, 1])),
        min_size=1, max_size=2)}),
    "purchase": st.fixed_dictionaries({"items": st.lists(_line, min_size=1, max_size=2),
                                       "store_id": st.sampled_from(["mall", "riverside"])}),
    "store_visit": st.fixed_dictionaries({"store_id": st.sampled_from(["mall", "riverside"])}),
    "email_open": st.fixed_dictionaries({}),
    "email_click": st.fixed_dictionaries({}),
    "push_open": st.fixed_dictionaries({}),
    "offer_impression": st.fixed_dictionaries({"offer_id": st.sampled_from(["latte", "ten"])}),
    "offer_redeemed": st.fixed_dictionaries({"offer_id": st.sampled_from(["latte", "ten"])}),
    "consent_change": st.fixed_dictionaries({"email": st.booleans()}, optional={"push": st.booleans()}),
    "wishlist_add": st.fixed_dictionaries({"sku": _sku, "category": _cat}),
    "wishlist_remove": st.fixed_dictionaries({"sku": _sku}),
    "profile_update": st.fixed_dictionaries({"loyalty_points": st.sampled_from([0, 10, 20])}),
}
_event = st.sampled_from(sorted(_kinds)).flatmap(
    lambda kind: st.tuples(st.just(kind), _times, st.sampled_from(CHANNELS), _kinds[kind]))
histories = st.lists(_event, min_size=1, max_size=40).map(
    lambda evs: events(*[ev(k, t, channel="pos" if k == "purchase" else ch, event_id=f"h{i:03d}", **f)
                         for i, (k, t, ch, f) in enumerate(evs)]))

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
