"""nearby(): filtering, order, the preferred store, the low-stock flag; live
updates (absolute, delta, clamping, bad updates by index); reload."""
from __future__ import annotations

import random

import pytest

from engine.eval.values import haversine_km
from engine.inventory import Inventory, InventoryData, StockUpdate, StoreAvailability, load_dir
from engine.inventory.model import MAX_QUANTITY

from .conftest import STORES, write_data

RIVERSIDE = (51.5, -0.1)          # s001; s002..s004 lie 0.69, 1.38, 2.08 km east


def ids(answers):
    return [a.store_id for a in answers]


# ------------------------------------------------------------------ nearby
def test_nearest_first_in_stock_only(small):
    found = small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)
    assert ids(found) == ["s001", "s003", "s004"]          # s002 carries it but has 0
    assert [round(a.distance_km, 2) for a in found] == [0.0, 1.38, 2.08]
    assert found[0] == StoreAvailability("s001", "Riverside", 0.0, 1, True)


def test_radius_limit_and_min_quantity(small):
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=1.5)) == ["s001", "s003"]
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, limit=2)) == ["s001", "s003"]
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, min_quantity=2)) == ["s003", "s004"]
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=500)) == ["s001", "s003", "s004", "s005"]
    assert small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, limit=0) == []


def test_unknown_or_unstocked_items_find_nothing(small):
    assert small.nearby(*RIVERSIDE, "RUN-001", "40", radius_km=50) == []
    assert small.nearby(*RIVERSIDE, "NOPE", "42", radius_km=50) == []


def test_low_stock_flag(small):
    flags = {a.store_id: (a.quantity, a.low_stock)
             for a in small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, low_stock_below=2)}
    assert flags == {"s001": (1, True), "s003": (4, False), "s004": (2, False)}
    flags = {a.store_id: a.low_stock for a in small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)}
    assert flags == {"s001": True, "s003": False, "s004": True}          # default: below 3
    assert not any(a.low_stock for a in small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5,
                                                     low_stock_below=0))


def test_the_preferred_store_comes_first_when_it_qualifies(small):
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, preferred_store="s004")) == [
        "s004", "s001", "s003"]
    # first even when it is not among the `limit` nearest
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, limit=1, preferred_store="s004")) == ["s004"]


@pytest.mark.parametrize("preferred, why", [("s002", "out of stock"), ("s005", "outside the radius"),
                                            ("s999", "unknown")])
def test_a_preferred_store_that_does_not_qualify_is_left_out(small, preferred, why):
    found = small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, preferred_store=preferred)
    assert ids(found) == ["s001", "s003", "s004"], why


@pytest.mark.parametrize("kwargs", [dict(radius_km=-1), dict(limit=-1), dict(min_quantity=0),
                                    dict(low_stock_below=-1), dict(radius_km=float("nan"))])
def test_bad_arguments_are_refused(small, kwargs):
    with pytest.raises(ValueError):
        small.nearby(*RIVERSIDE, "RUN-001", "42", **kwargs)


def test_nearby_matches_a_brute_force_answer_on_the_sample_data(sample_result):
    data = sample_result.data
    inv = Inventory(data)
    rng = random.Random(3)
    stores = list(data.stores.values())
    for _ in range(200):
        s = rng.choice(stores)
        lat, lon = s.lat + rng.uniform(-0.05, 0.05), s.lon + rng.uniform(-0.05, 0.05)
        item = rng.choice(list(data.catalog.values()))
        size, radius, limit = rng.choice(item.sizes), rng.choice([1.0, 3.0, 10.0, 30.0]), rng.choice([1, 3, 10])
        expected = sorted((haversine_km((lat, lon), t.position), t.id, data.quantity(t.id, item.sku, size))
                          for t in stores)
        expected = [(d, sid, n) for d, sid, n in expected if d <= radius and n >= 1][:limit]
        got = inv.nearby(lat, lon, item.sku, size, radius_km=radius, limit=limit)
        assert [(a.distance_km, a.store_id, a.quantity) for a in got] == expected


# ------------------------------------------------------------------ updates
def test_absolute_counts_and_deltas(small):
    result = small.apply([StockUpdate("s002", "RUN-001", "42", quantity=5),
                          StockUpdate("s001", "RUN-001", "42", delta=2),
                          StockUpdate("s001", "RUN-001", "42", delta=-1),      # in order: 1 + 2 - 1
                          StockUpdate("s005", "TEE-001", "S", delta=4)])        # a size not stocked before
    assert (result.applied, result.clamped, result.errors) == (4, (), ())
    assert small.quantity("s002", "RUN-001", "42") == 5
    assert small.quantity("s001", "RUN-001", "42") == 2
    assert small.quantity("s005", "TEE-001", "S") == 4
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=1)) == ["s001", "s002"]


def test_a_delta_below_zero_clamps_and_is_reported(small):
    result = small.apply([StockUpdate("s001", "RUN-001", "42", delta=-3),
                          StockUpdate("s003", "RUN-001", "42", delta=-1)])
    assert result.applied == 2 and result.clamped == (0,)
    assert small.quantity("s001", "RUN-001", "42") == 0
    assert small.quantity("s003", "RUN-001", "42") == 3


def test_a_count_above_the_maximum_is_rejected_by_index(small):
    # a count beyond MAX_QUANTITY cannot be sent to a client (int32) or held by the store index (int64)
    result = small.apply([StockUpdate("s001", "RUN-001", "42", quantity=2**40),
                          StockUpdate("s001", "RUN-001", "42", quantity=2**63 - 1),
                          StockUpdate("s001", "RUN-001", "42", quantity=MAX_QUANTITY + 1),
                          StockUpdate("s003", "RUN-001", "42", quantity=MAX_QUANTITY)])
    assert [(e.index, e.field) for e in result.errors] == [(0, "quantity"), (1, "quantity"), (2, "quantity")]
    assert f"from 0 to {MAX_QUANTITY}, not {2**40}" in result.errors[0].message
    assert result.applied == 1 and result.clamped == ()
    assert small.quantity("s001", "RUN-001", "42") == 1 and small.quantity("s003", "RUN-001", "42") == MAX_QUANTITY


def test_a_delta_above_the_maximum_clamps_and_is_reported(small):
    result = small.apply([StockUpdate("s001", "RUN-001", "42", quantity=MAX_QUANTITY),
                          StockUpdate("s001", "RUN-001", "42", delta=5),            # over by 5
                          StockUpdate("s003", "RUN-001", "42", delta=2**63 - 1),    # over by far
                          StockUpdate("s004", "RUN-001", "42", delta=MAX_QUANTITY - 2),
                          StockUpdate("s004", "RUN-001", "42", delta=-2**63)])      # and back below zero
    assert (result.applied, result.clamped, result.errors) == (5, (1, 2, 4), ())
    assert small.quantity("s001", "RUN-001", "42") == MAX_QUANTITY
    assert small.quantity("s003", "RUN-001", "42") == MAX_QUANTITY
    assert small.quantity("s004", "RUN-001", "42") == 0
    found = small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)
    assert [(a.store_id, a.quantity) for a in found] == [("s001", MAX_QUANTITY), ("s003", MAX_QUANTITY)]


def test_bad_updates_are_reported_by_index_and_the_rest_applied(small):
    result = small.apply([
        StockUpdate("s001", "RUN-001", "42", quantity=7),
        StockUpdate("s999", "RUN-001", "42", quantity=1),
        StockUpdate("s001", "RUN-009", "42", quantity=1),
        StockUpdate("s001", "RUN-001", "39", quantity=1),
        StockUpdate("s001", "RUN-001", "42"),
        StockUpdate("s001", "RUN-001", "42", quantity=1, delta=1),
        StockUpdate("s001", "RUN-001", "42", quantity=-2),
        StockUpdate("s001", "RUN-001", "42", quantity=True),
        StockUpdate("s001", "RUN-001", "42", delta=1.5),
        StockUpdate("s003", "RUN-001", "42", delta=1),
    ])
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "store_id"), (2, "sku"), (3, "size"), (4, "quantity"), (5, "quantity"), (6, "quantity"),
        (7, "quantity"), (8, "delta")]
    assert "RUN-001 comes in 40 41 42 43, not '39'" in result.errors[2].message
    assert result.applied == 2
    assert small.quantity("s001", "RUN-001", "42") == 7 and small.quantity("s003", "RUN-001", "42") == 5


def test_versions_and_copy_on_write(small):
    before = small.snapshot
    assert small.apply([StockUpdate("s999", "RUN-001", "42", quantity=1)]).version == before.version
    assert small.snapshot is before                          # nothing applied, nothing published
    result = small.apply([StockUpdate("s001", "RUN-001", "42", quantity=9)])
    after = small.snapshot
    assert result.version == after.version == before.version + 1
    assert before.data.quantity("s001", "RUN-001", "42") == 1   # the old snapshot never changes
    assert after.data.quantity("s001", "RUN-001", "42") == 9
    assert after.data.stock[("TEE-001", "M")] is before.data.stock[("TEE-001", "M")]   # untouched: shared
    assert after.geo is before.geo and after.data.stores is before.data.stores


def test_reload_swaps_everything_and_drops_live_updates(small, tmp_path):
    small.apply([StockUpdate("s001", "RUN-001", "42", quantity=50)])
    held = small.snapshot
    new_dir = tmp_path / "next"
    new_dir.mkdir()
    write_data(new_dir, inventory="store,sku,size,quantity\ns002,RUN-001,42,6\n",
               stores="id,name,address,city,lat,lon,hours\n"
                      "s002,Bankside,2 Park Lane,London,51.5,-0.09,Mo-Sa 09:00-20:00\n")
    report = small.reload(new_dir)
    assert report.ok and small.version == held.version + 1
    assert ids(small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)) == ["s002"]
    assert small.quantity("s001", "RUN-001", "42") == 0
    assert held.data.quantity("s001", "RUN-001", "42") == 50 and "s001" in held.data.stores


def test_an_inventory_can_start_empty():
    inv = Inventory(InventoryData({}, {}, {}))
    assert inv.nearby(0.0, 0.0, "X", "M", radius_km=100) == []


def test_from_dir_returns_the_report(tmp_path):
    write_data(tmp_path, inventory="store,sku,size,quantity\ns001,RUN-001,42,x\n")
    inv, report = Inventory.from_dir(tmp_path)
    assert [e.code for e in report.errors] == ["D104"]
    assert inv.quantity("s001", "RUN-001", "42") == 0
    assert load_dir(tmp_path).report.skipped["inventory.csv"] == 1


# ------------------------------------------------------------------ open now
def _utc(text: str) -> float:
    from datetime import datetime, timezone
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def zoned(tmp_path):
    """The small data set with time zones: the London stores in Europe/London,
    Borough (s003) without one."""
    lines = STORES.splitlines()
    zones = {"s003": ""}
    rows = [lines[0] + ",tz"] + [f"{line},{zones.get(line.split(',')[0], 'Europe/London')}" for line in lines[1:]]
    result = load_dir(write_data(tmp_path, stores="\n".join(rows) + "\n"))
    assert result.report.ok, result.report.render()
    return Inventory(result.data)


def test_open_now_leaves_out_closed_stores_before_the_limit(zoned):
    sunday_morning = _utc("2026-11-22T10:00:00")          # Sunday, 10:00 in London (UTC+0 in winter)
    found = zoned.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, limit=2, open_at=sunday_morning)
    # Riverside opens at 11:00 on Sundays: left out, and the limit of 2 reaches past it;
    # Borough has no time zone, so its hours cannot be placed: kept
    assert ids(found) == ["s003", "s004"]
    assert ids(zoned.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, limit=2)) == ["s001", "s003"]
    noon = _utc("2026-11-22T12:00:00")
    assert ids(zoned.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, open_at=noon)) == ["s001", "s003", "s004"]


def test_open_now_follows_the_stores_zone_and_summer_time(zoned):
    riverside = zoned.snapshot.data.stores["s001"]
    # Mo-Sa 09:00-20:00 in London: 08:30 UTC is 08:30 in winter (closed), 09:30 in summer (BST: open)
    assert riverside.open_at_time(_utc("2026-01-14T08:30:00")) is False
    assert riverside.open_at_time(_utc("2026-07-15T08:30:00")) is True
    assert riverside.open_at_time(_utc("2026-07-15T19:30:00")) is False      # 20:30 BST
    assert zoned.snapshot.data.stores["s003"].open_at_time(_utc("2026-07-15T12:00:00")) is None


def test_open_now_matches_a_brute_force_answer_on_the_sample_data(sample_result):
    """Every sample store has a time zone; the filter agrees with each store's
    hours read in its zone with the standard library, whatever the hour."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo
    data = sample_result.data
    inv = Inventory(data)
    rng = random.Random(5)
    stores = list(data.stores.values())
    assert all(s.tz for s in stores) and any(s.hours.dated for s in stores)
    assert any(s.hours.ph is not None for s in stores)
    import holidays as python_holidays
    one_day = timedelta(days=1)
    for _ in range(150):
        s = rng.choice(stores)
        lat, lon = s.lat + rng.uniform(-0.05, 0.05), s.lon + rng.uniform(-0.05, 0.05)
        item = rng.choice(list(data.catalog.values()))
        size, radius, limit = rng.choice(item.sizes), rng.choice([3.0, 10.0, 30.0]), rng.choice([1, 3, 10])
        t = _utc("2026-01-01T00:00:00") + rng.uniform(0, 365 * 86400)
        if rng.random() < 0.4:      # the sample's holidays and the days around them
            t = _utc(rng.choice(["2026-01-01", "2026-04-27", "2026-05-01", "2026-11-26", "2026-11-27",
                                 "2026-12-24", "2026-12-25", "2026-12-26", "2026-12-27",
                                 # Berlin's and Bavaria's own holidays (PH), New Year's Eve
                                 "2026-01-06", "2026-03-08", "2026-06-04", "2026-11-01", "2026-12-31"])
                     + "T00:00:00")
            t += rng.uniform(-6 * 3600, 30 * 3600)

        def is_open(store):
            local = datetime.fromtimestamp(t, ZoneInfo(store.tz))
            day, m = local.date(), local.hour * 60 + local.minute
            return (any(a <= m < min(b, 1440) for a, b in written(store.hours, day))            # its own ranges
                    or any(b > 1440 and m < b - 1440 for _a, b in written(store.hours, day - one_day)))

        def written(hours, day):
            """The ranges the hours text gives ``day``: a one-year clause, a yearly one, PH's on
            a public holiday of the store's region (asked of python-holidays), its weekday's."""
            dated = dict(hours.dated)
            for key in ((day.year, day.month, day.day), (day.month, day.day)):
                if key in dated:
                    return dated[key]
            if hours.ph is not None:
                country, _, subdiv = hours.region.partition("-")
                if day in python_holidays.country_holidays(country, subdiv=subdiv or None, years=day.year):
                    return hours.ph
            return hours.days[day.weekday()]
        expected = sorted((haversine_km((lat, lon), u.position), u.id, data.quantity(u.id, item.sku, size))
                          for u in stores if is_open(u))
        expected = [(d, sid, n) for d, sid, n in expected if d <= radius and n >= 1][:limit]
        got = inv.nearby(lat, lon, item.sku, size, radius_km=radius, limit=limit, open_at=t)
        assert [(a.distance_km, a.store_id, a.quantity) for a in got] == expected


def test_with_a_time_each_store_says_whether_it_is_open(zoned):
    sunday_morning = _utc("2026-11-22T10:00:00")
    found = zoned.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5, at=sunday_morning)
    assert [(a.store_id, a.open_now) for a in found] == [("s001", False), ("s003", None), ("s004", True)]
    assert all(a.open_now is None for a in zoned.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5))


def test_every_item_s_index_is_built_with_the_data_and_its_updates_not_by_a_reader(small, monkeypatch, tmp_path):
    """The compiled per-item indexes the decision path reads are built when
    the data loads and when an update changes an item, so no Decide pays
    for one; a reader still holding an older snapshot builds its own."""
    from engine.inventory import availability

    def current(snap):
        return {key: entry[0] is snap.data.stock[key] for key, entry in snap.geo.item_indexes.items()}
    assert current(small.snapshot) == dict.fromkeys(small.snapshot.data.stock, True)
    before = small.snapshot
    kept = dict(before.geo.item_indexes)
    small.apply([StockUpdate("s001", "RUN-001", "42", quantity=9), StockUpdate("s002", "TEE-001", "XL", quantity=4)])
    after = small.snapshot
    assert current(after) == dict.fromkeys(after.data.stock, True)      # the new item (TEE-001, XL) too
    assert all(after.geo.item_indexes[k] is v for k, v in kept.items() if k != ("RUN-001", "42"))

    def no_building(*args):
        raise AssertionError("a reader built an item index")
    monkeypatch.setattr(availability, "_build_item_index", no_building)
    for sku, size in after.data.stock:
        small.nearby(*RIVERSIDE, sku, size, radius_km=50)
    monkeypatch.undo()
    old = availability.nearby_in(before, *RIVERSIDE, "RUN-001", "42", 5.0, 5, 1, 3, None)
    assert {a.store_id: a.quantity for a in old}["s001"] == 1               # the old count, from its own index
    new = small.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)
    assert {a.store_id: a.quantity for a in new}["s001"] == 9
