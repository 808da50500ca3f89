"""Fuzzing a real server: whatever a client sends gets a proper status
(never UNKNOWN, never a crash) and the server stays SERVING."""
from __future__ import annotations

import json

import grpc
from google.protobuf.internal.encoder import _VarintBytes as _EncodeVarint
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from grpc_health.v1 import health_pb2

import pytest

from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.pb.maple.v1 import events_pb2 as epb
from engine.service.validate import MAX_DEPTH, SHAPE_CHECK_BYTES

#: what a client may be told; anything else (UNKNOWN, INTERNAL) is a bug
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.DEADLINE_EXCEEDED}

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

texts = st.one_of(st.just(""), st.text(max_size=40), st.integers(500, 5000).map(lambda n: "é☕x" * n),
                  st.sampled_from(["\x00", "é☕", "\ud7ff", "a" * 10_000]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -90.0, 90.0, 180.0, 1e308]))
json_leaf = st.one_of(st.none(), st.booleans(), floats, texts)
json_values = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=20)
profile_keys = st.sampled_from(["customer_id", "lifecycle", "sizes", "last_view", "cart", "home", "loyalty_points",
                                "preferred_store", "consent", "x"])
enum_numbers = st.one_of(st.integers(0, 7), st.integers(-2**31, 2**31 - 1))


@st.composite
def decide_requests(draw) -> pb.DecideRequest:
    ctx = pb.RequestContext(channel=draw(enum_numbers), device=draw(enum_numbers), locale=draw(texts),
                            page=draw(texts), sku=draw(texts), category=draw(texts), store=draw(texts))
    if draw(st.booleans()):
        ctx.location.lat, ctx.location.lon = draw(floats), draw(floats)
    if draw(st.booleans()):
        ctx.timestamp.seconds = draw(st.integers(-2**63, 2**63 - 1))
        ctx.timestamp.nanos = draw(st.integers(-2**31, 2**31 - 1))
    if draw(st.booleans()):
        ctx.attributes.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    req = pb.DecideRequest(customer_id=draw(texts), context=ctx, explain=draw(st.booleans()),
                           decisions=draw(st.lists(st.sampled_from(["homepage_category", "prefill_size",
                                                                    "nearby_stores", "next_best_offer", "banner",
                                                                    "", "nope"]), max_size=3)))
    if draw(st.booleans()):
        req.profile.update(draw(st.dictionaries(profile_keys, json_values, max_size=6)))
    if draw(st.booleans()):
        req.loyalty_card, req.email_hash, req.device_id = draw(texts), draw(texts), draw(texts)
    return req


def _code(call) -> grpc.StatusCode:
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()


@FUZZ
@given(req=decide_requests())
def test_any_decide_request_gets_a_proper_answer(server, req):
    decide = server.channel.unary_unary("/maple.v1.DecisionService/Decide",
                                        request_serializer=pb.DecideRequest.SerializeToString,
                                        response_deserializer=pb.DecideResponse.FromString)
    assert _code(lambda: decide(req, timeout=10)) in ALLOWED


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(reqs=st.lists(decide_requests(), max_size=4))
def test_any_batch_gets_a_proper_answer(server, reqs):
    batch = server.channel.unary_unary("/maple.v1.DecisionService/DecideBatch",
                                       request_serializer=pb.DecideBatchRequest.SerializeToString,
                                       response_deserializer=pb.DecideBatchResponse.FromString)
    assert _code(lambda: batch(pb.DecideBatchRequest(requests=reqs), timeout=10)) in ALLOWED


@FUZZ
@given(payload=st.one_of(st.binary(max_size=2000), st.binary(min_size=1, max_size=8).map(lambda b: b * 500)),
       method=st.sampled_from(["/maple.v1.DecisionService/Decide", "/maple.v1.DecisionService/DecideBatch"]))
def test_garbage_bytes_on_the_wire(server, payload, method):
    raw = server.channel.unary_unary(method)         # identity serializers: the bytes go out as they are
    assert _code(lambda: raw(payload, timeout=10)) in ALLOWED


# ---------------------------------------------------------------- nesting
#: where a nested value goes, as the field a client is told about
NESTABLE = ("profile", "profile_json", "context.attributes")
#: the containers of each level under the top object (which a Struct or profile_json must be)
levels = st.lists(st.sampled_from(["object", "list"]), min_size=MAX_DEPTH - 8, max_size=2 * MAX_DEPTH)


def nest(kinds: list[str]) -> dict:
    """An object nested 1 + len(kinds) levels deep."""
    v = 1
    for kind in reversed(kinds):
        v = {"a": v} if kind == "object" else [v]
    return {"a": v}


def nested_request(field: str, kinds: list[str]) -> bytes:
    """A DecideRequest's bytes (a message this deep cannot be copied into a
    batch message: the runtime's copy parses it)."""
    r = pb.DecideRequest(context=pb.RequestContext(channel=pb.CHANNEL_WEB))
    value = nest(kinds)
    big = {**value, "pad": "x" * SHAPE_CHECK_BYTES}    # a snapshot this big on the wire has its shape checked
    if field == "profile":
        r.profile.update(big)
    elif field == "context.attributes":
        r.context.attributes.update(value)
    else:
        r.profile_json = json.dumps(big).encode()
    return r.SerializeToString()


def batch_of(*items: bytes) -> bytes:
    out = b""
    for item in items:
        out += b"\x0a" + _EncodeVarint(len(item)) + item         # DecideBatchRequest.requests
    return out


def _violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    br = error_details_pb2.BadRequest()
    [detail] = rpc_status.from_call(err).details
    detail.Unpack(br)
    return [(v.field, v.description) for v in br.field_violations]


def assert_nesting_judged(channel, field: str, kinds: list[str]) -> None:
    """Decide: too deep is INVALID_ARGUMENT naming ``field`` whether or not
    the protobuf runtime's own limit fired first; DecideBatch: only that
    item fails."""
    too_deep = 1 + len(kinds) > MAX_DEPTH
    decide = channel.unary_unary("/maple.v1.DecisionService/Decide",
                                 response_deserializer=pb.DecideResponse.FromString)
    decide_batch = channel.unary_unary("/maple.v1.DecisionService/DecideBatch",
                                       response_deserializer=pb.DecideBatchResponse.FromString)
    request = nested_request(field, kinds)
    try:
        decide(request, timeout=10)
        assert not too_deep, "a request nested too deeply was answered"
    except grpc.RpcError as err:
        assert too_deep and err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert _violations(err) == [(field, f"nested more than {MAX_DEPTH} levels deep")]
        assert err.details() == f"{field}: nested more than {MAX_DEPTH} levels deep"
    good = pb.DecideRequest(context=pb.RequestContext(channel=pb.CHANNEL_WEB)).SerializeToString()
    batch = decide_batch(batch_of(good, request, good), timeout=10)
    assert [r.WhichOneof("result") for r in batch.results] == ["response", "error" if too_deep else "response",
                                                               "response"]
    if too_deep:
        error = batch.results[1].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert [(v.field, v.description) for v in error.field_violations] == [
            (f"requests[1].{field}", f"nested more than {MAX_DEPTH} levels deep")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(field=st.sampled_from(NESTABLE), kinds=levels)
def test_nesting_past_the_limit_names_the_field_and_fails_only_its_batch_item(server, field, kinds):
    assert_nesting_judged(server.channel, field, kinds)


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, MAX_DEPTH + 3, 60])
@pytest.mark.parametrize("field", NESTABLE)
def test_nesting_at_and_past_the_limit(server, field, depth):
    # 33 levels: our check; 34 and more of objects: the protobuf runtime's limit fires first
    assert_nesting_judged(server.channel, field, ["object"] * (depth - 1))


def test_nesting_with_the_runtime_encoder(module_pack, start_server):
    s = start_server(module_pack, env={"MAPLE_ENCODER": "runtime"})
    s.wait_health()
    for field in NESTABLE:
        for depth in (MAX_DEPTH, MAX_DEPTH + 2, 50):
            assert_nesting_judged(s.channel, field, ["object"] * (depth - 1))


@pytest.fixture(scope="module")
def stored_server(tmp_path_factory):
    """The reference pack with a real SQLite profile store."""
    from .conftest import ROOT, Server
    s = Server(ROOT / "rules", "--store", f"sqlite://{tmp_path_factory.mktemp('store') / 'p.db'}")
    s.wait_health()
    yield s
    s.terminate()


event_types = st.one_of(st.integers(0, 17), st.integers(-2**31, 2**31 - 1))
numbers = st.one_of(floats, st.sampled_from([-1.0, 0.0, 1e9]))


@st.composite
def events(draw) -> epb.Event:
    e = epb.Event(event_id=draw(st.one_of(texts, st.sampled_from(["dup-1", "dup-2"]))), type=draw(event_types),
                  channel=draw(enum_numbers), customer_id=draw(texts), email_hash=draw(texts),
                  device_id=draw(st.one_of(st.just(""), texts)), sku=draw(texts), category=draw(texts),
                  size=draw(texts), store_id=draw(st.sampled_from(["", "s001", "mars", "\x00"])),
                  offer_id=draw(texts), query=draw(texts))
    if draw(st.booleans()):
        e.timestamp.seconds = draw(st.one_of(st.integers(-2**63, 2**63 - 1), st.just(1_795_000_000)))
        e.timestamp.nanos = draw(st.integers(-2**31, 2**31 - 1))
    for _ in range(draw(st.integers(0, 3))):
        it = e.items.add(sku=draw(texts), category=draw(texts), size=draw(texts))
        if draw(st.booleans()):
            it.price = draw(numbers)
        if draw(st.booleans()):
            it.qty = draw(st.integers(-2**31, 2**31 - 1))
    for name in ("price", "total", "loyalty_points"):
        if draw(st.booleans()):
            setattr(e, name, draw(numbers))
    if draw(st.booleans()):
        e.consent.email = draw(st.booleans())
    if draw(st.booleans()):
        e.home.lat, e.home.lon = draw(floats), draw(floats)
    if draw(st.booleans()):
        e.meta.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(events(), max_size=6))
def test_any_event_batch_gets_an_answer_per_event(stored_server, batch):
    record = stored_server.channel.unary_unary("/maple.v1.DecisionService/RecordEvents",
                                               request_serializer=epb.RecordEventsRequest.SerializeToString,
                                               response_deserializer=epb.RecordEventsResponse.FromString)
    out = {}

    def call():
        out["r"] = record(epb.RecordEventsRequest(events=batch), timeout=30)
    assert _code(call) in ALLOWED
    if "r" in out:
        r = out["r"]
        assert len(r.results) == len(batch)
        assert all(x.status in (epb.EVENT_STATUS_STORED, epb.EVENT_STATUS_DUPLICATE, epb.EVENT_STATUS_REJECTED)
                   for x in r.results)
        assert all(x.violations for x in r.results if x.status == epb.EVENT_STATUS_REJECTED)
        assert r.stored + r.duplicates + r.rejected == len(batch)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=decide_requests(), batch=st.lists(events(), max_size=2))
def test_any_decide_by_any_identifier_against_a_store(stored_server, req, batch):
    """The customer looked up in a real store, by customer id and by the
    other identifiers, after events that may have linked them."""
    record = stored_server.channel.unary_unary("/maple.v1.DecisionService/RecordEvents",
                                               request_serializer=epb.RecordEventsRequest.SerializeToString,
                                               response_deserializer=epb.RecordEventsResponse.FromString)
    for e in batch:                           # the request's identifiers, known to the store now and then
        e.customer_id, e.email_hash, e.loyalty_card = req.customer_id, req.email_hash, req.loyalty_card
    assert _code(lambda: record(epb.RecordEventsRequest(events=batch), timeout=30)) in ALLOWED
    decide = stored_server.channel.unary_unary("/maple.v1.DecisionService/Decide",
                                               request_serializer=pb.DecideRequest.SerializeToString,
                                               response_deserializer=pb.DecideResponse.FromString)
    assert _code(lambda: decide(req, timeout=10)) in ALLOWED


@FUZZ
@given(payload=st.binary(max_size=2000))
def test_garbage_bytes_as_events(stored_server, payload):
    raw = stored_server.channel.unary_unary("/maple.v1.DecisionService/RecordEvents")
    assert _code(lambda: raw(payload, timeout=10)) in ALLOWED


def test_the_stored_server_is_still_serving(stored_server):
    assert stored_server.health() == health_pb2.HealthCheckResponse.SERVING
    assert stored_server.proc.poll() is None


def test_still_serving_after_the_fuzzing(server):
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    assert server.proc.poll() is None
