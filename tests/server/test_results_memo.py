"""The remembered parts of typed results (engine.service.results): a memo
must never hand one customer's answer to a value that only compares equal."""
from __future__ import annotations

from engine.ruleset import Outcome, Reason
from engine.service import results


def record(**fields) -> Outcome:
    return Outcome("nearby_stores", "record", fields, "rule")


def test_policies_of_values_that_compare_equal_stay_apart():
    # True == 1 == 1.0 in Python, but a flag is not a count
    assert results.policy(record(radius=5, max_stores=True)).max_stores == 0
    assert results.policy(record(radius=5, max_stores=1)).max_stores == 1
    assert results.policy(record(radius=5, max_stores=1.0)).max_stores == 1
    assert results.policy(record(radius=True, max_stores=1)).radius_km == 0.0


def test_a_policy_with_an_unhashable_field_is_still_worked_out():
    p = results.policy(record(radius=2.5, max_stores=3, extra=["a", "b"]))
    assert (p.radius_km, p.max_stores) == (2.5, 3)


def test_the_memo_forgets_when_full():
    memo = results._Memo(limit=2)
    memo.put("a", 1), memo.put("b", 2), memo.put("c", 3)
    assert dict(memo) == {"c": 3}


def test_common_follows_the_reason_object_not_its_equal():
    first = Reason("vip_home", "rule", "VIPs first", "homepage.rules:3:1")
    other = Reason("vip_home", "rule", "VIPs first", "homepage.rules:3:1")
    a = results.common(Outcome("homepage_category", "value", "x", "rule", (first,)))
    assert a is results.common(Outcome("homepage_category", "value", "y", "rule", (first,)))
    b = results.common(Outcome("homepage_category", "value", "x", "rule", (other,), (("exp", "b"),)))
    assert b.experiments == (("exp", "b"),) and b.reason.rule == "vip_home"
    assert results.common(Outcome("homepage_category", "value", "x", "default", (first,))).reason is None


def test_a_scored_offer_reason_is_made_afresh():
    scored = Reason("latte", "offer", None, "offers.rules:9:1", 0.8)
    c = results.common(Outcome("next_best_offer", "offer", [], "rule", (scored,)))
    assert c.reason.rule == "latte"
    assert all(hit[0] is not scored for hit in results._COMMONS.values())


def test_experiments_given_as_a_list_are_not_a_memo_key():
    r = Reason("vip_home", "rule", None, "homepage.rules:3:1")
    c = results.common(Outcome("homepage_category", "value", "x", "rule", (r,), [("exp", "a")]))
    assert c.experiments == (("exp", "a"),)
    d = results.common(Outcome("homepage_category", "value", "x", "holdout", (), [("exp", "holdout")]))
    assert d.reason is None and d.source == "holdout"
