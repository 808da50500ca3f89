"""The served Decide's answer written from the kernel's raw answers
(``wire.encode_raw``, through ``_decide.answer``) against the DecideResult
path it replaces on the server: ``encode_result(decide_one(...))``.

Equal means the same bytes, the same decided_by (the metrics' count) and
the same degraded flag, for the reference pack's customers with the
reference stores (by profile and by customer id, with subsets of the
decisions) and for a pack that takes every other way through the plan:
typed names of other shapes, generic decisions, experiments on offers and
on the stores' policy, holdouts.  (test_wire.py holds encode_result itself
to the protobuf runtime.)"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import profiles as bench_profiles
from engine.ruleset import load
from engine.server import convert, wire
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.service import Decider, RulesetHolder
from engine.service._decide import answer, decide_one
from engine.service.inventory import InventoryHolder, InventoryStores
from engine.server.app import _metrics_on_result
from engine.server.servicers import DecisionServicer, _item_error_bytes
from engine.service.model import DecideQuery, ItemError, RequestContext
from engine.service.sources import SourceUnavailable

from engine.ruleset import build
from engine.source import SourceFile
from tests.conftest import TEST_SCHEMA

from .test_assemble import decision_names, odd_pack, profiles

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_796_300_000.0          # a Thursday afternoon in December 2026: stores open


def both(decider, q):
    """(bytes, decided_by, degraded) of the raw path and of the result path."""
    rs, plan = decider.holder.current, decider._plan
    written = decide_one(decider, rs, plan, q, None, wire.encode_raw)
    result = decide_one(decider, rs, plan, q, None)
    return (written.body, list(written.decided_by), written.degraded), \
        (wire.encode_result(result), list(result.decided_by), result.degraded)


def assert_same(decider, q):
    raw, reference = both(decider, q)
    assert raw[0] == reference[0], pb.DecideResponse.FromString(raw[0])
    assert raw[1] == reference[1] and raw[2] == reference[2]
    return reference


@pytest.fixture(scope="module")
def reference():
    decider = Decider(RulesetHolder(load(ROOT / "rules")),
                      stores=InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")), clock=lambda: NOW)
    requests = [pb.DecideRequest.FromString(b) for b in
                bench_profiles.decide_requests(bench_profiles.synthetic(300), by_id=False)]
    return decider, [convert.query_from_pb(r) for r in requests]


def test_every_reference_pack_answer_is_the_results_answer(reference):
    decider, queries = reference
    shown = 0
    for q in queries:
        answer_bytes = assert_same(decider, q)[0]
        shown += bool(pb.DecideResponse.FromString(answer_bytes).nearby_stores.stores)
    assert shown > 50                          # the stores are part of what is compared


def test_subsets_of_the_decisions_and_the_clock(reference):
    decider, queries = reference
    rng = random.Random(7)
    names = sorted(decider.holder.current.decision_names)
    for q in queries[:100]:
        subset = tuple(rng.sample(names, rng.randint(1, len(names))))
        ctx = q.context
        assert_same(decider, DecideQuery(q.customer_id, q.profile, q.snapshot_bytes,
                                         RequestContext(ctx.channel, ctx.device, ctx.locale, ctx.page, ctx.sku,
                                                        ctx.category, ctx.location, ctx.store, None),
                                         subset))


def test_an_unknown_customer_and_no_one(reference):
    decider, _ = reference
    assert_same(decider, DecideQuery(customer_id="c-nobody"))
    assert_same(decider, DecideQuery())


class Failing:
    def nearby(self, query, timeout):
        raise SourceUnavailable("the stock service is down")


def test_a_degraded_answer(reference):
    decider, queries = reference
    down = Decider(decider.holder, stores=Failing(), clock=lambda: NOW)
    (out, decided_by, degraded), _ = both(down, queries[0])
    assert degraded and pb.DecideResponse.FromString(out).degraded_reason.startswith("store availability")
    for q in queries[:40]:
        assert_same(down, q)


@settings(max_examples=300, deadline=None)
@given(profile=profiles, customer=st.integers(0, 10_000),
       decisions=decision_names)
def test_every_way_through_the_plan(profile, customer, decisions):
    rs, _ = odd_pack()
    decider = Decider(RulesetHolder(rs), clock=lambda: NOW)
    assert_same(decider, DecideQuery(profile=profile, context=RequestContext(channel="web"),
                                     decisions=tuple(sorted(decisions)) if decisions else (),
                                     aliases=()) if customer % 2 else
                DecideQuery(customer_id=f"c{customer}", profile=profile, decisions=tuple(decisions or ())))


# the typed decisions themselves under experiments (a variant's Common is not the rule's own) and a holdout
TYPED = """
decision homepage_category: string pick first default "home"
decision prefill_size: string pick first
decision next_best_offer: offer pick best top 3
experiment hero on homepage_category holdout 10% variant a 45% variant b 45%
experiment fit on prefill_size variant p 50% variant q 50%
experiment deal on next_best_offer variant x 50% variant y 50%
rule vip when profile.n > 10 then homepage_category = "new-in"
rule a_only when experiment.hero == a then homepage_category = "sale"
rule s1 when profile.s == "a" then prefill_size = "S"
offer o1 for next_best_offer score profile.n message "One {profile.s}" then cta = "go", amount = profile.m
offer o2 for next_best_offer when profile.b score 3 message "Two"
"""


@settings(max_examples=200, deadline=None)
@given(profile=profiles, customer=st.integers(0, 10_000))
def test_the_typed_decisions_under_experiments(profile, customer):
    rs = build([SourceFile("schema.rules", TEST_SCHEMA), SourceFile("typed.rules", TYPED)])
    decider = Decider(RulesetHolder(rs), clock=lambda: NOW)
    assert_same(decider, DecideQuery(customer_id=f"c{customer}", profile=profile))


class NoDeadline:
    def time_remaining(self):
        return None


class Recorder:
    """The metrics' recorder as _metrics_on_result uses it (m.RECORDER)."""

    def __init__(self):
        self.RECORDER = self
        self.batches, self.answers = [], []

    def decided_results(self, results):
        self.batches.append(list(results))

    def decided(self, decided_by, degraded=False):
        self.answers.append((tuple(decided_by), degraded))


def test_a_served_batch_is_the_results_batch(reference):
    """DecideBatch as served (items written from their raw answers, an
    explained one and a bad one among them) against the batch encoded from
    DecideResults; the metrics count the same answers."""
    decider, queries = reference
    items = list(queries[:60])
    items[5] = DecideQuery(items[5].customer_id, items[5].profile, items[5].snapshot_bytes, items[5].context,
                           explain=True)
    items[9] = DecideQuery(customer_id="x" * 10_000)            # too long: this item's error
    recorder = Recorder()
    servicer = DecisionServicer(decider, _metrics_on_result(recorder))
    served = servicer.decide_batch_bytes(items, NoDeadline())
    version, results = decider.decide_batch(items)
    assert served == wire.encode_batch(version, results, _item_error_bytes)
    assert isinstance(results[9], ItemError) and results[5].explanation
    written = recorder.batches[0]
    assert [type(r).__name__ for r in written].count("EncodedAnswer") == 58
    assert [(r.decided_by, r.degraded) for r in written if not isinstance(r, ItemError)] == \
        [(tuple(r.decided_by), r.degraded) for r in results if not isinstance(r, ItemError)]


class Counted:
    def __init__(self):
        self.calls = []

    def __call__(self, result):
        self.calls.append(("result", result.decided_by, result.degraded))

    def decided(self, decided_by, degraded):
        self.calls.append(("decided", tuple(decided_by), degraded))


def test_answer_counts_what_it_wrote_and_explains_through_the_result(reference):
    decider, queries = reference
    counted = Counted()
    q = queries[3]
    out = answer(decider, q, None, counted, wire.encode_result, wire.encode_raw)
    _, (expected, decided_by, degraded) = both(decider, q)
    assert out == expected and counted.calls == [("decided", tuple(decided_by), degraded)]
    explained = DecideQuery(q.customer_id, q.profile, q.snapshot_bytes, q.context, explain=True)
    out = answer(decider, explained, None, counted, wire.encode_result, wire.encode_raw)
    assert pb.DecideResponse.FromString(out).HasField("explanation") and counted.calls[-1][0] == "result"
    plain = answer(decider, q, None, lambda r: counted.calls.append("plain"), wire.encode_result, wire.encode_raw)
    assert plain == expected and counted.calls[-1] == "plain"    # an on_result without .decided: the result path


def test_a_reload_writes_by_the_new_plan():
    """The bytes each rule's Common was written to belong to one plan: after
    a swap the answer is the new ruleset's, not the old bytes."""
    first = build([SourceFile("schema.rules", TEST_SCHEMA), SourceFile("typed.rules", TYPED)])
    holder = RulesetHolder(first)
    decider = Decider(holder, clock=lambda: NOW)
    q = DecideQuery(customer_id="c7", profile={"n": 20})
    before = pb.DecideResponse.FromString(assert_same(decider, q)[0])
    assert before.homepage_category.reason.rule == "vip"
    holder.swap(build([SourceFile("schema.rules", TEST_SCHEMA), SourceFile("typed.rules", TYPED.replace(
        'rule vip when profile.n > 10 then homepage_category = "new-in"',
        'rule big_spender when profile.n > 10 then homepage_category = "new-in"'))]))
    after = pb.DecideResponse.FromString(assert_same(decider, q)[0])
    assert after.homepage_category.reason.rule == "big_spender" and after.ruleset_version != before.ruleset_version
