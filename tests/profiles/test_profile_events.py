"""Event validation: every type accepted in its normal shape; every bad
input gets a defined answer naming the event's index and the field."""
from __future__ import annotations

import pytest

from engine.profiles.events import (SPECS, Item, ValidationConfig, event_to_dict, parse_timestamp,
                                    validate_batch)
from profiles_support import DAY, NOW, T0, ev, item

# one good event of every type
GOOD = [
    ev("page_view", page="home"),
    ev("product_view", sku="S1", category="shoes", price=99.5),
    ev("search", query="trail shoes 42", category="shoes", size=42),
    ev("add_to_cart", items=[item("S1", qty=2, size="42")]),
    ev("remove_from_cart", items=[{"sku": "S1"}]),
    ev("purchase", channel="pos", store_id="riverside", items=[item("S1", size="42")]),
    ev("purchase", channel="web", items=[item("S1")], order_id="o1", total=9.5),
    ev("store_visit", channel="pos", store_id="riverside"),
    ev("email_open", channel="email", campaign_id="spring"),
    ev("email_click", channel="email", url="https://example.com/x"),
    ev("push_open", channel="app"),
    ev("offer_impression", channel="app", offer_id="free_latte", placement="home"),
    ev("offer_redeemed", channel="pos", offer_id="free_latte", store_id="riverside"),
    ev("consent_change", email=True, sms=False),
    ev("wishlist_add", sku="S2", category="shirts"),
    ev("wishlist_remove", sku="S2"),
    ev("profile_update", home={"lat": 51.5, "lon": -0.12}, loyalty_points=1200),
    ev("page_view", cid=None, device_id="d-1", timestamp="2025-10-01T10:00:00+02:00"),
    ev("page_view", cid=None, email_hash="ab12", loyalty_card="L-9", channel="call_centre", meta={"x": 1}),
]


def test_every_type_has_a_good_example():
    assert {e["type"] for e in GOOD} == set(SPECS)


@pytest.mark.parametrize("raw", GOOD, ids=lambda e: e["type"])
def test_good_events_pass(raw):
    result = validate_batch([raw], NOW)
    assert result.errors == ()
    (event,) = result.events
    assert event.type == raw["type"] and event.event_id == raw["event_id"]
    assert isinstance(event.timestamp, float)


def test_typed_values():
    (e,) = validate_batch([ev("purchase", T0, channel="pos", store_id="s1",
                              items=[item("S1", size=42, qty=2.0, price=3)])], NOW).events
    assert e.data["items"] == (Item("S1", "shoes", "42", 3.0, 2),)
    assert e.ids == (("customer_id", "C1"),)
    assert e.alias_keys == ("customer_id:C1",)
    (e,) = validate_batch([ev("page_view", "2025-10-01T10:00:00", cid="C9", device_id="d")], NOW).events
    assert e.timestamp == parse_timestamp("2025-10-01T10:00:00Z")
    assert e.ids == (("customer_id", "C9"), ("device_id", "d"))


def test_round_trip_through_dict():
    for raw in GOOD:
        (e,) = validate_batch([raw], NOW).events
        (again,) = validate_batch([event_to_dict(e)], NOW).events
        assert again == e


def _drop(name):
    def mutate(e):
        del e[name]
    return mutate


def _set(name, value):
    def mutate(e):
        e[name] = value
    return mutate


# (base event, mutation, expected error text) — each error names index and field
BAD = [
    (ev("page_view"), _set("type", "purchse"), "events[0].type: unknown event type 'purchse' (did you mean purchase?)"),
    (ev("page_view"), _set("type", "teleport"), "events[0].type: unknown event type 'teleport'"),
    (ev("page_view"), _drop("type"), "events[0].type: is required"),
    (ev("page_view"), _drop("customer_id"), "events[0].customer_id: missing customer identifier"),
    (ev("page_view"), _set("customer_id", ""), "events[0].customer_id: must be a non-empty string"),
    (ev("page_view"), _drop("event_id"), "events[0].event_id: is required"),
    (ev("page_view"), _set("event_id", 7), "events[0].event_id: must be a non-empty string"),
    (ev("page_view"), _set("channel", "fax"), "events[0].channel: unknown channel 'fax'"),
    (ev("page_view"), _drop("channel"), "events[0].channel: is required"),
    (ev("page_view"), _drop("timestamp"), "events[0].timestamp: is required"),
    (ev("page_view"), _set("timestamp", "yesterday"), "events[0].timestamp: must be seconds since the epoch or ISO-8601"),
    (ev("page_view"), _set("timestamp", True), "events[0].timestamp: must be seconds since the epoch or ISO-8601"),
    (ev("page_view"), _set("timestamp", NOW + 25 * 3600), "events[0].timestamp: 1760090000 is 25 h in the future (events may be at most 24 h ahead)"),
    (ev("page_view"), _set("timestamp", NOW - 401 * DAY), "is 401 days in the past (events may be at most 400 days old)"),
    (ev("purchase", items=[item("S1", price=-5)]), None, "events[0].items[0].price: must not be negative"),
    (ev("purchase", items=[item("S1"), item("S2", price="9")]), None, "events[0].items[1].price: must be a number"),
    (ev("purchase", items=[item("S1", qty=0)]), None, "events[0].items[0].qty: must be a whole number from 1 to 10000"),
    (ev("purchase", items=[{"sku": "S1", "price": 1}]), None, "events[0].items[0].category: is required"),
    (ev("purchase", items=[]), None, "events[0].items: must be a non-empty list of items"),
    (ev("purchase", items=[item("S1")], totl=3), None, "events[0].totl: unknown field for purchase events (did you mean total?)"),
    (ev("page_view", custmer_id="C2"), None, "events[0].custmer_id: unknown field for page_view events (did you mean customer_id?)"),
    (ev("purchase", items=[{**item("S1"), "colour": "red"}]), None, "events[0].items[0].colour: unknown field for item events"),
    (ev("purchase", channel="pos", items=[item("S1")]), None, "events[0].store_id: store_id is required on pos events"),
    (ev("purchase", total=-1, items=[item("S1")]), None, "events[0].total: must not be negative"),
    (ev("purchase", total=1e18, items=[item("S1")]), None, "events[0].total: must be a number of at most 1,000,000"),
    (ev("purchase", items=[item("S1", price=1e300)]), None, "events[0].items[0].price: must be a number of at most 1,000,000"),
    (ev("product_view", sku="S1", category="c", price=10 ** 20), None, "events[0].price: must be a number of at most"),
    (ev("store_visit", channel="pos"), None, "events[0].store_id: is required"),
    (ev("product_view", sku="S1"), None, "events[0].category: is required"),
    (ev("consent_change"), None, "events[0].email: give at least one of email, push, sms"),
    (ev("consent_change", email="yes"), None, "events[0].email: must be true or false"),
    (ev("profile_update", home={"lat": 100, "lon": 0}), None, "events[0].home: must be a location"),
    (ev("offer_impression"), None, "events[0].offer_id: is required"),
    (ev("page_view", meta=[1]), None, "events[0].meta: must be an object"),
    ("not an event", None, "events[0]: must be a JSON object, not str"),
    (None, None, "events[0]: must be a JSON object, not null"),
]


@pytest.mark.parametrize("raw, mutate, expected", BAD, ids=[b[2].split(": ", 1)[-1][:40] for b in BAD])
def test_bad_event_answers(raw, mutate, expected):
    raw = dict(raw) if isinstance(raw, dict) else raw
    if mutate:
        mutate(raw)
    result = validate_batch([raw], NOW)
    assert result.events == ()
    texts = [str(e) for e in result.errors]
    assert any(expected in t for t in texts), texts


def test_unknown_store_only_with_a_store_list():
    raw = ev("store_visit", channel="pos", store_id="mars")
    assert validate_batch([raw], NOW).errors == ()
    cfg = ValidationConfig(known_stores=frozenset({"riverside"}))
    (err,) = validate_batch([raw], NOW, cfg).errors
    assert str(err) == "events[0].store_id: unknown store 'mars'"
    assert err.code == "V108" and err.event_id == raw["event_id"]


def test_time_window_is_configurable():
    raw = ev("page_view", NOW - 10 * DAY)
    assert validate_batch([raw], NOW).errors == ()
    cfg = ValidationConfig(max_past=7 * DAY, max_future=60)
    assert "at most 7 days old" in str(validate_batch([raw], NOW, cfg).errors[0])
    assert "at most 1 min ahead" in str(validate_batch([ev("page_view", NOW + 120)], NOW, cfg).errors[0])


def test_errors_by_index_and_the_rest_kept():
    batch = [ev("page_view"), ev("purchase", items=[item("S1", price=-1)]), ev("page_view"),
             ev("teleport"), ev("page_view", cid=None)]
    result = validate_batch(batch, NOW)
    assert [e.index for e in result.events] == [0, 2]
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "items[0].price"), (3, "type"), (4, "customer_id")]


def test_every_problem_of_an_event_is_reported():
    raw = {"event_id": "x", "type": "purchase", "channel": "pos", "timestamp": NOW + 3 * DAY,
           "items": [item("S1", price=-1), {"sku": ""}]}
    fields = [e.field for e in validate_batch([raw], NOW).errors]
    assert fields == ["timestamp", "customer_id", "items[0].price", "items[1].sku",
                      "items[1].category", "items[1].price"]


def test_a_batch_must_be_a_list():
    (err,) = validate_batch({"event_id": "x"}, NOW).errors
    assert err.index == -1 and "must be a list" in err.message


def test_error_to_dict():
    (err,) = validate_batch([ev("teleport")], NOW).errors
    d = err.to_dict()
    assert d["index"] == 0 and d["field"] == "type" and d["code"] == "V101" and d["text"] == str(err)
