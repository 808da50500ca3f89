"""The geo index answers exactly what a scan of every store answers, in the
same order, everywhere on the globe, and reads far fewer stores."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings, strategies as st

from engine.eval.values import haversine_km
from engine.inventory import GeoIndex, linear_scan
from engine.inventory import geo

# ------------------------------------------------------------------ strategies
lats = st.floats(-90.0, 90.0, allow_nan=False)
lons = st.floats(-180.0, 180.0, allow_nan=False)
polar = st.tuples(st.floats(84.0, 90.0) | st.floats(-90.0, -84.0), lons)
antimeridian = st.tuples(st.floats(-80.0, 80.0), st.floats(178.5, 180.0) | st.floats(-180.0, -178.5))
corners = st.sampled_from([(90.0, 0.0), (-90.0, 0.0), (90.0, 180.0), (-90.0, -180.0), (0.0, 180.0),
                           (0.0, -180.0), (0.0, 0.0), (51.5, -0.1), (89.99999, 179.99999)])
points = st.one_of(st.tuples(lats, lons), polar, antimeridian, corners)
radii = st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 50.0), st.floats(0.0, 2000.0),
                  st.floats(0.0, 25_000.0), st.sampled_from([math.pi * 6371.0088, 20_015.0, 1e9]))


def _index(pts):
    named = [(f"p{i:03d}", lat, lon) for i, (lat, lon) in enumerate(pts)]
    return named, GeoIndex(named)


def _near(data, centre, spread_deg):
    """A point within about spread_deg of centre (clamped into range)."""
    lat = min(90.0, max(-90.0, centre[0] + data.draw(st.floats(-spread_deg, spread_deg))))
    lon = centre[1] + data.draw(st.floats(-spread_deg, spread_deg))
    lon = lon - 360.0 if lon > 180.0 else lon + 360.0 if lon < -180.0 else lon
    return lat, lon


# ------------------------------------------------------------------ index == scan
@settings(max_examples=300, deadline=None)
@given(st.lists(points, max_size=80), points, radii)
@example([(0.0, 179.9999), (0.0, -179.9999)], (0.0, 180.0), 0.02)
@example([(89.9, 0.0), (89.9, 180.0), (89.9, -90.0)], (89.9, 90.0), 25.0)
@example([(-90.0, 0.0)], (-89.0, 123.0), 111.2)
def test_index_matches_scan(pts, query, radius):
    named, index = _index(pts)
    assert index.within(*query, radius) == linear_scan(named, *query, radius)


@settings(max_examples=100, deadline=None)
@given(st.lists(points, max_size=60), points, radii, st.data())
def test_among_measures_only_the_wanted_points(pts, query, radius, data):
    named, index = _index(pts)
    wanted = set(data.draw(st.lists(st.sampled_from([k for k, _, _ in named]), unique=True))) if named else set()
    expected = [(d, k) for d, k in linear_scan(named, *query, radius) if k in wanted]
    assert sorted(index.unsorted_within(*query, radius, among=wanted)) == expected


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([(51.5, -0.1), (89.5, 0.0), (-89.9, 45.0), (10.0, 179.95), (-35.0, -179.9)]),
       st.sampled_from([0.001, 0.05, 1.0, 5.0]))
def test_clusters_near_poles_and_the_antimeridian(data, centre, spread):
    """Dense clusters around the awkward places, queried from inside them."""
    pts = [_near(data, centre, spread) for _ in range(data.draw(st.integers(1, 60)))]
    query = _near(data, centre, spread)
    radius = data.draw(radii | st.floats(0.0, spread * 200.0))
    named, index = _index(pts)
    assert index.within(*query, radius) == linear_scan(named, *query, radius)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(points, min_size=1, max_size=40), points)
def test_a_store_exactly_on_the_rim_is_found(data, pts, query):
    """Radius = the exact distance to one store (and one ulp either side)."""
    named, index = _index(pts)
    target = data.draw(st.sampled_from(pts))
    rim = haversine_km(query, target)
    for radius in (rim, math.nextafter(rim, 0.0), math.nextafter(rim, math.inf)):
        assert index.within(*query, radius) == linear_scan(named, *query, radius)
    found = {k for _, k in index.within(*query, rim)}
    assert any((lat, lon) == target for k, lat, lon in named if k in found)


def test_sample_stores_match_scan(sample_result):
    stores = list(sample_result.data.stores.values())
    named = [(s.id, s.lat, s.lon) for s in stores]
    index = GeoIndex(named)
    rng = random.Random(7)
    for _ in range(300):
        s = rng.choice(stores)
        q = (s.lat + rng.uniform(-0.1, 0.1), s.lon + rng.uniform(-0.1, 0.1))
        radius = rng.choice([0.5, 2.0, 5.0, 10.0, 25.0, 400.0, 6000.0])
        assert index.within(*q, radius) == linear_scan(named, *q, radius)


# ------------------------------------------------------------------ cases
def test_a_pole_query_takes_every_longitude():
    named, index = _index([(89.99, lon) for lon in range(-180, 180, 15)] + [(89.0, 0.0)])
    found = index.within(90.0, 0.0, 2.0)
    assert len(found) == 24 and all(d == pytest.approx(1.112, abs=1e-3) for d, _ in found)


def test_a_query_across_the_antimeridian():
    named, index = _index([(0.0, 179.99), (0.0, -179.99), (0.0, 179.0)])
    assert [k for _, k in index.within(0.0, 180.0, 2.0)] == ["p000", "p001"]  # tie by id
    assert [k for _, k in index.within(0.0, -179.995, 5.0)] == ["p001", "p000"]


def test_a_range_that_touches_180_takes_both_names_of_the_meridian():
    assert geo._lon_ranges(179.0, 180.0) == [(179.0, 180.0), (-180.0, -180.0)]
    assert geo._lon_ranges(-180.0, -179.0) == [(180.0, 180.0), (-180.0, -179.0)]
    assert geo._lon_ranges(170.0, 181.0) == [(170.0, 180.0), (-180.0, -179.0)]
    assert geo._lon_ranges(-10.0, 10.0) == [(-10.0, 10.0)]


def test_tiny_zero_and_huge_radii():
    named, index = _index([(51.5, -0.1), (51.5, -0.1), (-33.9, 151.2)])
    assert index.within(51.5, -0.1, 0.0) == [(0.0, "p000"), (0.0, "p001")]
    assert [k for _, k in index.within(51.5, -0.1, 1e9)] == ["p000", "p001", "p002"]
    assert index.within(51.5, -0.0999, 0.001) == []
    assert len(GeoIndex([])) == 0 and GeoIndex([]).within(0.0, 0.0, 1e9) == []


@pytest.mark.parametrize("lat, lon, radius", [(91.0, 0.0, 1.0), (0.0, -180.5, 1.0), (0.0, 0.0, -1.0),
                                              (math.nan, 0.0, 1.0), (0.0, 0.0, math.inf), (0.0, 0.0, math.nan)])
def test_bad_queries_are_refused(lat, lon, radius):
    with pytest.raises(ValueError):
        GeoIndex([]).within(lat, lon, radius)
    with pytest.raises(ValueError):
        linear_scan([], lat, lon, radius)


def test_the_index_measures_few_stores(monkeypatch):
    """Not a scan: a city-scale query over 10,000 stores measures a small
    multiple of what it finds (counted, not timed)."""
    rng = random.Random(1)
    centres = [(rng.uniform(-60, 70), rng.uniform(-180, 180)) for _ in range(100)]
    named = []
    for i in range(10_000):
        c = centres[i % 100]
        named.append((f"s{i:05d}", c[0] + rng.gauss(0, 0.15), c[1] + rng.gauss(0, 0.15)))
    index = GeoIndex(named)
    calls = 0

    def counting(a, b):
        nonlocal calls
        calls += 1
        return haversine_km(a, b)

    monkeypatch.setattr(geo, "haversine_km", counting)
    found = measured = 0
    for key, lat, lon in named[:200]:
        calls = 0
        found += len(index.within(lat, lon, 5.0))
        measured += calls
    assert measured < 10 * found and measured < 200 * 10_000 / 50
