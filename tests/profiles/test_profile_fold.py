"""The fold: one table row per behaviour, the profile's shape checked against
rules/schema.rules, and order independence proven with hypothesis."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.check import types as T
from engine.profiles.events import CHANNELS
from engine.profiles.fold import (DEFAULT_CONFIG, FoldConfig, add_visit, fold, fold_all, lifecycle,
                                  new_profile, public, refresh)
from engine.ruleset import build
from engine.source import SourceFile
from profiles_histories import PROPERTY, ROOMY, events, histories
from profiles_support import DAY, NOW, T0, ev, item

ROOT = Path(__file__).resolve().parents[2]
SLOT = T0 - T0 % 1800          # a visit slot boundary


def folded(*raws, cfg=DEFAULT_CONFIG, start=None):
    return fold_all(start or new_profile("C1"), events(*raws), cfg)


def subset(profile: dict, expected: dict) -> dict:
    """The profile's values at the expected keys (nested one level for dicts)."""
    return {k: profile.get(k) for k in expected}


# ---------------------------------------------------------------- the table
# (name, events, expected attributes)
CASES = [
    ("product view sets last_view",
     [ev("product_view", T0, channel="app", sku="S1", category="shoes")],
     {"last_view": {"category": "shoes", "sku": "S1", "channel": "app", "at": T0}}),
    ("last_view is the latest by event time, not arrival",
     [ev("product_view", T0 + 50, sku="NEW", category="shirts"),
      ev("product_view", T0 + 10, channel="app", sku="OLD", category="shoes")],
     {"last_view": {"category": "shirts", "sku": "NEW", "channel": "web", "at": T0 + 50}}),
    ("presence: first/last seen, channels, last_seen per channel",
     [ev("page_view", T0 + 100), ev("push_open", T0 + 5, channel="app"), ev("page_view", T0 + 50)],
     {"first_seen_at": T0 + 5, "last_seen_at": T0 + 100, "channels": ["app", "web"],
      "last_seen": {"web": T0 + 100, "app": T0 + 5}}),
    ("visits: one per 30-minute slot (from the epoch), at its earliest event",
     [ev("page_view", SLOT + 600), ev("page_view", SLOT + 60), ev("page_view", SLOT + 1800 + 5),
      ev("page_view", SLOT + 7200, channel="app")],
     {"visits": {"web": [SLOT + 60, SLOT + 1800 + 5], "app": [SLOT + 7200]}}),
    ("cart: adds accumulate; value and items",
     [ev("add_to_cart", T0, items=[item("S1", price=10, qty=2)]),
      ev("add_to_cart", T0 + 1, channel="app", items=[item("B1", "coffee-beans", price=7.5)])],
     {"cart": {"skus": ["B1", "S1"], "categories": ["coffee-beans", "shoes"], "items": 3,
               "value": 27.5, "updated_at": T0 + 1}}),
    ("cart is one across channels: added in the app, removed on the web",
     [ev("add_to_cart", T0, channel="app", items=[item("S1", qty=3)]),
      ev("remove_from_cart", T0 + 5, channel="web", items=[{"sku": "S1", "qty": 1}]),
      ev("add_to_cart", T0 + 6, channel="web", items=[item("S2")])],
     {"cart": {"skus": ["S1", "S2"], "categories": ["shoes"], "items": 3, "value": 30.0,
               "updated_at": T0 + 6}}),
    ("cart: removing the whole line; an older add arriving late stays removed",
     [ev("remove_from_cart", T0 + 10, items=[{"sku": "S1"}]),
      ev("add_to_cart", T0, items=[item("S1")])],
     {"cart": {"skus": [], "categories": [], "items": 0, "value": 0.0, "updated_at": T0 + 10}}),
    ("cart: a purchase (any channel) clears the bought skus",
     [ev("add_to_cart", T0, channel="app", items=[item("S1"), item("B1", "coffee-beans")]),
      ev("purchase", T0 + 60, channel="pos", store_id="riverside", items=[item("S1")])],
     {"cart": {"skus": ["B1"], "categories": ["coffee-beans"], "items": 1, "value": 10.0,
               "updated_at": T0 + 60}}),
    ("sizes: POS purchase size per category, the latest by time wins",
     [ev("purchase", T0 + 100, channel="pos", store_id="s1", items=[item("S1", "shoes", size="43")]),
      ev("purchase", T0 + 10, items=[item("S2", "shoes", size="42"), item("T1", "shirts", size="M")])],
     {"sizes": {"shoes": "43", "shirts": "M"}}),
    ("purchases: counters, times, sets, lifetime value to the cent",
     [ev("purchase", T0 + 20, items=[item("S1", price=0.1, qty=3), item("T1", "shirts", price=0.2)]),
      ev("purchase", T0, total=5.55, items=[item("S9", price=9)])],
     {"orders_count": 2, "lifetime_value": 6.05, "first_purchase_at": T0, "last_purchase_at": T0 + 20,
      "purchased_categories": ["shirts", "shoes"], "purchased_skus": ["S1", "S9", "T1"],
      "purchased_at": {"shoes": T0 + 20, "shirts": T0 + 20}}),
    ("searched_sizes: the most frequent, ties to the most recent",
     [ev("search", T0, category="shoes", size="42"), ev("search", T0 + 1, category="shoes", size="42"),
      ev("search", T0 + 2, category="shoes", size="43"), ev("search", T0 + 3, category="shirts", size="M"),
      ev("search", T0 + 4, category="shirts", size="L"), ev("search", T0 + 5, query="socks")],
     {"searched_sizes": {"shoes": "42", "shirts": "L"}}),
    ("preferred_store: most purchases + visits",
     [ev("store_visit", T0, channel="pos", store_id="mall"),
      ev("store_visit", T0 + 1, channel="pos", store_id="riverside"),
      ev("purchase", T0 + 2, channel="pos", store_id="riverside", items=[item("S1")]),
      ev("store_visit", T0 + 3, channel="pos", store_id="mall")],
     {"preferred_store": "mall"}),
    ("preferred_store: a tie goes to the most recent",
     [ev("store_visit", T0 + 5, channel="pos", store_id="mall"),
      ev("store_visit", T0 + 1, channel="pos", store_id="riverside")],
     {"preferred_store": "mall"}),
    ("consent: per topic, the latest by time",
     [ev("consent_change", T0 + 10, email=False), ev("consent_change", T0, email=True, push=True),
      ev("consent_change", T0 + 5, channel="app", sms=True)],
     {"consent": {"email": False, "push": True, "sms": True}}),
    ("email opens and clicks: the latest",
     [ev("email_open", T0 + 5, channel="email"), ev("email_open", T0, channel="email"),
      ev("email_click", T0 + 3, channel="email")],
     {"email": {"last_open_at": T0 + 5, "last_click_at": T0 + 3}}),
    ("offer timelines per offer, ascending",
     [ev("offer_impression", T0 + 9, offer_id="latte"), ev("offer_impression", T0 + 1, offer_id="latte"),
      ev("offer_impression", T0 + 2, offer_id="ten"), ev("offer_redeemed", T0 + 3, offer_id="latte")],
     {"offer_impressions": {"latte": [T0 + 1, T0 + 9], "ten": [T0 + 2]},
      "offer_redemptions": {"latte": [T0 + 3]}}),
    ("wishlist: adds and removes per sku, latest wins",
     [ev("wishlist_add", T0, sku="S1", category="shoes"), ev("wishlist_add", T0 + 1, sku="T1", category="shirts"),
      ev("wishlist_remove", T0 + 2, sku="S1"), ev("wishlist_add", T0 - 5, sku="S1", category="shoes")],
     {"wishlist": {"skus": ["T1"], "categories": ["shirts"], "updated_at": T0 + 2}}),
    ("profile data: home and loyalty points, the latest",
     [ev("profile_update", T0 + 5, loyalty_points=300), ev("profile_update", T0, loyalty_points=100,
                                                          home={"lat": 1, "lon": 2})],
     {"loyalty_points": 300.0, "home": {"lat": 1.0, "lon": 2.0}}),
]


@pytest.mark.parametrize("name, raws, expected", CASES, ids=[c[0] for c in CASES])
def test_fold_table(name, raws, expected):
    assert subset(folded(*raws), expected) == expected


def test_fold_is_pure():
    before = folded(ev("add_to_cart", T0, items=[item("S1")]), ev("product_view", T0, sku="S1", category="shoes"))
    snapshot = json.loads(json.dumps(before))
    for e in events(ev("purchase", T0 + 9, items=[item("S1", size="42")]), ev("page_view", T0 + 99, channel="app"),
                    ev("offer_impression", T0 + 3, offer_id="x"), ev("consent_change", T0 + 4, push=True)):
        fold(before, e)
    assert before == snapshot


# ---------------------------------------------------------------- lifecycle
LIFECYCLE = [
    ("no purchase", {}, NOW, "new"),
    ("first purchase 10 days ago", {"orders_count": 1, "lifetime_value": 50, "first_purchase_at": NOW - 10 * DAY,
                                    "last_purchase_at": NOW - 10 * DAY}, NOW, "new"),
    ("bought over a month", {"orders_count": 3, "lifetime_value": 150, "first_purchase_at": NOW - 90 * DAY,
                             "last_purchase_at": NOW - 5 * DAY}, NOW, "active"),
    ("big spender", {"orders_count": 3, "lifetime_value": 1500, "first_purchase_at": NOW - 90 * DAY,
                     "last_purchase_at": NOW - 5 * DAY}, NOW, "vip"),
    ("many orders", {"orders_count": 12, "lifetime_value": 100, "first_purchase_at": NOW - 90 * DAY,
                     "last_purchase_at": NOW - 5 * DAY}, NOW, "vip"),
    ("lapsed VIP is lapsed", {"orders_count": 30, "lifetime_value": 5000, "first_purchase_at": NOW - 900 * DAY,
                              "last_purchase_at": NOW - 200 * DAY}, NOW, "lapsed"),
]


@pytest.mark.parametrize("name, profile, as_of, stage", LIFECYCLE, ids=[c[0] for c in LIFECYCLE])
def test_lifecycle_table(name, profile, as_of, stage):
    assert lifecycle(profile, as_of) == stage


def test_lifecycle_thresholds_are_configuration():
    p = {"orders_count": 2, "lifetime_value": 300, "first_purchase_at": NOW - 90 * DAY,
         "last_purchase_at": NOW - 40 * DAY}
    assert lifecycle(p, NOW) == "active"
    assert lifecycle(p, NOW, FoldConfig(vip_value=250)) == "vip"
    assert lifecycle(p, NOW, FoldConfig(lapsed_after=30 * DAY)) == "lapsed"


def test_stored_lifecycle_is_as_of_the_latest_event_and_refresh_moves_it():
    p = folded(ev("purchase", NOW - 100 * DAY, items=[item("S1")]), ev("page_view", NOW - 50 * DAY))
    assert p["lifecycle"] == "active"
    assert refresh(p, NOW + 100 * DAY)["lifecycle"] == "lapsed"
    assert refresh(p, NOW) is p


# ---------------------------------------------------------------- bounds
def test_timelines_are_bounded():
    cfg = FoldConfig(max_visits=3, max_offer_times=2, max_offers=2)
    raws = [ev("page_view", T0 + k * 3600) for k in range(6)]
    raws += [ev("offer_impression", T0 + k, offer_id=f"o{k // 3}") for k in range(9)]
    p = folded(*raws, cfg=cfg)
    assert p["visits"]["web"] == [T0 + 3 * 3600, T0 + 4 * 3600, T0 + 5 * 3600]
    assert p["offer_impressions"] == {"o1": [T0 + 4, T0 + 5], "o2": [T0 + 7, T0 + 8]}


def test_cart_and_sku_memory_are_bounded():
    cfg = FoldConfig(max_cart_lines=3, max_cart_ops=2, max_purchased_skus=2, max_wishlist=2)
    raws = [ev("add_to_cart", T0 + k, items=[item(f"S{k}")]) for k in range(5)]
    raws += [ev("add_to_cart", T0 + 10 + k, items=[item("S4")]) for k in range(3)]
    raws += [ev("purchase", T0 + 20 + k, items=[item(f"P{k}")]) for k in range(3)]
    raws += [ev("wishlist_add", T0 + 30 + k, sku=f"W{k}", category="c") for k in range(3)]
    p = folded(*raws, cfg=cfg)
    assert len(p["_fold"]["cart"]) == 3 and all(len(line["ops"]) <= 2 for line in p["_fold"]["cart"].values())
    assert p["purchased_skus"] == ["P1", "P2"]
    assert p["wishlist"]["skus"] == ["W1", "W2"]


def test_add_visit_keeps_the_earliest_event_of_a_slot():
    assert add_visit([], 100.0, 1800, 5) == [100.0]
    assert add_visit([100.0], 50.0, 1800, 5) == [50.0]
    assert add_visit([50.0], 100.0, 1800, 5) == [50.0]
    assert add_visit([50.0, 4000.0], 1900.0, 1800, 5) == [50.0, 1900.0, 4000.0]


# ---------------------------------------------------------------- the schema
SCHEMA = build([SourceFile("rules/schema.rules", (ROOT / "rules/schema.rules").read_text())]).checked.schema["profile"]


def shape_errors(value, t: T.Type, path: str) -> list[str]:
    """Where ``value`` does not have exactly the schema type ``t`` (strict:
    timestamps must already be float seconds, sets sorted unique lists)."""
    k = t.kind
    ok = {"string": lambda v: type(v) is str and (t.members is None or v in t.members),
          "number": lambda v: type(v) in (int, float),
          "bool": lambda v: type(v) is bool,
          "timestamp": lambda v: type(v) is float,
          "geo": lambda v: type(v) is dict and set(v) == {"lat", "lon"} and all(type(x) is float for x in v.values()),
          "set": lambda v: type(v) is list and all(type(x) is str for x in v) and v == sorted(set(v)),
          "timeline": lambda v: type(v) is list and all(type(x) is float for x in v) and v == sorted(v)}
    if k in ok:
        return [] if ok[k](value) else [f"{path}: {value!r} is not {t}"]
    if k == "map":
        if type(value) is not dict:
            return [f"{path}: not a map"]
        return [e for key, v in value.items() for e in shape_errors(v, t.elem, f"{path}[{key!r}]")]
    if k == "record":
        if type(value) is not dict:
            return [f"{path}: not a record"]
        names = dict(t.fields)
        errs = [f"{path}.{n}: not in the schema" for n in value if n not in names and not n.startswith("_")]
        return errs + [e for n, v in value.items() if n in names for e in shape_errors(v, names[n], f"{path}.{n}")]
    return [f"{path}: unexpected schema kind {k}"]


def test_every_table_profile_has_the_schema_shape():
    for name, raws, _ in CASES:
        p = folded(*[dict(r) for r in raws])
        assert shape_errors(p, SCHEMA, "profile") == [], name
        assert [k for k in p if k.startswith("_")] == ["_fold"]


# ---------------------------------------------------------------- deciding from a folded profile
def test_a_folded_profile_decides():
    pack = build([SourceFile("rules/schema.rules", (ROOT / "rules/schema.rules").read_text()),
                  SourceFile("pack.rules", (ROOT / "tests/profiles/data/pack.rules").read_text())])
    p = folded(ev("purchase", T0, channel="pos", store_id="riverside", items=[item("S1", size="42")]),
               ev("product_view", NOW - DAY, channel="app", sku="T1", category="shirts"),
               ev("add_to_cart", NOW - 3600, channel="app", items=[item("B1", "coffee-beans")]),
               ev("consent_change", T0, channel="app", push=True))
    got = pack.values(public(p), {"channel": "web", "category": "shoes"}, NOW)
    assert got == {"homepage_category": "shirts", "prefilled_size": "42", "nearby_store": "riverside",
                   "next_best_offer": "free_latte_with_beans"}


# ---------------------------------------------------------------- properties
@PROPERTY
@given(histories, st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter(history, rnd):
    in_order = fold_all(new_profile("C1"), sorted(history, key=lambda e: (e.timestamp, e.event_id)), ROOMY)
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert fold_all(new_profile("C1"), shuffled, ROOMY) == in_order


@PROPERTY
@given(histories)
def test_profiles_are_json_and_have_the_schema_shape(history):
    p = fold_all(new_profile("C1"), history)
    assert json.loads(json.dumps(p, allow_nan=False)) == p
    assert shape_errors(p, SCHEMA, "profile") == []


def test_shuffled_real_day_folds_the_same():
    day = [ev("product_view", T0 + k * 60, channel=random.Random(k).choice(CHANNELS), sku=f"S{k % 7}",
              category=["shoes", "shirts", "socks"][k % 3]) for k in range(200)]
    evs = events(*day)
    rnd = random.Random(7)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    assert fold_all(new_profile("C1"), shuffled) == fold_all(new_profile("C1"), evs)
