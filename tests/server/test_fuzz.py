"""Fuzzing a real server: whatever a client sends gets a proper status
(never UNKNOWN, never a crash) and the server stays SERVING."""
from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from grpc_health.v1 import health_pb2

from engine.server.pb.maple.v1 import decision_pb2 as pb

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


def test_still_serving_after_the_fuzzing(server):
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    assert server.proc.poll() is None
