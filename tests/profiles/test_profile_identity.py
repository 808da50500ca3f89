"""Identity: resolution of aliases to one customer, and the merge rules."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.profiles.fold import fold_all, new_profile, public
from engine.profiles.identity import merge, mint_customer_id, resolve
from profiles_support import NOW, T0, ev, item
from profiles_histories import PROPERTY, ROOMY, events, histories

SEQ = {"A": 1, "B": 2, "C": 3, "Z": 1}


def test_unknown_identifiers_make_a_new_customer_named_by_its_customer_id():
    r = resolve((("customer_id", "C9"), ("device_id", "d1")), {}, SEQ.get)
    assert (r.customer_id, r.new, r.losers) == ("C9", True, ())
    assert set(r.link) == {"customer_id:C9", "device_id:d1"}


def test_without_a_customer_id_the_name_is_minted_from_the_strongest_identifier():
    ids = (("email_hash", "h1"), ("device_id", "d1"))
    r = resolve(ids, {}, SEQ.get)
    assert r.customer_id == mint_customer_id(ids) == mint_customer_id((("email_hash", "h1"),))
    assert r.customer_id.startswith("m-") and r.customer_id != mint_customer_id((("device_id", "d1"),))
    assert f"customer_id:{r.customer_id}" in r.link


def test_one_known_customer_gets_the_new_aliases():
    known = {"device_id:d1": "A"}
    r = resolve((("device_id", "d1"), ("email_hash", "h1")), known, SEQ.get)
    assert (r.customer_id, r.new, r.losers, r.link) == ("A", False, (), ("email_hash:h1",))


def test_two_known_customers_merge_into_the_earlier_created():
    known = {"device_id:d1": "B", "loyalty_card:L1": "A", "email_hash:h1": "C"}
    r = resolve((("loyalty_card", "L1"), ("email_hash", "h1"), ("device_id", "d1")), known, SEQ.get)
    assert r.customer_id == "A" and set(r.losers) == {"B", "C"}
    assert set(r.link) == {"email_hash:h1", "device_id:d1"}


def test_creation_ties_go_to_the_smaller_id():
    r = resolve((("device_id", "d1"), ("email_hash", "h1")), {"device_id:d1": "Z", "email_hash:h1": "A"}, SEQ.get)
    assert (r.customer_id, r.losers) == ("A", ("Z",))


# ---------------------------------------------------------------- merge rules
def profile(cid, seq, *raws):
    return fold_all(new_profile(cid, seq), events(*[{**r, "customer_id": cid} for r in raws]))


def test_merge_rules_table():
    a = profile("A", 1,
                ev("purchase", T0 + 10, channel="pos", store_id="mall", items=[item("S1", "shoes", 20, size="42")]),
                ev("consent_change", T0 + 50, email=True),
                ev("product_view", T0 + 5, sku="S1", category="shoes"),
                ev("add_to_cart", T0 + 1, channel="app", items=[item("B1", "coffee-beans", 8)]),
                ev("offer_impression", T0 + 2, channel="app", offer_id="latte"))
    b = profile("B", 2,
                ev("purchase", T0 + 90, channel="web", items=[item("S2", "shoes", 30.5, size="43"),
                                                               item("T1", "shirts", 10, size="M")]),
                ev("store_visit", T0 + 91, channel="pos", store_id="riverside"),
                ev("store_visit", T0 + 92, channel="pos", store_id="riverside"),
                ev("consent_change", T0 + 40, email=False, push=True),
                ev("product_view", T0 + 99, channel="app", sku="T1", category="shirts"),
                ev("add_to_cart", T0 + 3, items=[item("B1", "coffee-beans", 8)]),
                ev("offer_impression", T0 + 4, channel="web", offer_id="latte"))
    m = merge(a, b)
    assert m["customer_id"] == "A" and m["_fold"]["seq"] == 1                 # the survivor's
    assert m["orders_count"] == 2 and m["lifetime_value"] == 60.5            # counters add
    assert m["first_purchase_at"] == T0 + 10 and m["last_purchase_at"] == T0 + 90
    assert m["purchased_categories"] == ["shirts", "shoes"]                   # sets union
    assert m["purchased_skus"] == ["S1", "S2", "T1"]
    assert m["sizes"] == {"shoes": "43", "shirts": "M"}                      # latest by time
    assert m["consent"] == {"email": True, "push": True}                     # per topic, latest
    assert m["last_view"]["sku"] == "T1"
    assert m["preferred_store"] == "riverside"                               # counts add: 2 vs 1
    assert m["cart"]["items"] == 2 and m["cart"]["skus"] == ["B1"]          # both carts' operations
    assert m["offer_impressions"] == {"latte": [T0 + 2, T0 + 4]}
    assert m["channels"] == ["app", "pos", "web"]
    assert m["last_seen"] == {"app": T0 + 99, "pos": T0 + 92, "web": T0 + 90}


def test_merge_keeps_attributes_only_one_side_has():
    a = profile("A", 1, ev("page_view", T0))
    b = profile("B", 2, ev("profile_update", T0 + 1, loyalty_points=70, home={"lat": 1, "lon": 2}),
                ev("email_open", T0 + 2, channel="email"), ev("wishlist_add", T0, sku="W", category="c"))
    m = merge(a, b)
    assert m["loyalty_points"] == 70.0 and m["home"] == {"lat": 1.0, "lon": 2.0}
    assert m["email"] == {"last_open_at": T0 + 2} and m["wishlist"]["skus"] == ["W"]
    assert merge(b, a)["customer_id"] == "B"


def test_merge_is_pure():
    a = profile("A", 1, ev("purchase", T0, items=[item("S1")]))
    b = profile("B", 2, ev("purchase", T0 + 1, items=[item("S2")]))
    a_public, b_public = public(a), public(b)
    merge(a, b)
    assert public(a) == a_public and public(b) == b_public


# ---------------------------------------------------------------- the merge law
def _split(history, picks):
    left = [e for e, p in zip(history, picks) if p]
    right = [e for e, p in zip(history, picks) if not p]
    return left, right


def _as(cid, evs):
    return [type(e)(e.event_id, e.type, e.channel, e.timestamp, (("customer_id", cid),), e.data, e.index)
            for e in evs]


@PROPERTY
@given(histories, st.lists(st.booleans(), min_size=40, max_size=40))
def test_merging_two_histories_equals_folding_them_together(history, picks):
    """merge(fold(A), fold(B)) == fold(A + B): merging loses and invents nothing."""
    left, right = _split(history, picks)
    a = fold_all(new_profile("A", 1), _as("A", left), ROOMY)
    b = fold_all(new_profile("B", 2), _as("B", right), ROOMY)
    together = fold_all(new_profile("A", 1), _as("A", history), ROOMY)
    assert merge(a, b, ROOMY) == together


@settings(max_examples=60, deadline=None)
@given(histories, st.lists(st.booleans(), min_size=40, max_size=40))
def test_merge_is_symmetric_but_for_the_survivor(history, picks):
    left, right = _split(history, picks)
    a = fold_all(new_profile("A", 1), _as("A", left))
    b = fold_all(new_profile("B", 2), _as("B", right))
    ab, ba = merge(a, b), merge(b, a)
    assert {**ab, "customer_id": "", "_fold": {**ab["_fold"], "seq": 0}} == \
           {**ba, "customer_id": "", "_fold": {**ba["_fold"], "seq": 0}}


def test_merge_of_empty_profiles():
    assert public(merge(new_profile("A", 1), new_profile("B", 2))) == {"customer_id": "A", "lifecycle": "new"}
    assert NOW > T0
