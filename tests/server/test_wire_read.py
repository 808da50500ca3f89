"""engine.server.wire's request reader (C) against the protobuf runtime.

``maple serve`` reads a DecideRequest's bytes with ``wire.decide_request``:
a DecideQuery straight from the bytes, or for what only the runtime reads,
the parsed message (then ``convert.query_from_pb``).  For any bytes a client
can send, that must come to what the runtime path gives: the same query
(compared by ``repr``, so NaN, -0.0 and dict order count), the same
INVALID_ARGUMENT violations, or bytes refused as not a DecideRequest.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import profiles as bench_profiles
from engine.server import _wire, convert, wire
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.service.errors import InvalidArgument
from engine.service.model import DecideQuery
from engine.service.validate import decoded_snapshot

from .conftest import damaged

ROOT = Path(__file__).resolve().parents[2]


def _answer(make):
    try:
        return "query", repr(make())
    except InvalidArgument as err:
        return "invalid", [(v.field, v.description) for v in err.violations]


def runtime(raw: bytes):
    """What the protobuf runtime makes of ``raw``."""
    try:
        message = pb.DecideRequest.FromString(raw)
    except Exception:
        return "not a DecideRequest"
    return _answer(lambda: convert.query_from_pb(message))


def served(raw: bytes):
    """What maple serve makes of ``raw`` (engine.server.app.raw_unary)."""
    try:
        read = wire.decide_request(raw)
    except Exception:
        return "not a DecideRequest"
    return _answer(lambda: read if type(read) is DecideQuery else convert.query_from_pb(read))


def batch_answers(parsed):
    if type(parsed) is list:            # each snapshot decoded as Decider.decide_batch does at the item's turn
        return [_answer(lambda q=q: decoded_snapshot(q)) for q in parsed]
    return [_answer(lambda item=item: convert.query_from_pb(item)) for item in parsed.requests]


def runtime_batch(raw: bytes):
    try:
        return batch_answers(pb.DecideBatchRequest.FromString(raw))
    except Exception:
        return "not a DecideBatchRequest"


def served_batch(raw: bytes):
    try:
        parsed = wire.batch_request(raw)
    except Exception:
        return "not a DecideBatchRequest"
    return batch_answers(parsed)


# ---------------------------------------------------------------- requests
text = st.text(max_size=10)
extreme_floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308])
json_leaf = st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats(allow_nan=False,
                                                                                     allow_infinity=False) | text
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=10)
object_json = st.dictionaries(text, json_values, max_size=5).map(lambda d: json.dumps(d).encode())
odd_json = st.sampled_from([b"", b"{}", b"[1, 2]", b"null", b'{"a": ', b'{"a": 1} x', b"\xff{}",
                            b'{"a": NaN}']) | st.binary(max_size=20)


def _mostly(draw, usual, odd, plain: bool):
    """``usual``, or now and then (never when ``plain``) ``odd``."""
    if plain or draw(st.integers(0, 4)):
        return draw(usual)
    return draw(odd)


@st.composite
def contexts(draw, plain: bool):
    c = pb.RequestContext()
    any_int32 = st.integers(-2 ** 31, 2 ** 31 - 1)
    c.channel = _mostly(draw, st.sampled_from([0, *sorted(convert.CHANNELS)]), any_int32, plain)
    c.device = _mostly(draw, st.sampled_from([0, *sorted(convert.DEVICES)]), any_int32, plain)
    c.locale, c.page, c.sku, c.category, c.store = (draw(text) for _ in range(5))
    if draw(st.booleans()):
        c.location.lat, c.location.lon = draw(extreme_floats), draw(extreme_floats)
    if draw(st.booleans()):
        c.timestamp.seconds = draw(st.integers(-2 ** 63, 2 ** 63 - 1) | st.integers(0, 4_000_000_000))
        c.timestamp.nanos = _mostly(draw, st.integers(0, 999_999_999), any_int32, plain)
    if _mostly(draw, st.just(False), st.booleans(), plain):
        c.attributes.update(draw(st.dictionaries(text, json_leaf, max_size=2)))
    return c


@st.composite
def requests(draw, plain: bool = False):
    """DecideRequests; ``plain`` ones hold nothing the C reader hands back
    (no Struct, known enum numbers, valid nanos, a JSON object or none)."""
    r = pb.DecideRequest(customer_id=draw(text), decisions=draw(st.lists(text, max_size=3)),
                         explain=draw(st.booleans()))
    if draw(st.booleans()):                  # the customer's other identifiers
        r.loyalty_card, r.email_hash, r.device_id = (draw(text) for _ in range(3))
    if draw(st.booleans()):
        r.context.CopyFrom(draw(contexts(plain)))
    if plain:
        r.profile_json = draw(st.none() | object_json) or b""
    else:
        choice = _mostly(draw, st.sampled_from(["none", "json"]), st.sampled_from(["struct", "both"]), plain)
        if choice in ("json", "both"):
            r.profile_json = _mostly(draw, object_json, odd_json, plain)
        if choice in ("struct", "both"):
            r.profile.update(draw(st.dictionaries(text, json_leaf, max_size=3)))
    return r


@settings(max_examples=500, deadline=None)
@given(requests())
def test_any_request_reads_as_the_runtime_reads_it(request):
    raw = request.SerializeToString()
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(requests(plain=True))
def test_a_plain_request_is_read_in_c(request):
    raw = request.SerializeToString()
    assert type(_wire.decide_query(raw)) is DecideQuery
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(requests(plain=True) | requests(), requests(plain=True) | requests())
def test_two_requests_back_to_back_merge_as_the_runtime_merges_them(first, second):
    """The wire lets a field come twice: scalars, the last one; messages merge
    (the C reader hands those back); repeated fields add up."""
    raw = first.SerializeToString() + second.SerializeToString()
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(requests(), st.data())
def test_damaged_requests_read_as_the_runtime_reads_them(request, data):
    raw = damaged(request.SerializeToString(), data, bytes([0x48, 0x01]))  # field 9, a varint: reserved
    assert served(raw) == runtime(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_reads_as_the_runtime_reads_it(raw):
    assert served(raw) == runtime(raw)


@pytest.mark.parametrize("raw, why", [
    (b"\x0a\x02\xc3\x28", "customer_id is not UTF-8"),
    (b"\x0a\x03\xed\xa0\x80", "a UTF-16 surrogate in UTF-8"),
    (b"\x0a\x02\xc0\x80", "an overlong encoding"),
    (b"\x0a\x05abc", "a string longer than the message"),
    (b"\x1a\x02\x08", "a context whose varint stops"),
    (b"\x1a\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "a channel of -1 in ten bytes"),
    (b"\x1a\x04\x4a\x02\x10\x7f", "nanos 127 without seconds"),
    (b"\x1a\x0d\x4a\x0b\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "negative nanos"),
    (b"\x1a\x0b\x3a\x09\x09\x00\x00\x00\x00\x00\x00\xf8\x7f", "a NaN latitude"),
    (b"\x1a\x05\x3a\x03\x09\x00\x00", "a latitude cut short"),
    (b"\x28\x02", "explain as 2"),
    (b"\x28" + b"\xff" * 9 + b"\x7f", "a ten-byte varint whose last byte overflows"),
    (b"\x28" + b"\x80" * 9 + b"\x02", "a ten-byte varint that is 0 in 64 bits"),
    (b"\x28" + b"\xff" * 10 + b"\x01", "an eleven-byte varint"),
    (b"\x1a\x0d\x4a\x0b\x08" + b"\xff" * 9 + b"\x7f", "seconds -1 in ten bytes"),
    (b"\x28\x01\x28\x00", "explain set, then cleared"),
    (b"\x0a\x01a\x0a\x01b", "customer_id twice: the last one"),
    (b"\x42\x01a\x42\x00\x32\x01e", "loyalty_card, then empty: only email_hash is left"),
    (b"\x3a\x01d\x42\x01c\x32\x01e", "identifiers in any order: strongest first"),
    (b"\x30\x01", "email_hash as a varint"),
    (b"\x42\x02\xc3\x28", "loyalty_card is not UTF-8"),
    (b"\x1a\x02\x08\x01\x1a\x02\x10\x02", "context twice: merged"),
    (b"\x52\x00", "an empty profile_json"),
    (b"\x52\x02{}\x52\x02[]", "profile_json twice: the last one, not an object"),
    (b"\x12\x00\x52\x02{}", "both profile and profile_json"),
    (b"\x0b\x0c", "a group"),
    (b"\x00", "field number 0"),
    (b"\x08\x01", "customer_id as a varint"),
    (b"\xf8\xff\xff\xff\x0f\x01", "the highest field number"),
])
def test_edge_cases_read_as_the_runtime_reads_them(raw, why):
    assert served(raw) == runtime(raw), why


def test_the_bench_requests_are_read_in_c():
    raws = bench_profiles.decide_requests(bench_profiles.synthetic(200), by_id=False)
    raws += bench_profiles.decide_requests(bench_profiles.synthetic(50), by_id=True)
    for raw in raws:
        q = _wire.decide_query(raw)
        assert type(q) is DecideQuery
        assert repr(q) == repr(convert.query_from_pb(pb.DecideRequest.FromString(raw)))


# ---------------------------------------------------------------- batches
@settings(max_examples=150, deadline=None)
@given(st.lists(requests(plain=True) | requests(), max_size=4), st.sampled_from(["", "unknown", "garbage"]))
def test_any_batch_reads_as_the_runtime_reads_it(items, tail):
    raw = pb.DecideBatchRequest(requests=items).SerializeToString()
    raw += {"": b"", "unknown": b"\x10\x01", "garbage": b"\x0a\x05\x0a"}[tail]
    assert served_batch(raw) == runtime_batch(raw)


def test_a_plain_batch_is_read_in_c():
    raws = bench_profiles.decide_requests(bench_profiles.synthetic(20), by_id=False)
    batch = pb.DecideBatchRequest(requests=[pb.DecideRequest.FromString(b) for b in raws]).SerializeToString()
    items = _wire.batch_queries(batch)
    assert type(items) is list and len(items) == 20
    assert served_batch(batch) == runtime_batch(batch)
    assert _wire.batch_queries(b"") == []


def test_a_batch_decodes_each_snapshot_at_its_turn_and_a_bad_one_fails_only_its_item():
    """The C reader leaves each item's profile_json undecoded (PendingJson);
    the batch decodes it at the item's turn: the same answer bytes as the
    runtime's path (which decodes them all first), a bad snapshot the
    error of its item alone, and the caller's queries left as they were."""
    from engine.ruleset import load
    from engine.server.servicers import DecisionServicer
    from engine.service import Decider, RulesetHolder
    from engine.service.model import PendingJson

    servicer = DecisionServicer(Decider(RulesetHolder(load(ROOT / "rules"))))
    good = bench_profiles.decide_requests(bench_profiles.synthetic(2), by_id=False)
    items = [pb.DecideRequest.FromString(good[0])]
    for raw_json in (b'{"a": ', b"[1, 2]"):
        items.append(pb.DecideRequest.FromString(good[1]))
        items[-1].profile_json = raw_json
    items.append(pb.DecideRequest.FromString(good[1]))
    raw = pb.DecideBatchRequest(requests=items).SerializeToString()

    read = wire.batch_request(raw)
    assert type(read) is list and all(type(q.profile) is PendingJson for q in read)     # read in C, not decoded
    answer = pb.DecideBatchResponse.FromString(servicer.decide_batch_bytes(read, _Context()))
    assert all(type(q.profile) is PendingJson for q in read)                            # not changed
    runtime_answer = pb.DecideBatchResponse.FromString(
        servicer.decide_batch_bytes(pb.DecideBatchRequest.FromString(raw), _Context()))
    for a in (answer, runtime_answer):                                  # the clock: each answer's own
        for r in a.results:
            if r.HasField("response"):
                r.response.ClearField("decided_at")
    assert answer == runtime_answer
    assert [r.WhichOneof("result") for r in answer.results] == ["response", "error", "error", "response"]
    assert [(v.field, v.description.split(":")[0]) for r in answer.results[1:3] for v in r.error.field_violations] \
        == [("requests[1].profile_json", "not valid JSON"), ("requests[2].profile_json", "must be a JSON object")]


# ---------------------------------------------------------------- in the handler
class _Context:
    """The little of grpc.ServicerContext the handler uses on success."""

    def time_remaining(self):
        return None

    def code(self):
        return None


@pytest.mark.parametrize("encoder, read_in_c", [("wire", True), ("runtime", False)])
def test_maple_serves_decide_through_the_reader_its_encoder_says(monkeypatch, encoder, read_in_c):
    """The handlers maple serve registers read Decide and DecideBatch with
    the C reader (MAPLE_ENCODER=wire, the default), or with the runtime."""
    import collections

    from engine.ruleset import load
    from engine.server import app
    from engine.server.servicers import DecisionServicer
    from engine.service import Decider, RulesetHolder

    seen = []
    monkeypatch.setattr(wire, "decide_request", lambda raw: seen.append("one") or _wire.decide_request(raw))
    monkeypatch.setattr(wire, "_batch_queries", lambda raw: seen.append("batch") or _wire.batch_queries(raw))
    handler = app.decision_handler(DecisionServicer(Decider(RulesetHolder(load(ROOT / "rules")))), None, encoder)
    Details = collections.namedtuple("Details", "method invocation_metadata")
    one = bench_profiles.decide_requests(bench_profiles.synthetic(2), by_id=False)
    batch = pb.DecideBatchRequest(requests=[pb.DecideRequest.FromString(b) for b in one]).SerializeToString()
    answers = []
    for method, raw in (("Decide", one[0]), ("DecideBatch", batch)):
        h = handler.service(Details(f"/maple.v1.DecisionService/{method}", ()))
        out = h.unary_unary(raw, _Context())
        answers.append(out if h.response_serializer is None else h.response_serializer(out))
    assert seen == (["one", "batch"] if read_in_c else [])
    assert pb.DecideResponse.FromString(answers[0]).homepage_category.category
    assert len(pb.DecideBatchResponse.FromString(answers[1]).results) == 2


# ---------------------------------------------------------------- nested past the runtime's limit
def _deep(depth: int) -> dict:
    v: dict = {"x": 1}
    for _ in range(depth - 1):
        v = {"a": v}
    return v


def _refused(raw: bytes, parse=pb.DecideRequest.FromString) -> Exception:
    with pytest.raises(Exception) as err:
        parse(raw)
    return err.value


@pytest.mark.parametrize("profile, attributes, fields", [
    (40, None, ["profile"]), (None, 40, ["context.attributes"]), (40, 40, ["profile", "context.attributes"]),
    (40, 33, ["profile", "context.attributes"]),       # 33 parses alone: the validator's limit names it
    (40, 3, ["profile"])])
def test_a_request_nested_past_the_runtimes_limit_names_its_fields(profile, attributes, fields):
    from engine.server import nesting

    r = pb.DecideRequest()
    if profile:
        r.profile.update(_deep(profile))
    if attributes:
        r.context.attributes.update(_deep(attributes))
    raw = r.SerializeToString()
    err = _refused(raw)
    assert nesting.is_depth_error(err)
    with pytest.raises(InvalidArgument) as bad:
        nesting.decide_parse_error(raw, err)
    assert [(v.field, v.description) for v in bad.value.violations] == [
        (f, "nested more than 32 levels deep") for f in fields]
    # the fields given twice: the runtime merges the occurrences, and so does the reading
    shallow = pb.DecideRequest(customer_id="c")
    shallow.profile.update({"ok": 1})
    shallow.context.attributes.update({"ok": 1})
    assert [v.field for v in nesting.depth_violations(shallow.SerializeToString() + raw)] == fields


def test_bytes_bad_otherwise_keep_the_generic_answer():
    from engine.server import nesting

    garbage = b"\x0a\xff\xff\xff\xff"
    err = _refused(garbage)
    assert not nesting.is_depth_error(err)
    assert nesting.decide_parse_error(garbage, err) is None
    assert nesting.batch_parse_error(garbage, _refused(garbage, pb.DecideBatchRequest.FromString)) is None
    # a depth error said of bytes the reader cannot place: the request as a whole
    assert [(v.field, v.description) for v in nesting.depth_violations(b"")] == [
        ("", "nested more than 32 levels deep")]
    assert str(InvalidArgument(nesting.depth_violations(b""))) == "nested more than 32 levels deep"
    with pytest.raises(ValueError):
        list(nesting._fields(b"\x12\x05ab"))               # a length past the end


def test_a_batch_nested_past_the_limit_fails_only_its_deep_items():
    from engine.server import nesting
    from engine.service.errors import ResourceExhausted
    from google.protobuf.internal.encoder import _VarintBytes

    deep = pb.DecideRequest()
    deep.profile.update(_deep(40))
    items = [pb.DecideRequest(customer_id="a").SerializeToString(), deep.SerializeToString(),
             pb.DecideRequest(decisions=["x"], context=pb.RequestContext(channel=99)).SerializeToString()]
    raw = b"".join(b"\x0a" + _VarintBytes(len(i)) + i for i in items)
    read = nesting.batch_parse_error(raw, _refused(raw, pb.DecideBatchRequest.FromString))
    assert type(read[0]) is DecideQuery and read[0].customer_id == "a"
    assert [v.field for v in read[1].violations] == ["profile"]
    assert [v.field for v in read[2].violations] == ["context.channel"]     # its own error, as before
    # a bad item of another kind: the batch is not a valid message, as before
    broken = raw + b"\x0a\x03\x0a\x01\xff"                                     # customer_id not UTF-8
    assert nesting.batch_parse_error(broken, _refused(broken, pb.DecideBatchRequest.FromString)) is None
    too_many = raw + (b"\x0a\x00" * 1000)
    with pytest.raises(ResourceExhausted):
        nesting.batch_parse_error(too_many, _refused(too_many, pb.DecideBatchRequest.FromString))


def test_a_depth_error_on_bytes_broken_past_the_depth_keeps_the_generic_answer():
    from engine.server import nesting

    deep = pb.DecideRequest()
    deep.profile.update(_deep(40))
    raw = deep.SerializeToString() + b"\x1a\x05ab"                # then a context cut short
    err = _refused(raw)
    assert nesting.is_depth_error(err)                             # the runtime stops at the depth first
    assert nesting.decide_parse_error(raw, err) is None
    batch = b"\x0a" + bytes([len(b"\x0a\x01a")]) + b"\x0a\x01a" + b"\x0a" + b"\x80\x80\x80\x01" + raw
    assert nesting.batch_parse_error(batch, err) is None
