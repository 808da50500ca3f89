"""engine.service.assemble (the kernel's raw answers straight to typed
results) against results.from_outcomes (the same made from the ruleset's
Outcomes, one at a time: the reference).

Equal means equal field for field (the results are msgspec Structs), for every
customer, every subset of decisions, with experiments, holdouts and caps.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import profiles as bench_profiles
from engine.ruleset import build, load
from engine.server import convert
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.service import Decider, RulesetHolder, results
from engine.eval.values import render_value
from engine.service._assemble import render
from engine.service.assemble import Plan
from engine.service.decision_log import DecisionLog
from engine.service.inventory import InventoryHolder, InventoryStores
from engine.service.model import DecideQuery, RequestContext
from engine.source import SourceFile
from tests.conftest import TEST_SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def assert_same(rs, plan, profile, request, now, customer_id=None, decisions=None):
    wanted = None if decisions is None else list(decisions)
    raw = rs.run(profile, request, now, customer_id, wanted)
    asked = None if decisions is None else set(decisions)
    fast = plan.map(raw, asked)
    reference = results.from_outcomes(rs.decision_set(raw, now), asked)
    assert fast == reference
    size = rs.decision_set(raw, now).outcomes.get(results.SIZE)
    assert plan.size(raw) == (size.value if size is not None and isinstance(size.value, str) else None)
    return fast


@pytest.fixture(scope="module")
def reference_pack():
    rs = load(ROOT / "rules")
    requests = [pb.DecideRequest.FromString(b) for b in
                bench_profiles.decide_requests(bench_profiles.synthetic(400), by_id=False)]
    return rs, Plan(rs), [convert.query_from_pb(r) for r in requests]


def test_every_reference_pack_answer_is_the_outcomes_answer(reference_pack):
    rs, plan, queries = reference_pack
    seen = set()
    for q in queries:
        fields, _, decided_by, nearby = assert_same(rs, plan, q.profile, q.context.to_request(),
                                                    q.context.timestamp)
        nbo = fields[results.OFFER]
        seen.add((bool(nbo.offers), nbo.common.experiments != (), nbo.common.source,
                  fields[results.SIZE].size is not None, nearby[1].source))
    sources = {s[2] for s in seen}
    assert {"rule", "holdout"} <= sources                    # offers won and customers held out
    assert any(s[1] for s in seen) and any(s[3] for s in seen) and any(not s[3] for s in seen)


def test_subsets_of_the_reference_decisions(reference_pack):
    rs, plan, queries = reference_pack
    rng = random.Random(5)
    names = list(rs.decision_names)
    for q in queries[:120]:
        subset = rng.sample(names, rng.randint(1, len(names)))
        if results.NEARBY in subset and results.SIZE not in subset:
            subset.append(results.SIZE)                       # as Decider._wanted does
        assert_same(rs, plan, q.profile, q.context.to_request(), q.context.timestamp,
                    decisions=subset)


# a pack that gives the four typed names other shapes, and other decisions besides
ODD = """
decision homepage_category: number pick first default 7
decision prefill_size: string pick all
decision next_best_offer: offer pick best top 2
decision nearby_stores pick first { radius: number = 5, max_stores: number = 2, note: string = "x" }
decision hero: string pick first default "generic"
decision extras: offer pick best
decision shape pick first { x: number = 1, g: geo = geo(51.5, -0.1) }
experiment copy on hero holdout 20% variant short 40% variant long 40%
experiment layout on nearby_stores variant a 50% variant b 50%
rule big when profile.n > 10 then homepage_category = profile.n
rule s1 when profile.s == "a" then prefill_size = "S"
rule s2 when profile.b then prefill_size = "M"
rule wide when profile.n > 3 then nearby_stores.radius = profile.n, nearby_stores.note = profile.s
rule long_hero when experiment.copy == long then hero = "long-hero"
rule tagged when profile.b then shape.g = profile.g, shape.x = profile.m
offer o1 for next_best_offer score profile.n message "One {profile.s}" then cta = "go", amount = profile.m
offer o2 for next_best_offer score 3 message "Two" because "always"
offer o3 for next_best_offer when profile.b score profile.m message "Three"
offer e1 for extras score 1 message "Extra"
"""


@functools.cache
def odd_pack():
    rs = build([SourceFile("schema.rules", TEST_SCHEMA), SourceFile("odd.rules", ODD)])
    return rs, Plan(rs)


profiles = st.fixed_dictionaries({}, optional={
    "s": st.sampled_from(["a", "b", ""]),
    "n": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 50)),
    "m": st.floats(-100, 100),
    "b": st.booleans(),
    "g": st.fixed_dictionaries({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}),
})


#: which decisions a request asks for: all (None), or a subset of the odd pack's names
decision_names = st.none() | st.sets(st.sampled_from(["homepage_category", "prefill_size", "next_best_offer",
                                                      "nearby_stores", "hero", "extras", "shape"]), min_size=1)


@settings(max_examples=300, deadline=None)
@given(profile=profiles, customer=st.integers(0, 10_000),
       decisions=decision_names)
def test_other_shapes_of_the_typed_names_and_generic_decisions(profile, customer, decisions):
    rs, plan = odd_pack()
    assert_same(rs, plan, profile, {"channel": "web"}, 1_700_000_000.0, f"c{customer}", decisions)


def test_the_odd_pack_takes_every_way_through_the_plan():
    rs, plan = odd_pack()
    fields, generic, decided_by, nearby = assert_same(
        rs, plan, {"s": "a", "n": 12, "m": 2.5, "b": True, "g": {"lat": 48.1, "lon": 11.6}}, {}, 1_700_000_000.0, "c1")
    assert set(generic) == {"homepage_category", "prefill_size", "hero", "extras", "shape"}
    assert generic["homepage_category"].value == 12.0 and generic["prefill_size"].value == ["S", "M"]
    assert [o.id for o in fields[results.OFFER].offers] == ["o1", "o2"]
    assert fields[results.OFFER].offers[0].message == "One a"
    assert nearby[0].radius_km == 12.0 and nearby[1].experiments[0][0] == "layout"
    assert dict(decided_by)["hero"] in (None, "long_hero")


def test_a_decider_answers_as_before_with_explain_and_the_decision_log(reference_pack, tmp_path):
    """The served path (plan) and the explain path give one answer; the
    decision log gets the outcomes all the same."""
    rs, _, queries = reference_pack
    decider = Decider(RulesetHolder(rs), stores=InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")))
    decider.decision_log = DecisionLog(tmp_path / "log.jsonl", 1.0, b"k" * 32)
    try:
        for q in queries[:30]:
            plain = decider.decide(q)
            explained = decider.decide(DecideQuery(q.customer_id, q.profile, q.snapshot_bytes, q.context,
                                                   q.decisions, explain=True))
            assert explained.explanation and set(explained.explanation) == set(rs.decision_names)
            explained.explanation = None
            assert explained == plain
    finally:
        decider.decision_log.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 60 and all('"next_best_offer"' in line for line in lines)


def test_a_reload_gets_a_new_plan(reference_pack):
    rs, _, queries = reference_pack
    holder = RulesetHolder(rs)
    decider = Decider(holder)
    decider.decide(queries[0])
    other = build([SourceFile("schema.rules", TEST_SCHEMA),
                   SourceFile("a.rules", 'decision homepage_category: string pick first default "other"\n')])
    holder.swap(other)
    assert decider._plan.ruleset is other         # made at the swap, not by the next Decide
    result = decider.decide(DecideQuery(context=RequestContext()))
    assert result.homepage_category.category == "other" and result.ruleset_version == other.version


def _rendered(fn, v):
    try:
        return fn(v)
    except (ValueError, OverflowError) as err:          # NaN and infinities: refused alike
        return type(err)


@settings(max_examples=500, deadline=None)
@given(st.none() | st.booleans() | st.text(max_size=5) | st.integers(-10**18, 10**18)
       | st.floats() | st.sampled_from([0.5, -0.0, 1e15, -1e15, 999999999999999.0, 2.0**53, 12.0, -3.0])
       | st.tuples(st.floats(-90, 90), st.floats(-180, 180)))
def test_the_compiled_message_values_are_render_value(v):
    assert _rendered(render, v) == _rendered(render_value, v)
