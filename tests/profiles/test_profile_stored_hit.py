"""The decision path's compiled cache hit against the Python it stands for.

``engine.service._decide.stored_hit`` answers a Decide by customer id from a
fresh cache entry without ``Decider._profile``, ``StoredProfiles.lookup``,
``CachedStore.fresh`` and ``fold.refresh``; ``_decide.refresh`` and
``_decide.lifecycle`` are compiled copies of ``fold.refresh`` and
``fold.lifecycle``.  Held equal here: the copies by hypothesis over
generated profiles (odd types, NaN, missing keys included), the hit over
every state a cache entry can be in, and whole Decides answered through the
compiled path and through the Python one (a ``StoredProfiles`` subclass,
which the compiled path does not take).  Time is a FakeClock; nothing sleeps.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.profiles import open_store
from engine.profiles.cache import STALE
from engine.profiles.store import encode
from engine.profiles.fold import DEFAULT_CONFIG, FoldConfig, lifecycle, refresh
from engine.ruleset import load
from engine.service import _decide
from engine.service.decide import Decider
from engine.service.model import DecideQuery, ProfileStatus, RequestContext
from engine.service.rules import RulesetHolder
from engine.service.stored import StoredProfiles
from profiles_support import DAY, NOW, T0, FakeClock, Switchable, ev, item

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- refresh, lifecycle
def _outcome(fn, *args):
    """What a call returns, or the type of what it raises."""
    try:
        return "ok", fn(*args)
    except Exception as err:        # noqa: BLE001 - both sides must fail alike
        return "raised", type(err)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(NOW - 900 * DAY, NOW + DAY),
                    st.integers(-10 ** 20, 10 ** 20), st.booleans(), st.none(), st.just("2025-10-01"))
configs = st.one_of(st.just(DEFAULT_CONFIG), st.builds(
    FoldConfig, new_for=st.one_of(st.floats(0, 90 * DAY), st.integers(0, 10 ** 7)),
    lapsed_after=st.one_of(st.floats(0, 400 * DAY), st.integers(0, 10 ** 8)),
    vip_value=st.one_of(st.floats(0, 5000), st.integers(0, 5000)), vip_orders=st.integers(0, 20)))
nows = st.one_of(st.floats(NOW - 400 * DAY, NOW + 400 * DAY), st.integers(int(NOW - 400 * DAY), int(NOW + 400 * DAY)),
                 numbers)
stages = st.sampled_from(["new", "active", "lapsed", "vip", "", None]).map(
    lambda s: s if not s else "".join(list(s)))     # equal to the stage names, not the same objects


@st.composite
def cases(draw):
    """(profile, now, config): the profile's times drawn around the
    config's thresholds as seen from ``now`` (exactly on them, just either
    side) as often as anywhere, and its fields of any type, or missing."""
    cfg, now = draw(configs), draw(nows)
    base = now if type(now) in (int, float) and math.isfinite(now) else NOW

    def around(threshold):
        return st.one_of(st.sampled_from([base - threshold, base - threshold - 1, base - threshold + 1]), numbers)

    profile = draw(st.fixed_dictionaries({}, optional={
        "orders_count": st.one_of(st.integers(-2, 30), st.just(cfg.vip_orders), st.none(), st.booleans(),
                                  st.floats(0, 30)),
        "last_purchase_at": around(cfg.lapsed_after), "first_purchase_at": around(cfg.new_for),
        "last_seen_at": st.one_of(st.sampled_from([base, base + 5, base - 5, math.nan]), numbers),
        "lifetime_value": st.one_of(st.just(cfg.vip_value), st.floats(0, 5000), numbers),
        "lifecycle": stages}))
    return profile, now, cfg


@settings(max_examples=1000, deadline=None)
@given(case=cases())
def test_compiled_lifecycle_is_fold_lifecycle(case):
    profile, as_of, cfg = case
    assert _outcome(_decide.lifecycle, profile, as_of, cfg) == _outcome(lifecycle, profile, as_of, cfg)


@settings(max_examples=1000, deadline=None)
@given(case=cases())
def test_compiled_refresh_is_fold_refresh(case):
    profile, now, cfg = case
    compiled, reference = _outcome(_decide.refresh, profile, now, cfg), _outcome(refresh, profile, now, cfg)
    assert compiled == reference
    if compiled[0] == "ok":         # the profile itself when its lifecycle stands, a copy otherwise
        assert (compiled[1] is profile) == (reference[1] is profile)


# ---------------------------------------------------------------- the hit
CUSTOMERS = ["C1", "C2", "C3", "C4"]


def _history(store) -> None:
    """Customers in each lifecycle stage: C1 a buyer long ago (lapsed as of
    later decisions), C2 a VIP, C3 browsing only (new), C4 unknown."""
    store.apply([
        ev("purchase", T0, cid="C1", channel="pos", store_id="s1", items=[item("S1", price=40.0, size="42")]),
        *[ev("purchase", T0 + i * DAY, cid="C2", channel="web", items=[item(f"K{i}", price=300.0)])
          for i in range(5)],
        ev("product_view", T0 + 2 * DAY, cid="C3", channel="app", sku="T1", category="t-shirts"),
    ], NOW)


@pytest.fixture
def stored(sqlite_url):
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        _history(store)
        switch = Switchable(store)
        profiles = StoredProfiles(switch, cache_ttl=1.0, retry_after=5.0)
        clock = FakeClock()
        profiles.cache.clock = clock
        yield profiles, switch, clock


def _check(profiles, cid, now):
    """The compiled hit says what lookup says whenever it answers, and it
    answers whenever the cache holds the customer's profile, valid (fresh,
    or vouched for by the change feed; decoded or held encoded), with the
    store up."""
    cache = profiles.cache
    before = list(cache.reads)
    hit = _decide.stored_hit(profiles, cid, now)
    assert cache.reads == [before[0] + (hit is not None), *before[1:]]     # an answer is one hit, as fresh counts
    fresh = cache.fresh(cid)                        # (reads only: lookup below may fill the cache)
    if fresh is not STALE and fresh is not None:
        assert hit is not None
    if hit is not None:
        found = profiles.lookup(cid, None, now)
        assert found.degraded is None
        assert hit == found.profile
        assert hit == refresh(fresh, now, profiles.fold_config)
    return hit


@pytest.fixture
def other(sqlite_url, stored):
    """Another process's store on the same file (its writes reach the
    cache through the change feed only)."""
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        yield store


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(
    st.sampled_from(["lookup", "advance", "settle", "down", "up", "write", "check", "sync", "elsewhere"]),
    st.sampled_from(CUSTOMERS), st.sampled_from([0.3, 0.7, 1.0, 6.0]),
    st.sampled_from([NOW, NOW + 200 * DAY, NOW - 25 * DAY])), max_size=25))
def test_the_compiled_hit_answers_exactly_when_lookup_answers_from_a_valid_entry(stored, other, steps):
    profiles, switch, clock = stored
    cache = profiles.cache
    written = T0 + 3 * DAY
    for op, cid, seconds, now in steps:
        if op == "lookup":
            try:
                profiles.lookup(cid, None, now)
            except Exception:       # noqa: BLE001 - the store down and the customer not cached
                pass
        elif op == "advance":
            clock.advance(seconds)
        elif op == "settle":        # what each fetch does to entries past ttl: held encoded
            with cache._lock:
                cache._entries.settle(clock() + 1)
        elif op == "down":
            switch.down = True
        elif op == "up":
            switch.down = False
        elif op == "write" and not switch.down:     # a write through the cache drops its entries
            written += 1
            profiles.apply([ev("page_view", written, cid=cid, channel="web", page="home")])
        elif op == "elsewhere":                     # another process's write: seen at the next sync
            written += 1
            other.apply([ev("page_view", written, cid=cid, channel="app", page="home")], NOW)
        elif op == "sync":
            cache.sync()
        _check(profiles, cid, now)


def test_each_state_of_an_entry(stored):
    profiles, switch, clock = stored
    cache = profiles.cache
    assert _decide.stored_hit(profiles, "C1", NOW) is None                 # not cached
    profiles.lookup("C1", None, NOW)
    assert _check(profiles, "C1", NOW)["customer_id"] == "C1"              # fresh: answered
    profiles.lookup("C4", None, NOW)
    assert _check(profiles, "C4", NOW) is None                             # a known miss: lookup says so
    clock.advance(1.0)
    assert _check(profiles, "C1", NOW) is None                             # past ttl
    profiles.lookup("C1", None, NOW)
    with cache._lock:                                                      # held encoded (settled)
        cache._entries.settle(clock() + 1)
    assert type(cache._entries.table["C1"][0]) is bytes
    assert _check(profiles, "C1", NOW)["customer_id"] == "C1"              # answered, decoded
    clock.advance(1.0)
    assert _check(profiles, "C1", NOW) is None                             # past ttl, no feed
    cache.sync()                                                           # the first sync vouches only
    clock.advance(0.1)
    assert _check(profiles, "C1", NOW) is None                             # for what is fetched after it
    profiles.lookup("C1", None, NOW)
    clock.advance(0.5)
    cache.sync()
    clock.advance(0.9)                                                     # 1.4 s old, the sync 0.9 s
    with cache._lock:
        cache._entries.settle(clock())
    assert type(cache._entries.table["C1"][0]) is bytes
    assert _check(profiles, "C1", NOW)["customer_id"] == "C1"              # valid by the feed, decoded
    clock.advance(0.1)
    assert _check(profiles, "C1", NOW) is None                             # the sync is a ttl old
    clock.advance(1.0)
    profiles.lookup("C2", None, NOW)
    switch.down = True
    with pytest.raises(Exception):
        profiles.lookup("C3", None, NOW)                                   # the store marked down
    assert cache._down_until is not None
    assert _check(profiles, "C2", NOW) is None                             # fresh, but degraded now


def test_the_table_is_the_cache_s_own_dict(stored):
    profiles, _switch, _clock = stored
    entries = profiles.cache._entries
    profiles.lookup("C1", None, NOW)
    profiles.lookup("C3", None, NOW)
    assert entries.table is not None
    assert dict(entries.table) == {k: entries[k] for k in entries}
    assert set(entries.table) == {"C1", "C3"}


# ---------------------------------------------------------------- whole Decides
class ReferenceProfiles(StoredProfiles):
    """StoredProfiles by another type: the compiled path is not taken."""


@pytest.fixture(scope="module")
def reference_rules():
    return RulesetHolder(load(ROOT / "rules"))


@pytest.mark.parametrize("now", [NOW, NOW + 200 * DAY])
@pytest.mark.parametrize("snapshot", [None, {}, {"sizes": {"t-shirts": "S"}, "lifecycle": "vip"}])
def test_a_decide_through_the_compiled_hit_is_the_python_path_s(sqlite_url, reference_rules, now, snapshot):
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        _history(store)
        fast, slow = StoredProfiles(store, cache_ttl=3600.0), ReferenceProfiles(store, cache_ttl=3600.0)
        answers = {}
        for name, profiles in (("fast", fast), ("slow", slow)):
            decider = Decider(reference_rules, profiles)
            context = RequestContext(channel="web", page="product", category="t-shirts", sku="TEE-001",
                                     timestamp=now)
            answers[name] = [decider.decide(DecideQuery(customer_id=c, profile=snapshot, context=context))
                             for c in CUSTOMERS for _ in range(2)]      # a miss, then a hit
        assert answers["fast"] == answers["slow"]
        assert fast.cache.reads == slow.cache.reads == [4, 4, 0, 0]     # hits and misses counted alike
        statuses = {r.customer_id: r.profile_status for r in answers["fast"]}
        assert statuses["C1"] == ProfileStatus.STORED
        assert statuses["C4"] == (ProfileStatus.SNAPSHOT if snapshot is not None else ProfileStatus.UNKNOWN_CUSTOMER)


def test_a_profile_the_refresh_cannot_read_is_the_python_path_s_degraded_answer(sqlite_url, reference_rules,
                                                                                 caplog):
    """A stored profile with orders but no first purchase time (not one the
    fold writes): the compiled hit raises inside, and the Decide is answered
    as Decider._profile answers it, degraded, not failed."""
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        profiles = StoredProfiles(store, cache_ttl=3600.0)
        odd = {"customer_id": "C9", "orders_count": 2, "last_purchase_at": NOW - DAY}
        with profiles.cache._lock:
            profiles.cache._entries.put("C9", odd, profiles.cache.clock())
        with pytest.raises(KeyError):
            _decide.stored_hit(profiles, "C9", NOW)
        result = Decider(reference_rules, profiles).decide(
            DecideQuery(customer_id="C9", context=RequestContext(channel="web", timestamp=NOW)))
        assert result.degraded and "profile store failed: KeyError" in result.degraded_reason
        assert result.profile_status == ProfileStatus.UNAVAILABLE


@pytest.mark.parametrize("snapshot", [None, {"sizes": {"t-shirts": "S"}}])
def test_a_decide_that_misses_is_the_python_path_s_through_an_outage(sqlite_url, reference_rules, snapshot, caplog):
    """The compiled miss (``_decide._stored_read``, after ``stored_hit``
    found nothing fresh) answers as ``Decider._profile`` does in each state
    the store and the entry can be in: read from the store, an expired
    entry while the store is down (STORED, degraded, its age said), nothing
    held while it is down (UNAVAILABLE), a profile the refresh cannot read
    (UNAVAILABLE, the failure named), and the store back."""
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        _history(store)
        odd = encode({"customer_id": "C9", "orders_count": 2, "last_purchase_at": NOW - DAY})
        store.get_encoded = lambda cid, real=store.get_encoded: odd if cid == "C9" else real(cid)
        answers, counted = {}, {}
        for name, kind in (("fast", StoredProfiles), ("slow", ReferenceProfiles)):
            switch, clock = Switchable(store), FakeClock()
            profiles = kind(switch, cache_ttl=1.0, retry_after=5.0)
            profiles.cache.clock = clock
            decider = Decider(reference_rules, profiles)
            context = RequestContext(channel="web", page="product", category="t-shirts", sku="TEE-001",
                                     timestamp=NOW)
            ask = lambda cid: decider.decide(DecideQuery(customer_id=cid, profile=snapshot, context=context))
            seen = [ask(c) for c in ("C1", "C2", "C4", "C9")]          # read from the store (C9 fails to refresh)
            clock.advance(1.5)
            switch.down = True
            seen += [ask(c) for c in ("C1", "C3", "C4")]               # expired, never held, a known miss expired
            clock.advance(5.0)
            switch.down = False
            seen += [ask(c) for c in ("C1", "C3")]                     # the store answers again
            answers[name], counted[name] = seen, list(profiles.cache.reads)
        assert answers["fast"] == answers["slow"] and counted["fast"] == counted["slow"]
        by = answers["fast"]
        assert [r.profile_status for r in by[:4]] == [ProfileStatus.STORED, ProfileStatus.STORED,
                                                     ProfileStatus.SNAPSHOT if snapshot else
                                                     ProfileStatus.UNKNOWN_CUSTOMER, ProfileStatus.UNAVAILABLE]
        assert "profile store failed: KeyError" in by[3].degraded_reason
        assert by[4].profile_status == ProfileStatus.STORED and "using a cached profile 1.5 s old" in by[4].degraded_reason
        assert by[5].profile_status == ProfileStatus.UNAVAILABLE and "profile store unavailable" in by[5].degraded_reason
        assert not any(r.degraded for r in by[7:])
