"""engine.service.validate: the one-expression pass of the common request
against the field-by-field reference (``violations``), and the request the
rules read (``RequestContext.to_request``); the compiled copies of both that
the Decide path runs (``engine.service._decide``) against them."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.service import _decide
from engine.service.errors import InvalidArgument
from engine.service.model import DecideQuery, RequestContext
from engine.service.validate import (MAX_ID, MAX_TEXT, MAX_TIME, MIN_TIME, SHAPE_CHECK_BYTES, common_case,
                                     validate_query, violations)

NAMES = ("homepage_category", "prefill_size", "nearby_stores", "next_best_offer")


def around(limit: int) -> st.SearchStrategy[str]:
    """Text of about ``limit`` characters, either side of it."""
    return st.integers(max(0, limit - 2), limit + 2).map(lambda n: "x" * n)


texts = st.none() | st.text(max_size=4) | around(MAX_TEXT)
coordinates = st.sampled_from([0.0, 90.0, -90.0, 180.0, -180.0, 90.000001, -180.000001, math.nan, math.inf,
                               -math.inf]) | st.floats()
contexts = st.builds(
    RequestContext, st.none() | st.just("web"), st.none() | st.just("mobile"), texts, texts, texts, texts,
    st.none() | st.tuples(coordinates, coordinates), texts,
    st.none() | st.sampled_from([MIN_TIME, MIN_TIME - 1, MAX_TIME, MAX_TIME + 0.5, 1.8e9, math.nan, -math.inf]),
    st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
deep: dict = {}
for _ in range(40):
    deep = {"a": deep}
profiles = st.none() | st.just({"lifecycle": "vip"}) | st.just(deep)
queries = st.builds(
    DecideQuery, st.none() | st.text(max_size=4) | around(MAX_ID), profiles,
    st.sampled_from([0, 1, 900, SHAPE_CHECK_BYTES - 1, SHAPE_CHECK_BYTES]), contexts,
    st.lists(st.sampled_from(NAMES) | st.text(max_size=3), max_size=3).map(tuple), st.booleans(), st.booleans(),
    st.lists(st.tuples(st.sampled_from(["loyalty_card", "email_hash", "device_id"]),
                       st.text(max_size=4) | around(MAX_ID)), max_size=3).map(tuple))


def _check(q) -> None:
    bad = violations(q, NAMES)
    if bad:
        with pytest.raises(InvalidArgument) as err:
            validate_query(q, NAMES)
        assert err.value.violations == bad
    else:
        validate_query(q, NAMES)


@settings(max_examples=500, deadline=None)
@given(queries)
def test_validate_query_raises_exactly_the_violations(q):
    _check(q)


@settings(max_examples=500, deadline=None)
@given(queries)
def test_the_compiled_common_case_is_the_reference(q):
    assert _decide.common_case(q) is common_case(q)
    if common_case(q):                        # passing it means nothing is wrong
        assert violations(q, NAMES) == []


@settings(max_examples=300, deadline=None)
@given(contexts)
def test_the_compiled_request_is_the_reference(ctx):
    compiled, reference = _decide.to_request(ctx), ctx.to_request()
    assert compiled == reference
    assert list(compiled) == list(reference)  # the same order (the decision log writes it)


# a request that passes, then one or two fields at (or just past) a limit
valid_queries = st.builds(
    DecideQuery, st.none() | st.text(max_size=4), st.none() | st.just({"lifecycle": "vip"}), st.just(900),
    st.builds(RequestContext, st.none() | st.just("web"), st.none(), st.none() | st.just("en-GB"),
              st.none() | st.just("product"), st.none() | st.just("TEE-001"), st.none() | st.just("tops"),
              st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)), st.none() | st.just("s1"),
              st.none() | st.floats(MIN_TIME, MAX_TIME)))


def _text(field: str, n: int):
    return lambda q: setattr(q.context, field, "x" * n)


def _point(lat: float, lon: float):
    return lambda q: setattr(q.context, "location", (lat, lon))


def _set(field: str, value, on_context: bool = False):
    return lambda q: setattr(q.context if on_context else q, field, value)


def _profile(value, size: int, from_json: bool = False):
    def apply(q):
        q.profile, q.snapshot_bytes, q.snapshot_json = value, size, from_json
    return apply


CHANGES = (
    [_set("customer_id", "c" * n) for n in (MAX_ID, MAX_ID + 1)]
    + [_set("aliases", (("loyalty_card", "L"), (kind, "x" * n))) for kind in ("email_hash", "device_id")
       for n in (MAX_ID, MAX_ID + 1)]
    + [_text(f, n) for f in ("locale", "page", "sku", "category", "store") for n in (MAX_TEXT, MAX_TEXT + 1)]
    + [_point(lat, lon) for lat, lon in ((90.0, 180.0), (-90.0, -180.0), (90.000001, 0.0), (0.0, -180.000001),
                                         (math.nan, 0.0), (0.0, math.inf), (-math.inf, 0.0))]
    + [_set("timestamp", t, True) for t in (MIN_TIME, MAX_TIME, MIN_TIME - 1, MAX_TIME + 0.5, math.nan)]
    + [_set("decisions", d) for d in ((), ("homepage_category",), ("nope",), ("prefill_size",) * 300)]
    + [_set("attributes", a, True) for a in (None, {}, {"campaign": "spring"}, deep)]
    + [_profile(p, n, j) for p in ({"a": 1}, deep) for n in (0, 900, SHAPE_CHECK_BYTES - 1, SHAPE_CHECK_BYTES)
       for j in (False, True)])


@settings(max_examples=500, deadline=None)
@given(valid_queries, st.lists(st.sampled_from(CHANGES), min_size=1, max_size=2))
def test_one_field_at_its_limit_is_judged_as_the_reference_judges_it(q, changes):
    validate_query(q, NAMES)                  # the base passes
    assert _decide.common_case(q) is common_case(q)
    for change in changes:
        change(q)
    _check(q)
    assert _decide.common_case(q) is common_case(q)


def test_the_limits_themselves_pass():
    q = DecideQuery("c" * MAX_ID, {"a": 1}, 10, RequestContext(sku="s" * MAX_TEXT, location=(90.0, -180.0),
                                                               timestamp=MAX_TIME))
    validate_query(q, NAMES)
    q.context.location = (math.nan, 0.0)
    with pytest.raises(InvalidArgument, match="context.location.lat"):
        validate_query(q, NAMES)


@pytest.mark.parametrize("from_json, field", [(False, "profile"), (True, "profile_json")])
def test_a_deep_snapshot_is_named_as_the_client_sent_it(from_json, field):
    q = DecideQuery(profile=deep, snapshot_bytes=SHAPE_CHECK_BYTES, snapshot_json=from_json)
    with pytest.raises(InvalidArgument) as err:
        validate_query(q, NAMES)
    assert [(v.field, v.description) for v in err.value.violations] == [(field, "nested more than 32 levels deep")]
    assert err.value.prefixed("requests[2]").violations[0].field == f"requests[2].{field}"


def test_the_request_the_rules_read():
    ctx = RequestContext("web", None, "en-GB", "product", "TEE-001", None, (51.5, -0.1), "s1", 1.8e9,
                         {"sku": "shadowed", "campaign": "spring"})
    assert ctx.to_request() == {"sku": "TEE-001", "campaign": "spring", "channel": "web", "locale": "en-GB",
                                "page": "product", "store": "s1", "location": {"lat": 51.5, "lon": -0.1}}
    assert RequestContext().to_request() == {}
    assert RequestContext(device="till", category="shoes").to_request() == {"device": "till", "category": "shoes"}
