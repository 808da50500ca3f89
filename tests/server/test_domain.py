"""The service domain without gRPC: degraded answers, swaps, validation."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.ruleset import load
from engine.service.sources import NearbyFound
from engine.service import Aborted, DecideQuery, Decider, InvalidArgument, ProfileStatus, RequestContext, RulesetHolder
from engine.service.errors import DeadlineExceeded, FieldViolation
from engine.service.model import DecideResult
from engine.service.sources import SourceUnavailable, StaticProfiles, open_profile_source

from .conftest import NOW, RUNNER, write_pack


class DownStore:
    def get(self, customer_id, timeout):
        raise SourceUnavailable("connection refused")

    def lookup_alias(self, kind, value, timeout, now):
        raise SourceUnavailable("connection refused")

    def describe(self):
        return "down"


class BrokenStores:
    def nearby(self, query, timeout):
        raise RuntimeError("bug")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory):
    return load(write_pack(tmp_path_factory.mktemp("pack")))


def test_profile_store_down_decides_on_the_snapshot_marked_degraded(ruleset):
    d = Decider(RulesetHolder(ruleset), profiles=DownStore())
    r = d.decide(DecideQuery(customer_id="c1", profile={"lifecycle": "vip"}, context=RequestContext(timestamp=NOW)))
    assert r.degraded and "profile store unavailable: connection refused" in r.degraded_reason
    assert r.profile_status is ProfileStatus.UNAVAILABLE
    assert r.decisions["banner"].value == "vip"


def test_a_failing_stores_source_degrades_only_nearby(ruleset):
    d = Decider(RulesetHolder(ruleset), stores=BrokenStores())
    q = DecideQuery(profile=RUNNER, context=RequestContext(sku="sku-1", category="shoes", timestamp=NOW))
    r = d.decide(q)
    assert r.degraded and "store availability failed" in r.degraded_reason
    assert r.nearby_stores.stores == () and r.prefill_size.size == "42"
    assert r.nearby_stores.empty_reason == "unavailable"      # not "no_stock": nothing was known


def test_snapshot_overrides_stored_profile_keys(ruleset):
    d = Decider(RulesetHolder(ruleset), profiles=StaticProfiles({"c-runner": RUNNER}))
    r = d.decide(DecideQuery(customer_id="c-runner", profile={"lifecycle": "new"},
                             context=RequestContext(timestamp=NOW)))
    assert r.profile_status is ProfileStatus.STORED
    assert r.decisions["banner"].value == "none"      # lifecycle new now, not vip


def test_nearby_asks_for_the_size_even_when_only_nearby_is_wanted(ruleset):
    seen = []

    class Spy:
        def nearby(self, query, timeout):
            seen.append(query)
            return NearbyFound((), "home", "no_stock")
    d = Decider(RulesetHolder(ruleset), stores=Spy())
    r = d.decide(DecideQuery(profile=RUNNER, decisions=("nearby_stores",),
                             context=RequestContext(sku="sku-1", category="shoes", timestamp=NOW)))
    assert seen[0].size == "42" and seen[0].home == (51.5, -0.12) and seen[0].request_location is None
    assert r.prefill_size is None                         # not asked, not returned
    # with the request's own point the home, only the last fallback, is not asked for
    d.decide(DecideQuery(profile=RUNNER, context=RequestContext(sku="sku-1", category="shoes", timestamp=NOW,
                                                                location=(48.85, 2.35))))
    assert seen[1].request_location == (48.85, 2.35) and seen[1].home is None


def test_validation_collects_every_problem(ruleset):
    d = Decider(RulesetHolder(ruleset))
    q = DecideQuery(customer_id="x" * 300, decisions=("nope",),
                    context=RequestContext(location=(95.0, float("inf")), timestamp=1e13, page="p" * 2000))
    with pytest.raises(InvalidArgument) as e:
        d.decide(q)
    assert [v.field for v in e.value.violations] == [
        "customer_id", "context.page", "context.location.lat", "context.location.lon", "context.timestamp",
        "decisions[0]"]


def test_deep_snapshot_is_rejected_not_recursed(ruleset):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidArgument) as e:
        Decider(RulesetHolder(ruleset)).decide(DecideQuery(profile=deep))
    assert e.value.violations[0].field == "profile"


def test_holder_swap_is_compare_and_swap(ruleset):
    h = RulesetHolder()
    assert h.swap(ruleset) == ""
    with pytest.raises(Aborted):
        h.swap(ruleset, expected_version="other")
    assert h.swap(ruleset, expected_version=ruleset.version) == ruleset.version


def test_store_urls(tmp_path):
    assert open_profile_source("").describe() == "none"
    f = tmp_path / "p.jsonl"
    f.write_text('{"customer_id": "a", "lifecycle": "vip"}\n\n{"customer_id": "b"}\n')
    src = open_profile_source(f"jsonl:{f}")
    assert src.get("a", None)["lifecycle"] == "vip" and src.get("zz", None) is None
    with pytest.raises(ValueError, match="unsupported profile store"):
        open_profile_source("mysql://localhost/profiles")


def test_a_jsonl_store_logs_what_does_not_fit_the_schema_and_serves_it_anyway(reference, tmp_path, caplog):
    """`--store jsonl:PATH`: a profile the schema would read as missing
    decides on defaults without a word; the server says where, with the
    rule tests' words and suggestions, then a count past the cap."""
    from types import SimpleNamespace

    from engine.server.app import check_store_profiles, log_profile_problems
    f = tmp_path / "p.jsonl"
    f.write_text('{"customer_id": "a", "lifecycle": "vipp", "orders_count": "3"}\n\n'
                 '{"customer_id": "b", "lifecyle": "vip", "_fold": {"v": 1}}\n'
                 '{"customer_id": "c", "lifecycle": "vip", "orders_count": 3}\n')
    src = open_profile_source(f"jsonl:{f}")
    caplog.set_level("WARNING", logger="maple.server")
    assert log_profile_problems(src, reference) == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"{f}:1: profile.lifecycle is one of new, active, lapsed, vip, not `vipp`; did you mean `vip`?",
        f'{f}:1: profile.orders_count is a number, but this is a text ("3"): write it without quotes',
        f"{f}:3: profile has no attribute `lifecyle`; did you mean `lifecycle`?"]
    assert src.get("a", None)["lifecycle"] == "vipp" and src.get("b", None)["lifecyle"] == "vip"   # kept
    caplog.clear()
    check_store_profiles(SimpleNamespace(store=f"jsonl:{f}"), reference)    # the supervisor of --workers
    assert len(caplog.records) == 3
    caplog.clear()
    assert log_profile_problems(src, reference, shown=1) == 3
    assert len(caplog.records) == 2 and f"{f}: 2 more profile problems not shown (3 in all)" in caplog.text
    caplog.clear()
    assert log_profile_problems(StaticProfiles({"x": {"lifecycle": "vip"}}), reference) == 0
    f.write_text('{"customer_id": "a", "lifecycle": "new"}\n{"customer_id": "a", "lifecycle": "vip"}\n')
    again = open_profile_source(f"jsonl:{f}")
    assert again.schema_problems(reference) == [
        f"{f}:2: customer_id 'a' again (first on line 1): this line is served, line 1 is not"]
    assert again.get("a", None)["lifecycle"] == "vip"
    assert log_profile_problems(open_profile_source(""), reference) == 0 and not caplog.records


def test_a_merged_customer_keeps_one_variant_whichever_id_is_sent():
    """After a merge the profile is kept under the survivor's id and the
    other id is an alias of it: experiments assign by the profile's
    customer_id, so asking by either id gives the same variant (by the
    request's id, these two ids fall in different buckets)."""
    from engine.eval.values import assign_variant
    rs = load(Path(__file__).resolve().parents[2] / "rules")
    ids = ("m-2", "acct-1")
    variants = [("control", 5500), ("urgent", 10000)]          # cumulative upper bounds, after a 10 % holdout
    assert assign_variant("offer_copy", 1000, variants, ids[0]) != assign_variant("offer_copy", 1000, variants, ids[1])
    merged = {"customer_id": "m-2", "lifecycle": "active", "orders_count": 2, "lifetime_value": 120.0,
              "consent": {"email": True, "push": True}}
    d = Decider(RulesetHolder(rs), profiles=StaticProfiles({i: merged for i in ids}))   # an alias finds the survivor
    got = []
    for cid in ids:
        r = d.decide(DecideQuery(customer_id=cid, context=RequestContext(timestamp=NOW)))
        assert r.profile_status is ProfileStatus.STORED
        assert r.customer_id == "m-2"                  # the answer says who it is for: the survivor
        got.append(r.next_best_offer.common.experiments)
    assert got[0] == got[1] and got[0]


def test_the_answer_names_the_customer_it_is_for(ruleset):
    d = Decider(RulesetHolder(ruleset), profiles=StaticProfiles({"c-runner": RUNNER}))
    ctx = RequestContext(timestamp=NOW)
    assert d.decide(DecideQuery(customer_id="c-runner", context=ctx)).customer_id == "c-runner"
    assert d.decide(DecideQuery(customer_id="c-new", context=ctx)).customer_id == "c-new"     # unknown
    assert d.decide(DecideQuery(profile={"lifecycle": "vip"}, context=ctx)).customer_id == ""  # snapshot only
    assert d.decide(DecideQuery(profile={"customer_id": "c-7"}, context=ctx)).customer_id == "c-7"
    assert d.decide(DecideQuery(context=ctx)).customer_id == ""                                 # anonymous


# ---------------------------------------------------------------- other identifiers
REFERENCE = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(scope="module")
def reference():
    return load(REFERENCE)


@pytest.fixture
def stored(tmp_path):
    src = open_profile_source(f"sqlite://{tmp_path / 'p.db'}")
    yield src
    src.close()


T = float(int(time.time()))        # events must be near the store's (real) clock


def _purchase(eid, t, **ids):
    return {"event_id": eid, "type": "purchase", "channel": "pos", "timestamp": t, "store_id": "s001",
            "order_id": eid, "items": [{"sku": "TEE-001", "category": "tshirts", "size": "M", "price": 25.0}],
            **ids}


def test_a_till_scanning_a_loyalty_card_gets_the_card_holders_decisions(reference, stored):
    assert not stored.apply([_purchase("e1", T - 86400, customer_id="c-9", loyalty_card="LC-9")]).errors
    d = Decider(RulesetHolder(reference), profiles=stored)
    ctx = RequestContext(channel="pos", store="s001", category="tshirts", timestamp=T)
    by_card = d.decide(DecideQuery(aliases=(("loyalty_card", "LC-9"),), context=ctx))
    by_id = d.decide(DecideQuery(customer_id="c-9", context=ctx))
    assert by_card.profile_status is ProfileStatus.STORED
    assert by_card.customer_id == "c-9"                     # who the card belongs to, for the till to log
    assert by_card.prefill_size.size == "M"                 # from the purchase at the till
    assert by_card == by_id
    # an id the store does not know, with a card it does: the card finds the customer
    assert d.decide(DecideQuery(customer_id="web-anon-1", aliases=(("loyalty_card", "LC-9"),),
                                context=ctx)) == by_id
    # a known customer_id wins over another customer's card
    stored.apply([_purchase("e2", T - 3600, customer_id="c-10", email_hash="h10")])
    r = d.decide(DecideQuery(customer_id="c-10", aliases=(("loyalty_card", "LC-9"),), context=ctx))
    assert r == d.decide(DecideQuery(customer_id="c-10", context=ctx)) != by_id


def test_an_unknown_card_is_decided_as_the_customer_its_first_event_creates(reference, stored):
    """Known by nobody, the card's customer is decided under the id their
    first event with it mints: the experiment variant they see now is the
    one they keep once the till records their purchase."""
    d = Decider(RulesetHolder(reference), profiles=stored)
    q = DecideQuery(aliases=(("loyalty_card", "LC-11"), ("device_id", "dev-1")),
                    context=RequestContext(channel="app", timestamp=T))
    before = d.decide(q)
    assert before.profile_status is ProfileStatus.UNKNOWN_CUSTOMER and not before.degraded
    # (by the card's own text, or the device's minted id, this customer would get control)
    assert before.next_best_offer.common.experiments == (("offer_copy", "urgent"),)
    result = stored.apply([_purchase("e3", T - 60, loyalty_card="LC-11", device_id="dev-1")])
    minted = result.assigned["e3"]
    assert minted.startswith("m-")
    assert before.customer_id == minted                    # the id the answer was given under, before it existed
    assert before.next_best_offer.common.experiments == d.decide(
        DecideQuery(customer_id=minted, profile={"lifecycle": "new"},
                    context=RequestContext(channel="app", timestamp=T))).next_best_offer.common.experiments
    after = d.decide(q)                                   # this process's write dropped the cached miss
    assert after.profile_status is ProfileStatus.STORED
    assert d.decide(DecideQuery(aliases=(("device_id", "dev-1"),),
                                context=RequestContext(channel="app", timestamp=T))) == after


@pytest.mark.parametrize("source", ["none", "jsonl"])
def test_sources_without_identifiers_know_nobody_by_one(reference, tmp_path, source):
    f = tmp_path / "p.jsonl"
    f.write_text('{"customer_id": "c-9", "lifecycle": "vip"}\n')
    d = Decider(RulesetHolder(reference), profiles=open_profile_source("" if source == "none" else f"jsonl:{f}"))
    r = d.decide(DecideQuery(aliases=(("loyalty_card", "c-9"),), context=RequestContext(timestamp=NOW)))
    assert r.profile_status is ProfileStatus.UNKNOWN_CUSTOMER
    r = d.decide(DecideQuery(customer_id="c-9", aliases=(("loyalty_card", "LC"),),
                             context=RequestContext(timestamp=NOW)))
    assert r.profile_status is (ProfileStatus.STORED if source == "jsonl" else ProfileStatus.UNKNOWN_CUSTOMER)


def test_a_card_while_the_store_is_down_is_degraded_not_failed(ruleset):
    d = Decider(RulesetHolder(ruleset), profiles=DownStore())
    r = d.decide(DecideQuery(aliases=(("loyalty_card", "LC-9"),), profile={"lifecycle": "vip"},
                             context=RequestContext(timestamp=NOW)))
    assert r.degraded and r.profile_status is ProfileStatus.UNAVAILABLE
    assert r.decisions["banner"].value == "vip"             # the snapshot still decides


def test_identifiers_are_validated_by_name(ruleset):
    q = DecideQuery(aliases=(("loyalty_card", "x" * 257), ("device_id", "d" * 256)))
    with pytest.raises(InvalidArgument) as e:
        Decider(RulesetHolder(ruleset)).decide(q)
    assert [(v.field, v.description) for v in e.value.violations] == [
        ("loyalty_card", "at most 256 characters, got 257")]


class _SlowFor:
    """A profile source that answers ``slow``'s lookup only once the
    monotonic clock has passed ``until`` (a spin on the clock, no sleep),
    and records every id it was asked for."""

    def __init__(self, slow: str, until: float):
        self.slow, self.until, self.asked = slow, until, []

    def get(self, customer_id, timeout):
        self.asked.append(customer_id)
        if customer_id == self.slow:
            while time.monotonic() <= self.until:
                pass
        return None


def test_a_deadline_passing_mid_batch_stops_it_before_the_next_item(ruleset):
    deadline = time.monotonic() + 0.05
    source = _SlowFor("c-2", deadline)
    d = Decider(RulesetHolder(ruleset), profiles=source)
    queries = [DecideQuery(customer_id=f"c-{i}", context=RequestContext(timestamp=NOW)) for i in (1, 2, 3)]
    with pytest.raises(DeadlineExceeded):
        d.decide_batch(queries, deadline)
    assert source.asked == ["c-1", "c-2"]          # no work for the item after the deadline


def test_a_batch_past_its_deadline_does_no_work(ruleset):
    source = _SlowFor("", 0.0)
    d = Decider(RulesetHolder(ruleset), profiles=source)
    with pytest.raises(DeadlineExceeded):
        d.decide_batch([DecideQuery(customer_id="c-1")], time.monotonic() - 1)
    assert source.asked == []


def test_a_batch_item_error_is_its_own_and_named_by_its_index(ruleset):
    d = Decider(RulesetHolder(ruleset))
    bad = DecideQuery(context=RequestContext(location=(91.0, 0.0), timestamp=NOW))
    version, out = d.decide_batch([DecideQuery(context=RequestContext(timestamp=NOW)), bad,
                                   InvalidArgument([FieldViolation("context.device", "unknown device 77")])])
    assert version == ruleset.version
    assert isinstance(out[0], DecideResult)
    assert [v.field for v in out[1].error.violations] == ["requests[1].context.location.lat"]
    assert [v.field for v in out[2].error.violations] == ["requests[2].context.device"]
