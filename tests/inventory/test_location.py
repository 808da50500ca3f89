"""locate(): the request's location, else the request's store (a till's),
else the preferred store's, else home;
none known -> no location, and every source passed over says why.  And
locate_point, its account-free twin on the decision path, agrees."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.inventory.location import NO_LOCATION, Location, locate, locate_point


HERE = {"lat": 51.51, "lon": -0.12}
HOME = [51.4, -0.3]


@pytest.fixture
def stores(small):
    return small.snapshot.data.stores


def test_the_request_location_wins(stores):
    where = locate(HERE, "s001", HOME, stores)
    assert where == Location((51.51, -0.12), "request")
    assert where.found and where.reason is None and where.explain() == "from request"


def test_then_the_preferred_store(stores):
    where = locate(None, "s005", HOME, stores)
    assert (where.point, where.source) == ((48.8566, 2.3522), "preferred_store")
    assert where.skipped == (("request", "missing"),)


def test_then_the_store_the_request_comes_from(stores):
    """A till's request (context.store) is where the customer stands: it
    comes before their preferred store; an unknown one is passed over."""
    where = locate(None, "s001", HOME, stores, request_store="s005")
    assert (where.point, where.source) == ((48.8566, 2.3522), "request_store")
    assert where.skipped == (("request", "missing"),)
    assert locate(HERE, "s001", HOME, stores, request_store="s005").source == "request"
    other = locate(None, "s005", HOME, stores, request_store="s999")
    assert other.source == "preferred_store"
    assert other.skipped == (("request", "missing"), ("request_store", "unknown_store"))


def test_then_home(stores):
    where = locate({"lat": 123, "lon": 0}, "s999", HOME, stores)
    assert (where.point, where.source) == ((51.4, -0.3), "home")
    assert where.skipped == (("request", "invalid"), ("preferred_store", "unknown_store"))
    assert where.explain() == "from home (request invalid; preferred_store unknown store)"


def test_nothing_known_means_no_location_and_a_reason(stores):
    where = locate(None, None, None, stores)
    assert not where.found and where.point is None and where.source is None
    assert where.reason == NO_LOCATION
    assert where.skipped == (("request", "missing"), ("preferred_store", "missing"), ("home", "missing"))
    assert where.explain() == "no_location: request missing; preferred_store missing; home missing"


def test_malformed_values_are_invalid_not_errors(stores):
    where = locate("51.5,-0.1", 42, {"lat": "x", "lon": 0}, stores)
    assert where.reason == NO_LOCATION
    assert [why for _, why in where.skipped] == ["invalid", "invalid", "invalid"]


def test_nearby_for_uses_the_fallbacks(small):
    by_store = small.nearby_for(None, "s003", None, "RUN-001", "42", radius_km=5)
    assert by_store.location.source == "preferred_store"
    assert [a.store_id for a in by_store.stores] == ["s003", "s004", "s001"]
    nothing = small.nearby_for(None, "s999", None, "RUN-001", "42")
    assert nothing.stores == [] and nothing.location.reason == NO_LOCATION
    assert nothing.location.skipped[1] == ("preferred_store", "unknown_store")


geo_values = st.one_of(st.none(), st.just(HERE), st.just(HOME), st.just({"lat": 123, "lon": 0}), st.just("x"),
                       st.tuples(st.floats(-100, 100), st.floats(-200, 200)).map(list))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=geo_values, preferred=st.sampled_from([None, "s001", "s005", "s999", 7]), home=geo_values,
       till=st.sampled_from([None, "s003", "s999", 7]))
def test_locate_point_is_locate_without_the_account(small, request, preferred, home, till):
    """The decision path's locate_point keeps locate's order exactly."""
    stores = small.snapshot.data.stores
    where = locate(request, preferred, home, stores, till)
    assert locate_point(request, preferred, home, stores, till) == (where.point, where.source)


coordinate = (st.floats() | st.sampled_from([90.0, -90.0, 180.0, -180.0, -0.0, 90.0000001]) | st.integers(-200, 200)
              | st.booleans() | st.none() | st.just("51.5"))


@settings(max_examples=500)
@given(coordinate, coordinate)
def test_a_point_reads_the_same_as_a_tuple_a_list_or_a_dict(lat, lon):
    """to_geo takes a (float, float) tuple as it is (the request's point, on
    every Decide); it must read it as it reads the same point in any form."""
    from engine.eval.values import to_geo
    point = to_geo((lat, lon))
    assert point == to_geo([lat, lon]) == to_geo({"lat": lat, "lon": lon})
    assert point is None or (type(point) is tuple and all(type(x) is float for x in point))
