"""Nearby-store availability through a real `maple serve` on the reference
pack and its sample data (rules/, rules/data/): the four decisions end to
end, live stock changes, data reloads, and several workers kept in step."""
from __future__ import annotations

import grpc
import pytest

from engine.inventory.model import MAX_QUANTITY
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.pb.maple.v1 import decision_pb2_grpc
from engine.server.pb.maple.v1 import inventory_pb2 as ipb
from engine.server.pb.maple.v1 import inventory_pb2_grpc

from .conftest import ROOT

RULES = ROOT / "rules"
NOW_S = 1_795_424_400            # 2026-11-23T07:00:00Z
NEAR_RIVERSIDE = pb.GeoPoint(lat=51.5225, lon=-0.1105)
RUNNER = {"customer_id": "c-1001", "lifecycle": "active", "preferred_store": "s016",
          "sizes": {"running-shoes": "42", "t-shirts": "M"}, "home": {"lat": 51.5412, "lon": -0.1022}}
TEE = dict(category="t-shirts", sku="TEE-001")       # Riverside (s016) holds one in M


def request(profile=RUNNER, **ctx) -> pb.DecideRequest:
    ctx.setdefault("channel", pb.CHANNEL_WEB)
    r = pb.DecideRequest(customer_id=profile.get("customer_id", ""), context=pb.RequestContext(**ctx))
    r.context.timestamp.seconds = NOW_S
    r.profile.update(profile)
    return r


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from .conftest import Server
    s = Server(RULES)
    s.wait_health()
    yield s
    s.terminate()


def decide(server, req) -> pb.DecideResponse:
    return decision_pb2_grpc.DecisionServiceStub(server.channel).Decide(req, timeout=10)


def inventory(server):
    return inventory_pb2_grpc.InventoryServiceStub(server.admin_channel)


def test_all_four_decisions_over_the_wire(served):
    shoes = decide(served, request(category="trail-shoes", sku="TRL-002", page="product"))
    assert shoes.prefill_size.size == "42"                       # running-shoe size on a trail-shoe page
    r = decide(served, request(**TEE, location=NEAR_RIVERSIDE, device=pb.DEVICE_MOBILE, page="product"))
    assert r.prefill_size.size == "M"
    stores = r.nearby_stores.stores
    assert stores and stores[0].store_id == "s016" and stores[0].preferred
    assert r.nearby_stores.located_by == "request"
    assert r.nearby_stores.policy.radius_km == 3                # on a phone with a location
    assert all(s.distance_km <= 3 for s in stores)
    assert [s.distance_km for s in stores[1:]] == sorted(s.distance_km for s in stores[1:])
    assert all(s.low_stock == (s.quantity < r.nearby_stores.policy.low_stock_below) for s in stores)
    assert stores[0].quantity == 1 and stores[0].low_stock                # "only 1 left"
    assert r.homepage_category.category and r.next_best_offer.offers


def test_without_a_request_location_the_preferred_store_is_the_centre(served):
    r = decide(served, request(**TEE))
    assert r.nearby_stores.located_by == "preferred_store"
    assert r.nearby_stores.stores[0].store_id == "s016" and r.nearby_stores.stores[0].distance_km == 0


def test_no_location_known_means_no_stores_and_says_why(served):
    r = decide(served, request(profile={"customer_id": "c-9", "sizes": {"trail-shoes": "42"}},
                               category="trail-shoes", sku="TRL-002"))
    assert list(r.nearby_stores.stores) == [] and r.nearby_stores.empty_reason == "no_location"


def test_no_size_known_means_no_stores_and_says_why(served):
    r = decide(served, request(profile={"customer_id": "c-9"}, category="trail-shoes", sku="TRL-002",
                               location=NEAR_RIVERSIDE))
    assert list(r.nearby_stores.stores) == [] and r.nearby_stores.empty_reason == "no_size"


def test_a_sale_at_the_till_changes_the_answer_and_bad_changes_are_reported(served):
    inv = inventory(served)
    before = decide(served, request(**TEE, location=NEAR_RIVERSIDE))
    assert "s016" in [s.store_id for s in before.nearby_stores.stores]
    changes = [ipb.StockChange(store_id="s016", sku="TEE-001", size="M", delta=-1),
               ipb.StockChange(store_id="s999", sku="TEE-001", size="M", delta=-1),
               ipb.StockChange(store_id="s016", sku="TEE-001", size="99", delta=1)]
    reply = inv.UpdateInventory(ipb.UpdateInventoryRequest(changes=changes), timeout=10)
    assert reply.applied == 1
    assert [(e.index, e.field) for e in reply.errors] == [(1, "changes[1].store_id"), (2, "changes[2].size")]
    after = decide(served, request(**TEE, location=NEAR_RIVERSIDE))
    assert "s016" not in [s.store_id for s in after.nearby_stores.stores]
    reload = inv.ReloadInventory(ipb.ReloadInventoryRequest(), timeout=30)
    assert reload.stores == 320
    again = decide(served, request(**TEE, location=NEAR_RIVERSIDE))
    assert "s016" in [s.store_id for s in again.nearby_stores.stores]


def test_a_count_no_client_could_be_sent_is_refused_and_decide_still_answers(served):
    # StoreAvailability.quantity is an int32: 2**40 broke every Decide showing the item (INTERNAL), and
    # 2**63 - 1 plus a delivery overflowed the store index (no stores, degraded)
    inv = inventory(served)
    row = dict(store_id="s016", sku="TEE-001", size="M")
    try:
        reply = inv.UpdateInventory(ipb.UpdateInventoryRequest(changes=[
            ipb.StockChange(**row, quantity=2**40), ipb.StockChange(**row, quantity=2**63 - 1),
            ipb.StockChange(**row, delta=5)]), timeout=10)
        assert [(e.index, e.field) for e in reply.errors] == [(0, "changes[0].quantity"),
                                                              (1, "changes[1].quantity")]
        assert f"from 0 to {MAX_QUANTITY}" in reply.errors[0].message
        assert reply.applied == 1 and list(reply.clamped) == []
        r = decide(served, request(**TEE, location=NEAR_RIVERSIDE))
        assert [s.quantity for s in r.nearby_stores.stores if s.store_id == "s016"] == [6]
        reply = inv.UpdateInventory(ipb.UpdateInventoryRequest(changes=[
            ipb.StockChange(**row, quantity=MAX_QUANTITY), ipb.StockChange(**row, delta=5),
            ipb.StockChange(**row, delta=2**63 - 1)]), timeout=10)
        assert (reply.applied, list(reply.clamped), list(reply.errors)) == (3, [1, 2], [])
        r = decide(served, request(**TEE, location=NEAR_RIVERSIDE))
        assert not r.degraded and r.nearby_stores.stores[0].store_id == "s016"
        assert r.nearby_stores.stores[0].quantity == MAX_QUANTITY and not r.nearby_stores.stores[0].low_stock
    finally:
        inv.ReloadInventory(ipb.ReloadInventoryRequest(), timeout=30)


def test_inventory_needs_the_admin_token(tmp_path, start_server):
    s = start_server(RULES, "--admin-token", "sesame")
    s.wait_health()
    with pytest.raises(grpc.RpcError) as err:
        inventory(s).GetInventory(ipb.GetInventoryRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "InventoryService needs authorization: Bearer <token>"   # the service called
    info = inventory(s).GetInventory(ipb.GetInventoryRequest(), timeout=10,
                                     metadata=[("authorization", "Bearer sesame")])
    assert info.stores == 320


def test_every_worker_sees_every_stock_change(start_server):
    s = start_server(RULES, "--workers", "2")
    s.wait_health()
    reply = inventory(s).UpdateInventory(ipb.UpdateInventoryRequest(changes=[
        ipb.StockChange(store_id="s016", sku="TEE-001", size="M", quantity=0)]), timeout=30)
    assert reply.applied == 1
    # new connections are spread over the workers by the kernel (SO_REUSEPORT)
    seen = set()
    for _ in range(12):
        with grpc.insecure_channel(s.address) as ch:
            r = decision_pb2_grpc.DecisionServiceStub(ch).Decide(
                request(**TEE, location=NEAR_RIVERSIDE), timeout=10)
            seen.add("s016" in [x.store_id for x in r.nearby_stores.stores])
    assert seen == {False}


def test_an_edited_stock_file_is_picked_up_by_the_watcher(start_server, tmp_path):
    import shutil
    import time
    pack = tmp_path / "rules"
    shutil.copytree(RULES, pack)
    s = start_server(pack, "--watch", "poll", "--watch-debounce-ms", "50")
    s.wait_health()

    def riverside_holds_it() -> bool:
        r = decide(s, request(**TEE, location=NEAR_RIVERSIDE))
        return "s016" in [x.store_id for x in r.nearby_stores.stores]

    assert riverside_holds_it()
    stock = pack / "data" / "inventory.csv"
    lines = stock.read_text().splitlines()
    edited = [("s016,TEE-001,M,0" if line.startswith("s016,TEE-001,M,") else line) for line in lines]
    assert edited != lines
    stock.write_text("\n".join(edited) + "\n")
    deadline = time.monotonic() + 60
    while riverside_holds_it():                      # the watcher polls; no fixed sleep
        assert time.monotonic() < deadline, "the edited stock file was never reloaded"
        time.sleep(0.05)
    assert inventory(s).GetInventory(ipb.GetInventoryRequest(), timeout=10).inventory_version > 1


def _open_by_hours(store, t: float) -> bool:
    """A sample store open at t, read from rules/data/stores.csv with the standard library."""
    import csv
    from datetime import datetime
    from zoneinfo import ZoneInfo
    from engine.inventory.model import OpeningHours
    from engine.inventory.public_holidays import public_holidays
    row = next(r for r in csv.DictReader((RULES / "data" / "stores.csv").open(encoding="utf-8"))
               if r["id"] == store)
    local = datetime.fromtimestamp(t, ZoneInfo(row["tz"]))
    region = public_holidays(row["country"]) if row.get("country") else None
    return OpeningHours.parse(row["hours"], region).open_on(local.date(), local.hour * 60 + local.minute)


@pytest.mark.parametrize("hour", [3, 7, 9, 12, 19, 22])
def test_at_the_till_only_stores_open_now_are_offered(served, hour):
    """The reference pack's till rule asks for stores open now (open_now):
    every store offered is open at decided_at by its hours in its zone; at
    night, none is, and the answer says so (none_open) rather than no_stock.
    A phone request at the same moment is not filtered, and every store in
    it says whether it is open."""
    t = NOW_S - 7 * 3600 + hour * 3600                       # Monday 2026-11-23, hour:00 in London (UTC+0)
    till = request(**TEE, channel=pb.CHANNEL_POS, device=pb.DEVICE_TILL, store="s016")
    till.context.timestamp.seconds = t
    r = decide(served, till).nearby_stores
    assert r.policy.open_now and r.policy.radius_km == 25
    assert all(_open_by_hours(s.store_id, t) for s in r.stores)
    assert all(s.HasField("open_now") and s.open_now for s in r.stores)
    phone = request(**TEE, location=NEAR_RIVERSIDE, device=pb.DEVICE_MOBILE)
    phone.context.timestamp.seconds = t
    p = decide(served, phone).nearby_stores
    assert not p.policy.open_now and p.stores                 # Riverside holds one, open or not
    # ...and each store says whether it is open (False is sent, not left out)
    assert all(s.HasField("open_now") and s.open_now == _open_by_hours(s.store_id, t) for s in p.stores)
    if hour == 3:
        assert list(r.stores) == [] and r.empty_reason == "none_open"
    if hour == 12:
        assert len(r.stores) == 5 and r.empty_reason == ""


LES_HALLES = pb.GeoPoint(lat=48.83627, lon=2.35204)     # s158, Paris: Tu-Sa 10:00-13:00,14:00-19:00
HUDSON_YARDS = pb.GeoPoint(lat=40.78029, lon=-73.96840)  # s263, New York: Fr-Sa 07:00-01:00


@pytest.mark.parametrize("where, sku, size, utc, is_open", [
    (LES_HALLES, "RUN-005", "38", "2026-11-24T11:30:00", True),     # Tuesday 12:30 in Paris
    (LES_HALLES, "RUN-005", "38", "2026-11-24T12:30:00", False),    # 13:30: closed for lunch
    (LES_HALLES, "RUN-005", "38", "2026-11-24T13:00:00", True),     # 14:00: open again
    (HUDSON_YARDS, "RUN-002", "42", "2026-11-28T05:30:00", True),   # Saturday 00:30: Friday's late night
    (HUDSON_YARDS, "RUN-002", "42", "2026-11-27T05:30:00", False),  # Friday 00:30: Thursday closed at 22:00
])
def test_lunch_breaks_and_late_nights_in_the_sample_hours(served, where, sku, size, utc, is_open):
    """Split and past-midnight opening hours (rules/data/stores.csv) reach
    the answer: the store the customer stands in says whether it is open,
    and a till asking for stores open now leaves it out while it is shut."""
    from datetime import datetime, timezone
    t = int(datetime.fromisoformat(utc).replace(tzinfo=timezone.utc).timestamp())
    shopper = {"customer_id": "c-hours", "lifecycle": "active", "sizes": {"running-shoes": size}}
    phone = request(shopper, category="running-shoes", sku=sku, location=where, device=pb.DEVICE_MOBILE)
    phone.context.timestamp.seconds = t
    here = decide(served, phone).nearby_stores.stores[0]
    assert here.distance_km == 0 and here.open_now is is_open
    till = request(shopper, category="running-shoes", sku=sku, location=where, channel=pb.CHANNEL_POS,
                   device=pb.DEVICE_TILL)
    till.context.timestamp.seconds = t
    offered = [s.store_id for s in decide(served, till).nearby_stores.stores]
    assert (here.store_id in offered) is is_open


@pytest.mark.parametrize("utc, stores_open", [
    ("2026-12-24T15:00:00", True),      # Christmas Eve in London: open until 16:00
    ("2026-12-24T17:00:00", False),     # ...not until 20:00 as on other Thursdays
    ("2026-12-25T12:00:00", False),     # Christmas Day: every London store closed
    ("2026-12-18T17:00:00", True),      # a Friday the week before: open
])
def test_holidays_in_the_sample_hours(served, utc, stores_open):
    """The sample's dated clauses (Dec 24 09:00-16:00; Dec 25-26 closed in the
    UK) reach the till's open-now search: on Christmas Day it says none_open."""
    from datetime import datetime, timezone
    t = int(datetime.fromisoformat(utc).replace(tzinfo=timezone.utc).timestamp())
    till = request(**TEE, channel=pb.CHANNEL_POS, device=pb.DEVICE_TILL, store="s016")
    till.context.timestamp.seconds = t
    r = decide(served, till).nearby_stores
    assert bool(r.stores) is stores_open
    assert all(_open_by_hours(s.store_id, t) for s in r.stores)
    if not stores_open:
        assert r.empty_reason == "none_open"
    phone = request(**TEE, location=NEAR_RIVERSIDE, device=pb.DEVICE_MOBILE)     # not filtered: each says
    phone.context.timestamp.seconds = t
    p = decide(served, phone).nearby_stores.stores
    assert p and [s.open_now for s in p] == [_open_by_hours(s.store_id, t) for s in p]
    assert any(s.open_now for s in p) is stores_open


MUNICH, BERLIN = pb.GeoPoint(lat=48.137, lon=11.575), pb.GeoPoint(lat=52.52, lon=13.405)


@pytest.mark.parametrize("utc, closed_in", [
    ("2027-01-06T11:00:00", "Munich"),      # Epiphany: a public holiday in Bavaria, not in Berlin
    ("2027-03-08T11:00:00", "Berlin"),      # Women's Day: a public holiday in Berlin, not in Bavaria
])
def test_ph_closes_each_german_city_on_its_own_states_holidays(served, utc, closed_in):
    """Berlin's and Munich's sample stores say 'PH closed' with different
    countries (DE-BE, DE-BY): at noon on one state's holiday every store of
    that city is closed and the other city's are open, over the wire."""
    from datetime import datetime, timezone
    t = int(datetime.fromisoformat(utc).replace(tzinfo=timezone.utc).timestamp())
    open_now = {}
    for city, where in (("Munich", MUNICH), ("Berlin", BERLIN)):
        phone = request(dict(RUNNER, sizes={"t-shirts": "XL"}), **TEE, location=where, device=pb.DEVICE_MOBILE)
        phone.context.timestamp.seconds = t
        found = decide(served, phone).nearby_stores.stores
        assert found, city
        assert [s.open_now for s in found] == [_open_by_hours(s.store_id, t) for s in found]
        open_now[city] = {s.open_now for s in found}
    assert open_now[closed_in] == {False}
    assert True in open_now[({"Munich", "Berlin"} - {closed_in}).pop()]


def test_a_till_request_searches_around_its_own_store(served):
    """At a till the customer stands in the request's store (context.store):
    with no location in the request, a customer Maple knows no store or home
    for gets the stores around that till (located_by request_store); an
    unknown store id falls through to the next source (here: none)."""
    walk_in = {"customer_id": "c-walk-in", "lifecycle": "active", "sizes": {"t-shirts": "M"}}
    till = request(walk_in, **TEE, channel=pb.CHANNEL_POS, device=pb.DEVICE_TILL, store="s016")
    r = decide(served, till).nearby_stores
    assert r.located_by == "request_store" and r.stores
    assert r.stores[0].store_id == "s016" and r.stores[0].distance_km == 0
    lost = request(walk_in, **TEE, channel=pb.CHANNEL_POS, device=pb.DEVICE_TILL, store="s-nowhere")
    r = decide(served, lost).nearby_stores
    assert (list(r.stores), r.located_by, r.empty_reason) == ([], "", "no_location")
