"""The stores source over the in-memory inventory, without a server."""
from __future__ import annotations

import logging
import shutil

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.eval.values import to_geo
from engine.inventory.availability import StockUpdate
from engine.service.errors import FailedPrecondition
from engine.service import results
from engine.service._decide import inventory_answer, inventory_nearby as nearby_compiled
from engine.service.inventory import MAX_LOGGED, InventoryHolder, InventoryStores, reference_nearby
from engine.service.model import Common, NearbyStoresPolicy
from engine.service.sources import NearbyQuery

from .conftest import ROOT

DATA = ROOT / "rules" / "data"
NEAR = (51.5225, -0.1105)


def q(sku="TEE-001", size="M", where=NEAR, preferred=None, home=None, radius=10.0):
    return NearbyQuery(sku, size, where, preferred, home, radius, 5, 1, 3)


@pytest.fixture(scope="module")
def stores():
    return InventoryStores(InventoryHolder.open(DATA))


def test_found_nearest_first_with_the_centre_named(stores):
    found = stores.nearby(q(), None)
    assert found.located_by == "request" and found.empty_reason is None
    assert [s.distance_km for s in found.stores] == sorted(s.distance_km for s in found.stores)


def test_preferred_store_first_and_as_the_centre(stores):
    found = stores.nearby(q(where=None, preferred="s016"), None)
    assert found.located_by == "preferred_store" and found.stores[0].store_id == "s016"


@pytest.mark.parametrize("query, reason", [
    (q(sku=None), "no_sku"), (q(size=None), "no_size"), (q(where=None), "no_location"),
    (q(sku="TEE-001", size="XS", radius=0.01), "no_stock")])
def test_empty_answers_say_why(stores, query, reason):
    found = stores.nearby(query, None)
    assert found.stores == () and found.empty_reason == reason


def test_one_size_products_need_no_size(stores):
    beans = stores.nearby(q(sku="BNS-001", size=None, radius=20), None)
    assert beans.empty_reason is None and beans.stores


def test_no_data_directory_means_no_data():
    found = InventoryStores(InventoryHolder.open(None)).nearby(q(), None)
    assert found.empty_reason == "no_data"


def test_changes_apply_and_a_broken_reload_keeps_the_data(tmp_path):
    shutil.copytree(DATA, tmp_path / "data")
    holder = InventoryHolder.open(tmp_path / "data")
    result = holder.update([StockUpdate("s016", "TEE-001", "M", quantity=7)])
    assert result.applied == 1 and holder.inventory.quantity("s016", "TEE-001", "M") == 7
    (tmp_path / "data" / "stores.csv").write_text("not,the,right,header\n")
    with pytest.raises(FailedPrecondition):
        holder.reload()
    assert holder.inventory.quantity("s016", "TEE-001", "M") == 7
    assert holder.info().stores == 320


# ---------------------------------------------------------------- what a load with bad rows logs
def damage(directory) -> int:
    """Store s012's lat to 591.56, the first stock row's quantity to `two`
    (the audit's edit); the number of s012's stock rows."""
    stores = (directory / "stores.csv").read_text().split("\n")
    fields = stores[12].split(",")
    assert fields[0] == "s012"
    fields[4] = "591.56"
    stores[12] = ",".join(fields)
    (directory / "stores.csv").write_text("\n".join(stores))
    stock = (directory / "inventory.csv").read_text().split("\n")
    stock[1] = stock[1].rsplit(",", 1)[0] + ",two"
    (directory / "inventory.csv").write_text("\n".join(stock))
    return sum(line.startswith("s012,") for line in stock)


def logged(caplog, level):
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def assert_bad_rows_logged(caplog, directory, orphans: int, what: str) -> None:
    warnings = logged(caplog, logging.WARNING)
    assert any(f"{directory / 'stores.csv'}:13:" in w and "error[D105]: column `lat`: `591.56`" in w
               for w in warnings), warnings
    assert any(f"{directory / 'inventory.csv'}:2:" in w and "error[D104]: column `quantity`: `two`" in w
               for w in warnings), warnings
    assert any("error[D108]" in w and f"its {orphans} stock rows are skipped too" in w for w in warnings)
    summary = [w for w in warnings if w.startswith(f"data: store data {what} from")]
    assert len(summary) == 1 and summary[0].endswith(
        f"; skipped 2 rows with errors (stores.csv: 1, inventory.csv: 1) and {orphans} stock rows that refer "
        f"to a skipped store or sku"), summary
    assert "319 stores" in summary[0]


def test_a_startup_load_logs_each_bad_row_and_what_was_skipped(tmp_path, caplog):
    shutil.copytree(DATA, tmp_path / "data")
    orphans = damage(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="maple"):
        holder = InventoryHolder.open(tmp_path / "data")
    assert holder.info().stores == 319
    assert_bad_rows_logged(caplog, tmp_path / "data", orphans, "loaded")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maple"):
        InventoryHolder.open(tmp_path / "data", report=False)        # a worker: its supervisor reports
    assert caplog.records == []


def test_a_watched_reload_logs_each_bad_row_and_what_was_skipped(tmp_path, caplog):
    from engine.server.app import inventory_listener
    shutil.copytree(DATA, tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="maple"):
        holder = InventoryHolder.open(tmp_path / "data")
    assert logged(caplog, logging.WARNING) == []
    assert any(m.startswith("data: store data loaded from") and "320 stores" in m
               for m in logged(caplog, logging.INFO))
    orphans = damage(tmp_path / "data")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maple"):
        inventory_listener(holder, holder.reload)([str(tmp_path / "data" / "stores.csv")])
    assert holder.info().version == 2
    assert_bad_rows_logged(caplog, tmp_path / "data", orphans, "reloaded")


def test_the_logged_problems_are_capped(tmp_path, caplog):
    shutil.copytree(DATA, tmp_path / "data")
    stock = (tmp_path / "data" / "inventory.csv").read_text().split("\n")
    for i in range(1, MAX_LOGGED + 6):
        stock[i] = stock[i].rsplit(",", 1)[0] + ",-"
    (tmp_path / "data" / "inventory.csv").write_text("\n".join(stock))
    with caplog.at_level(logging.INFO, logger="maple"):
        InventoryHolder.open(tmp_path / "data")
    warnings = logged(caplog, logging.WARNING)
    assert sum("error[D10" in w for w in warnings) == MAX_LOGGED
    assert "data: ... and 5 more problems (maple check lists them all)" in warnings
    assert warnings[-1].endswith(f"skipped {MAX_LOGGED + 5} rows with errors (inventory.csv: {MAX_LOGGED + 5})")


class _Aborted(Exception):
    pass


class _Context:
    """What InventoryServicer needs of a grpc.ServicerContext."""

    def set_trailing_metadata(self, metadata):
        pass

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted(details)


def test_reload_inventory_logs_what_it_loaded_and_what_it_refused(tmp_path, caplog):
    import grpc
    from engine.server.app import inventory_listener
    from engine.server.inventory_servicer import InventoryServicer
    from engine.server.pb.maple.v1 import inventory_pb2 as ipb
    shutil.copytree(DATA, tmp_path / "data")
    holder = InventoryHolder.open(tmp_path / "data", report=False)
    servicer = InventoryServicer(holder)
    with caplog.at_level(logging.INFO, logger="maple"):
        reply = servicer.ReloadInventory(ipb.ReloadInventoryRequest(), _Context())
    assert reply.stores == 320 and reply.inventory_version == 2
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"data: store data reloaded from {tmp_path / 'data'} (ReloadInventory): 320 stores, "
                       f"69 skus, {reply.stock_rows} stock rows (version 2)")]
    stores = tmp_path / "data" / "stores.csv"
    stores.write_text("id,name,bogus\n")
    caplog.clear()
    context = _Context()
    with caplog.at_level(logging.INFO, logger="maple"), pytest.raises(_Aborted):
        servicer.ReloadInventory(ipb.ReloadInventoryRequest(), context)
    assert context.code == grpc.StatusCode.FAILED_PRECONDITION and f"{stores}:1:1: error[D003]" in context.details
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f"data: the store data in {tmp_path / 'data'} was not reloaded (ReloadInventory); "
                        f"version 2 keeps serving:\n  {stores}:1:1: error[D003]: the header lacks `address`, "
                        f"`city`, `lat`, `lon`, `hours`")]
    assert holder.info().stores == 320 and holder.info().version == 2
    caplog.clear()                                       # the watcher: the same line, once
    with caplog.at_level(logging.INFO, logger="maple"):
        inventory_listener(holder, holder.reload)([str(stores)])
    assert [(r.levelno, r.getMessage().split(";")[0]) for r in caplog.records] == [
        (logging.ERROR, f"data: the store data in {tmp_path / 'data'} was not reloaded (watch)")]
    assert f"{stores}:1:1: error[D003]" in caplog.records[0].getMessage()


# ---------------------------------------------------------------- the compiled answer against the reference
@pytest.fixture(scope="module")
def sample():
    holder = InventoryHolder.open(DATA)
    data = holder.inventory.snapshot.data
    items = sorted(data.stock)
    positions = [(s.lat, s.lon) for s in data.stores.values()]
    return holder, items, sorted(data.stores), positions


def _answer(fn, holder, query):
    try:
        return fn(holder, query)
    except ValueError as err:                   # a query nearby_in refuses: refused alike
        return ("ValueError", str(err))


def _query(sample, draw) -> NearbyQuery:
    holder, items, store_ids, positions = sample
    sku, size = draw(st.sampled_from(items) | st.tuples(st.sampled_from(["TEE-001", "NOPE", ""]) | st.none(),
                                                         st.none() | st.just("M")))
    def near():
        lat, lon = draw(st.sampled_from(positions))
        return (lat + draw(st.floats(-0.2, 0.2)), lon + draw(st.floats(-0.2, 0.2)))
    where = draw(st.none() | st.builds(near))
    home = draw(st.none() | st.builds(near) | st.builds(lambda p: {"lat": p[0], "lon": p[1]}, st.builds(near))
                | st.fixed_dictionaries({}, optional={"lat": COORDINATE, "lon": COORDINATE}) | st.just("garbage"))
    preferred = draw(st.none() | st.sampled_from(store_ids) | st.just("s-unknown") | st.just(5))
    t = draw(st.none() | st.floats(1.7e9, 1.9e9) | st.sampled_from(CHRISTMAS))
    at = draw(st.just(t) | st.none() | st.floats(1.7e9, 1.9e9))       # a Decide's: the same as open_at
    return NearbyQuery(sku, size, where, preferred, home,
                       draw(st.sampled_from([0.0, 0.5, 2.0, 10.0, 50.0, -1.0, float("nan"), float("inf"), 3])),
                       draw(st.integers(-1, 6) | st.sampled_from([10**6, 2**70, True])),
                       draw(st.integers(-1, 4) | st.sampled_from([10**12, 2**70, 1.5])), draw(st.integers(-1, 4)),
                       draw(st.none() | st.just(t)), at,
                       draw(st.none() | st.sampled_from(store_ids) | st.just("s-unknown")))   # a till's store


# a home's coordinate as a profile may hold it: compiled (``_decide._geo``) and ``values.to_geo`` alike
COORDINATE = (st.floats() | st.integers(-200, 200) | st.floats(-90, 90).map(lambda x: round(x, 3))
              | st.sampled_from([10**400, -(10**400), True, "51.5", None, [51.5]]))


# the reference stores close early on Dec 24 and stay shut on the 25th
CHRISTMAS = [1798106400.0 + h * 3600.0 for h in (-12, 0, 5, 6, 7, 8, 20, 30, 40)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_compiled_nearby_is_the_reference(sample, data):
    query = _query(sample, data.draw)
    assert _answer(nearby_compiled, sample[0], query) == _answer(reference_nearby, sample[0], query)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_home_held_as_a_dict_is_read_as_the_reference_reads_it(sample, data):
    """The search from a profile's home (no location, store or preferred
    store in the request): a ``{"lat": .., "lon": ..}`` home is read in C
    (``_decide._geo``), as ``values.to_geo`` reads it, whatever the
    coordinates hold."""
    holder, items, _, positions = sample
    lat, lon = data.draw(st.sampled_from(positions))
    near = st.floats(-0.05, 0.05)
    home = data.draw(st.builds(lambda a, b: {"lat": lat + a, "lon": lon + b}, near, near)
                     | st.fixed_dictionaries({}, optional={"lat": COORDINATE, "lon": COORDINATE}))
    sku, size = data.draw(st.sampled_from(items))
    query = NearbyQuery(sku, size, None, None, home, 10.0, 3, 1, 2, None, None, None)
    found = _answer(nearby_compiled, holder, query)
    assert found == _answer(reference_nearby, holder, query)
    assert (found.located_by == "home") == (to_geo(home) is not None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), st.booleans())
def test_a_decides_stores_are_the_policy_applied_to_the_reference(sample, data, preferred_first):
    """What a Decide shows (``inventory_answer``: the NearbyStores built
    straight from the store table) is ``results.nearby_answer`` of the
    policy and what ``reference_nearby`` finds."""
    query = _query(sample, data.draw)
    policy = NearbyStoresPolicy(query.radius_km, query.max_stores, query.min_quantity, query.low_stock_below,
                                preferred_first, query.open_at is not None)
    common = Common("rule")
    expected = _answer(reference_nearby, sample[0], query)
    if not isinstance(expected, tuple):
        expected = results.nearby_answer(policy, common, expected, query.preferred_store)
    assert _answer(lambda h, q: inventory_answer(h, policy, common, q), sample[0], query) == expected
