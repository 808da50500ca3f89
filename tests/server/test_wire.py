"""engine.server.wire (C) against convert.result_to_pb (the reference).

The served Decide and DecideBatch answer with bytes the C encoder writes;
these tests hold it to the protobuf runtime: for every result, the bytes
parse to the message result_to_pb builds, field for field, presence
included (both sides are re-serialized deterministically and compared).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import profiles as bench_profiles
from engine.ruleset import load
from engine.server import convert, wire
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.servicers import DecisionServicer
from engine.service import Decider, RulesetHolder
from engine.service.inventory import InventoryHolder, InventoryStores
from engine.service.model import (Common, DecideResult, GenericDecision, HomepageCategory, ItemError,
                                  NearbyStores, NearbyStoresPolicy, NextBestOffers, OfferResult, PrefilledSize,
                                  ProfileStatus, Reason, StoreAvailability)
from engine.service.errors import FieldViolation, InvalidArgument

ROOT = Path(__file__).resolve().parents[2]


def canonical(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def assert_same(result: DecideResult) -> None:
    fast = pb.DecideResponse.FromString(wire.encode_result(result))
    assert canonical(fast) == canonical(convert.result_to_pb(result))


class NoDeadline:
    def time_remaining(self):
        return None


@pytest.fixture(scope="module")
def reference():
    holder = RulesetHolder(load(ROOT / "rules"))
    decider = Decider(holder, stores=InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")))
    requests = [pb.DecideRequest.FromString(b) for b in
                bench_profiles.decide_requests(bench_profiles.synthetic(400), by_id=False)]
    return decider, requests


def test_every_reference_pack_answer_encodes_as_the_runtime_does(reference):
    decider, requests = reference
    kinds = set()
    for request in requests:
        result = decider.decide(convert.query_from_pb(request))
        assert_same(result)
        kinds.add((result.nearby_stores.stores != (), bool(result.next_best_offer.offers),
                   result.prefill_size.size is not None))
    assert len(kinds) >= 6           # stores and none, offers and none, sizes and none were all covered


def test_a_subset_of_decisions_and_an_unknown_customer(reference):
    decider, requests = reference
    for names in (["nearby_stores"], ["next_best_offer", "homepage_category"], ["prefill_size"]):
        request = pb.DecideRequest()
        request.CopyFrom(requests[3])
        request.decisions.extend(names)
        assert_same(decider.decide(convert.query_from_pb(request)))
    assert_same(decider.decide(convert.query_from_pb(pb.DecideRequest(customer_id="c-nobody"))))


def test_the_served_batch_bytes_parse_to_the_reference_batch(reference):
    decider, requests = reference
    servicer = DecisionServicer(decider)
    batch = pb.DecideBatchRequest(requests=requests[:20])
    bad = batch.requests.add()
    bad.CopyFrom(requests[0])
    bad.context.channel = 99                                  # an item error, by index
    batch.requests[3].explain = True                          # an answer the runtime writes, in the C batch
    fast = pb.DecideBatchResponse.FromString(servicer.decide_batch_bytes(batch, NoDeadline()))
    slow = servicer.DecideBatch(batch, NoDeadline())
    assert canonical(fast) == canonical(slow)
    assert fast.results[20].error.field_violations[0].field == "requests[20].context.channel"
    assert fast.results[3].response.explanation and not fast.results[2].response.HasField("explanation")
    assert fast.ruleset_version == decider.ruleset().version


def test_an_explanation_goes_through_the_runtime(reference):
    decider, requests = reference
    request = pb.DecideRequest()
    request.CopyFrom(requests[1])
    request.explain = True
    result = decider.decide(convert.query_from_pb(request))
    assert result.explanation
    assert_same(result)


def test_a_renumbered_field_stops_the_import(monkeypatch):
    monkeypatch.setitem(wire.LAYOUT, pb.Offer, dict(wire.LAYOUT[pb.Offer], score=4))
    with pytest.raises(ImportError, match=r"maple.v1.Offer.score is field 3 in decision.proto but _wire.pyx uses 4"):
        wire.check_layout()


def test_a_renumbered_request_field_stops_the_import(monkeypatch):
    monkeypatch.setitem(wire.LAYOUT, pb.RequestContext, dict(wire.LAYOUT[pb.RequestContext], sku=6))
    with pytest.raises(ImportError, match=r"maple.v1.RequestContext.sku is field 5 in decision.proto"):
        wire.check_layout()


def test_a_retyped_request_field_stops_the_import(monkeypatch):
    from google.protobuf.descriptor import FieldDescriptor as F
    wire.check_layout()
    monkeypatch.setitem(wire.READ_TYPES, pb.DecideRequest,
                        dict(wire.READ_TYPES[pb.DecideRequest], profile_json=(F.TYPE_STRING, False)))
    with pytest.raises(ImportError, match=r"maple.v1.DecideRequest.profile_json changed type"):
        wire.check_layout()


def test_out_of_range_numbers_fail_as_the_runtime_does():
    common = Common("rule")
    store = StoreAvailability("s-1", "One", 1.0, 2 ** 31, False, False)
    result = DecideResult("v1", 1.0, ProfileStatus.STORED,
                          nearby_stores=NearbyStores((store,), NearbyStoresPolicy(), common))
    with pytest.raises(ValueError):
        convert.result_to_pb(result)
    with pytest.raises(ValueError):
        wire.encode_result(result)
    for when in (2.0 ** 63, -2.0 ** 63 - 4096.0, 1e19):       # decided_at past a Timestamp's int64 seconds
        late = DecideResult("v1", when, ProfileStatus.STORED)
        with pytest.raises(ValueError):
            convert.result_to_pb(late)
        with pytest.raises(ValueError):
            wire.encode_result(late)
    for when in (2.0 ** 62, -2.0 ** 63, -0.25, 1_795_435_200.999999999):  # at the edges, still written
        assert_same(DecideResult("v1", when, ProfileStatus.STORED))


# ---------------------------------------------------------------- generated results
text = st.text(max_size=12)
opt_text = st.none() | text
doubles = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1e-300, 5e-324])
int32 = st.integers(-2 ** 31, 2 ** 31 - 1)
reasons = st.builds(Reason, text, opt_text, text)
experiments = st.lists(st.tuples(text, text), max_size=2).map(tuple)
commons = st.builds(Common, st.sampled_from(["rule", "default", "holdout", "capped", "other"]),
                    st.none() | reasons, experiments)
json_leaf = st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | doubles | text
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)
field_values = st.none() | st.booleans() | doubles | text | st.tuples(doubles, doubles)
offers = st.builds(OfferResult, text, text, doubles, opt_text, opt_text, st.none() | reasons,
                   st.dictionaries(text, field_values, max_size=3))
stores = st.builds(StoreAvailability, text, text, doubles, int32, st.booleans(), st.booleans(),
                   st.none() | st.booleans())
policies = st.builds(NearbyStoresPolicy, doubles, int32, int32, int32, st.booleans(), st.booleans())
generic = st.one_of(
    st.builds(GenericDecision, st.sampled_from(["value", "record"]), json_values, commons),
    st.builds(GenericDecision, st.just("offer"), st.none(), commons, st.lists(offers, max_size=2).map(tuple)))
decided_at = (st.none() | st.floats(min_value=-1e12, max_value=1e12)
              | st.sampled_from([math.nan, math.inf, 0.0, -0.5, 1_795_435_200.123456]))
results = st.builds(
    DecideResult, text, decided_at, st.sampled_from(list(ProfileStatus)),
    homepage_category=st.none() | st.builds(HomepageCategory, opt_text, commons),
    prefill_size=st.none() | st.builds(PrefilledSize, opt_text, commons),
    nearby_stores=st.none() | st.builds(NearbyStores, st.lists(stores, max_size=3).map(tuple), policies, commons,
                                        opt_text, opt_text),
    next_best_offer=st.none() | st.builds(NextBestOffers, st.lists(offers, max_size=3).map(tuple), commons),
    decisions=st.dictionaries(text, generic, max_size=2),
    degraded=st.booleans(), degraded_reason=text, customer_id=st.just("") | text)


@settings(max_examples=400, deadline=None)
@given(results)
def test_any_result_encodes_as_the_runtime_does(result):
    assert_same(result)


@settings(max_examples=100, deadline=None)
@given(st.lists(results, max_size=4), text)
def test_any_batch_encodes_as_the_runtime_does(items, version):
    errors = [ItemError(InvalidArgument([FieldViolation("requests[1].context.channel", "unknown enum value 9")]))]
    mixed = items[:1] + errors + items[1:]
    slow = pb.DecideBatchResponse(ruleset_version=version)
    def error_bytes(r):
        err = pb.ItemError(code=3, message=r.error.message)
        convert.violations_to_pb(r.error.violations, err.field_violations)
        return err.SerializeToString()

    for r in mixed:
        item = slow.results.add()
        if isinstance(r, ItemError):
            item.error.ParseFromString(error_bytes(r))
        else:
            convert.result_to_pb(r, item.response)
    assert canonical(pb.DecideBatchResponse.FromString(wire.encode_batch(version, mixed, error_bytes))) == canonical(slow)


# ---------------------------------------------------------------- over the wire
def test_maple_encoder_must_be_wire_or_runtime(monkeypatch):
    from engine.server.app import encoder_from_env
    monkeypatch.setenv("MAPLE_ENCODER", "runtime")
    assert encoder_from_env() == "runtime"
    monkeypatch.delenv("MAPLE_ENCODER")
    assert encoder_from_env() == "wire"
    monkeypatch.setenv("MAPLE_ENCODER", "fast")
    with pytest.raises(SystemExit, match="MAPLE_ENCODER='fast': use one of wire, runtime"):
        encoder_from_env()


def test_a_served_answer_is_the_same_from_either_encoder(start_server, reference):
    """Two real servers on the reference pack, one per MAPLE_ENCODER: the
    same requests (single and batched) get the same answers."""
    import grpc
    from engine.server.pb.maple.v1 import decision_pb2_grpc

    _, requests = reference
    answers = []
    for encoder in ("wire", "runtime"):
        s = start_server(ROOT / "rules", env={"MAPLE_ENCODER": encoder})
        s.wait_health()
        with grpc.insecure_channel(s.address) as ch:
            stub = decision_pb2_grpc.DecisionServiceStub(ch)
            singles = [canonical(stub.Decide(r, timeout=10)) for r in requests[:30]]
            batch = canonical(stub.DecideBatch(pb.DecideBatchRequest(requests=requests[30:60]), timeout=10))
        answers.append((singles, batch))
    assert answers[0] == answers[1]
