"""engine.server.wire's RecordEvents reader (C) against the protobuf runtime.

``maple serve`` reads a RecordEventsRequest's bytes with
``wire.record_events_request``: the raw events straight from the bytes, or
for what only the runtime reads (``meta``, a timestamp whose nanos it
rejects, a message field sent twice, an unknown field), the parsed message
(then ``events.events_from_pb``).  For any bytes a client can send, that
must come to what the runtime path gives: the same raw events (compared by
``repr``, so NaN, -0.0, value types and dict order count), or bytes refused
as not a RecordEventsRequest.
"""
from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import profiles as bench_profiles
from engine.server import _wire, events, wire
from engine.server.pb.maple.v1 import events_pb2 as epb

from .conftest import damaged


def runtime(raw: bytes):
    try:
        message = epb.RecordEventsRequest.FromString(raw)
    except Exception:
        return "not a RecordEventsRequest"
    return repr(events.events_from_pb(message))


def served(raw: bytes):
    """What maple serve makes of ``raw`` (engine.server.app.events_handler)."""
    try:
        read = wire.record_events_request(raw)
    except Exception:
        return "not a RecordEventsRequest"
    return repr(read if type(read) is list else events.events_from_pb(read))


text = st.text(max_size=8)
any_int32 = st.integers(-2 ** 31, 2 ** 31 - 1)
floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308])


def _mostly(draw, usual, odd, plain: bool):
    if plain or draw(st.integers(0, 4)):
        return draw(usual)
    return draw(odd)


@st.composite
def wire_events(draw, plain: bool = False):
    """Events with any field set or not; ``plain`` ones hold nothing the C
    reader hands back (no meta, nanos in range)."""
    e = epb.Event()
    for name in ("event_id", "customer_id", "email_hash", "device_id", "loyalty_card", "sku", "category", "size",
                 "query", "page", "url", "store_id", "order_id", "campaign_id", "offer_id", "placement"):
        if draw(st.integers(0, 2)) == 0:
            setattr(e, name, draw(text))
    e.type = draw(st.sampled_from([0, *sorted(events.TYPES)]) | any_int32)
    e.channel = draw(st.sampled_from([0, *sorted(events.CHANNELS)]) | any_int32)
    if draw(st.booleans()):
        e.timestamp.seconds = draw(st.just(0) | st.integers(-2 ** 63, 2 ** 63 - 1)
                                   | st.integers(1_700_000_000, 1_900_000_000))
        e.timestamp.nanos = _mostly(draw, st.just(0) | st.integers(0, 999_999_999), any_int32, plain)
    for _ in range(draw(st.integers(0, 3))):
        it = e.items.add()
        for name in ("sku", "category", "size"):
            if draw(st.booleans()):
                setattr(it, name, draw(text))
        if draw(st.booleans()):
            it.price = draw(floats)
        if draw(st.booleans()):
            it.qty = draw(any_int32)
    for name in ("price", "total", "loyalty_points"):
        if draw(st.booleans()):
            setattr(e, name, draw(floats))
    if draw(st.booleans()):
        e.consent.SetInParent()
        for name in ("email", "push", "sms"):
            if draw(st.booleans()):
                setattr(e.consent, name, draw(st.booleans()))
    if draw(st.booleans()):
        e.home.SetInParent()
        e.home.lat, e.home.lon = (draw(st.just(0.0) | floats) for _ in range(2))
    if not plain and draw(st.integers(0, 4)) == 0:
        e.meta.update(draw(st.dictionaries(text, st.none() | st.booleans() | text, max_size=2)))
    return e


def batch(events_: list) -> bytes:
    return epb.RecordEventsRequest(events=events_).SerializeToString()


@settings(max_examples=400, deadline=None)
@given(st.lists(wire_events(), max_size=4))
def test_any_batch_reads_as_the_runtime_reads_it(evs):
    raw = batch(evs)
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(wire_events(plain=True), max_size=4))
def test_a_plain_batch_is_read_in_c(evs):
    raw = batch(evs)
    assert type(_wire.record_events(raw)) is list
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(wire_events(), wire_events())
def test_an_event_sent_in_two_parts_merges_as_the_runtime_merges_it(first, second):
    """An Event's fields may come twice within one event: scalars, the
    last; messages merge (the C reader hands those back); repeated add up."""
    one = first.SerializeToString() + second.SerializeToString()
    raw = bytes([0x0A]) + _varint(len(one)) + one
    assert served(raw) == runtime(raw)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(wire_events(), min_size=1, max_size=3), st.data())
def test_damaged_batches_read_as_the_runtime_reads_them(evs, data):
    raw = damaged(batch(evs), data, bytes([0x10, 0x01]))      # field 2 of the request, a varint: unknown
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_reads_as_the_runtime_reads_it(raw):
    assert served(raw) == runtime(raw)


def test_the_bench_events_are_read_in_c():
    """What the load generator sends (the bench month) takes the C path."""
    for raw in bench_profiles.event_requests(3, 100, 500, time.time(), seed=2, store_ids=["s001"]):
        read = _wire.record_events(raw)
        assert type(read) is list and len(read) == 100
        assert repr(read) == runtime(raw)


@pytest.mark.parametrize("encoder, read_in_c", [("wire", True), ("runtime", False)])
def test_maple_serves_record_events_through_the_codec_its_encoder_says(monkeypatch, encoder, read_in_c):
    import collections

    from engine.server import app
    from engine.server.events import EventsServicer
    from engine.service.events import EventRecorder

    class Sink:
        def apply(self, raw):
            from engine.profiles.store import BatchResult
            applied.extend(raw)
            return BatchResult(accepted=[e["event_id"] for e in raw],
                               assigned={e["event_id"]: e.get("customer_id", "") for e in raw})

    class Context:
        def time_remaining(self):
            return None

    applied, seen = [], []
    monkeypatch.setattr(wire, "_record_events", lambda raw: seen.append(1) or _wire.record_events(raw))
    handler = app.events_handler(EventsServicer(EventRecorder(Sink())), None, encoder)
    Details = collections.namedtuple("Details", "method invocation_metadata")
    [raw] = bench_profiles.event_requests(1, 5, 50, time.time(), seed=4, store_ids=["s001"])
    h = handler.service(Details("/maple.v1.DecisionService/RecordEvents", ()))
    answer = h.unary_unary(raw, Context())
    assert (h.response_serializer is None) == read_in_c          # C writes the answer's bytes itself
    out = epb.RecordEventsResponse.FromString(answer if read_in_c else h.response_serializer(answer))
    assert out.stored == 5 and len(applied) == 5 and [r.customer_id for r in out.results][0]
    assert seen == ([1] if read_in_c else [])


# ---------------------------------------------------------------- the answer
def _any_outcome():
    from engine.service.events import EventOutcome, EventProblem, EventStatus
    ids = st.none() | st.text(max_size=12)
    problem = st.builds(EventProblem, st.integers(0, 5), st.sampled_from(["", "items[0].price", "email"]),
                        st.sampled_from(["V102", "V107", "V111"]), st.text(max_size=8))
    return st.builds(EventOutcome, st.sampled_from(list(EventStatus)), ids, ids,
                     st.lists(problem, max_size=2).map(tuple))


@settings(max_examples=300, deadline=None)
@given(st.lists(_any_outcome(), max_size=6))
def test_the_answer_is_the_runtimes_bytes(outcomes):
    """events.encode_result (C, or result_to_pb for rejections) writes
    exactly what result_to_pb serializes to; C takes every batch with no
    violation in it."""
    from engine.service.events import RecordResult
    r = RecordResult(tuple(outcomes))
    assert events.encode_result(r) == events.result_to_pb(r).SerializeToString()
    assert (_wire.encode_events(r.outcomes) is None) == any(o.problems for o in outcomes)
