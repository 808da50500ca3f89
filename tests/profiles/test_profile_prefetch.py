"""DecideBatch reads its items' profiles in one store call.

``ProfileStore.get_many`` is ``get`` for many ids at once (a real SQLite file
and a real redis-server: the same answers, merged-away ids included),
``CachedStore.prefetch`` fills the cache with them as ``read`` would one by
one, and ``Decider.decide_batch`` uses it: a batch by customer id asks the
store once, and answers exactly what deciding each item alone answers.
Time is a FakeClock; nothing sleeps.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.profiles import CachedStore, open_store
from engine.profiles.store import decode
from engine.ruleset import load
from engine.service.decide import Decider
from engine.service.model import DecideQuery, ItemError, ProfileStatus, RequestContext
from engine.service.rules import RulesetHolder
from engine.service.stored import StoredProfiles
from profiles_support import DAY, NOW, T0, FakeClock, Switchable, as_cached, ev, item

ROOT = Path(__file__).resolve().parents[2]


def _history(store) -> None:
    """C1..C5 with their own profiles; then C7 merged into the customer
    first seen by device d1 (C7 has no profile of its own, its id points at
    the survivor), and K1 into K0 (the same, K0 named by id)."""
    store.apply([ev("purchase", T0 + n, cid=f"C{n}", channel="pos", store_id="mall",
                    items=[item(f"S{n}", price=10.0 * n, size="42")]) for n in range(1, 6)])
    store.apply([ev("add_to_cart", T0 + 6, channel="app", cid=None, device_id="d1", items=[item("B1", "coffee-beans")]),
                 ev("page_view", T0 + 7, cid="K0", device_id="k0"), ev("page_view", T0 + 8, cid="K1", device_id="k1")])
    store.apply([ev("page_view", T0 + 9, cid="C7", device_id="d1"),
                 ev("page_view", T0 + 10, cid="K0", device_id="k1")])


@pytest.fixture
def store(store_url):
    with open_store(store_url, clock=lambda: NOW) as s:
        _history(s)
        yield s


IDS = ["C1", "C2", "C3", "C4", "C5", "C7", "K0", "K1", "nobody", "d1", "", "C1"]


def test_get_many_is_get_for_each_id(store):
    assert store.get("C7") is not None and store.get("K1")["customer_id"] == "K0"      # the merges happened
    many = store.get_many(IDS)
    assert list(many) == list(dict.fromkeys(IDS))
    assert many == {cid: store.get(cid) for cid in IDS}
    assert many["C7"] is not store.get_many(["C7"])["C7"]
    assert many["K0"] is not many["K1"]                       # each profile its own object, as get's
    # the same reads, as stored: the bytes decode to what get says
    encoded = store.get_many_encoded(IDS)
    assert {cid: None if raw is None else decode(raw) for cid, raw in encoded.items()} == many
    assert encoded == {cid: store.get_encoded(cid) for cid in IDS}
    assert store.get_by_encoded("device_id", "d1") == store.get_encoded("C7") is not None
    assert store.get_by_encoded("customer_id", "K1") == store.get_encoded("K0")
    assert store.get_by_encoded("loyalty_card", "nobody") is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(IDS + ["C6", "K2", "x" * 40]), max_size=30))
def test_get_many_over_any_ids(store, ids):
    assert store.get_many(ids) == {cid: store.get(cid) for cid in ids}


def test_get_many_chunks_a_long_list(sqlite_url):
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        store.apply([ev("page_view", T0 + n, cid=f"N{n}") for n in range(1200)])
        ids = [f"N{n}" for n in range(0, 1200, 2)] + [f"M{n}" for n in range(700)]
        many = store.get_many(ids)
        assert sum(p is not None for p in many.values()) == 600 and len(many) == 1300


# ---------------------------------------------------------------- the cache
@pytest.fixture
def counted(sqlite_url):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        _history(s)
        yield Switchable(s)


def test_prefetch_reads_what_is_not_fresh_once_and_then_reads_are_hits(counted):
    clock = FakeClock()
    cache = CachedStore(counted, ttl=1.0, clock=clock)
    cache.read("C1")
    assert cache.prefetch(["C1", "C2", "C7", "nobody", "C2"]) == 3        # C1 is fresh already
    assert counted.many == [["C2", "C7", "nobody"]]
    before = counted.gets
    for cid in ("C1", "C2", "C7", "nobody"):
        read = cache.read(cid)
        assert read.profile == as_cached(counted.store.get(cid)) and not read.degraded
    assert counted.gets == before                                        # all hits, known miss included
    assert cache.prefetch(["C2", "nobody"]) == 0 and len(counted.many) == 1
    clock.advance(1.0)                                                   # past ttl: asked again
    assert cache.prefetch(["C2", "C3"]) == 2


def test_a_write_racing_the_prefetch_is_not_hidden_by_it(counted):
    cache = CachedStore(counted, ttl=60.0, clock=FakeClock())
    counted.during = lambda: cache.invalidate(["C3"])      # this process wrote C3 while the read ran
    cache.prefetch(["C3", "C4"])
    counted.during = None
    before = counted.gets
    cache.read("C3")
    assert counted.gets == before + 1                      # not cached from the racing read: asked again


def test_prefetch_with_the_store_down_raises_nothing_and_marks_it_down_once(counted, caplog):
    clock = FakeClock()
    cache = CachedStore(counted, ttl=60.0, retry_after=5.0, clock=clock)
    cache.read("C1")
    counted.down = True
    assert cache.prefetch(["C1", "C2"]) == 0                              # C2 not fresh: asked, failed
    assert cache.prefetch(["C2", "C3"]) == 0 and len(counted.many) == 1  # marked down: not asked again
    assert cache.read("C1").degraded                                     # the fresh C1, flagged
    assert [r.levelname for r in caplog.records if "unavailable" in r.getMessage()] == ["WARNING"]
    counted.down = False
    clock.advance(5.0)
    assert cache.prefetch(["C2"]) == 1 and not cache.read("C2").degraded
    assert cache.prefetch([]) == 0


def test_no_prefetch_without_a_ttl(counted):
    cache = CachedStore(counted, ttl=0.0, clock=FakeClock())
    assert cache.prefetch(["C1", "C2"]) == 0 and counted.many == []


# ---------------------------------------------------------------- DecideBatch
@pytest.fixture(scope="module")
def reference_rules():
    return RulesetHolder(load(ROOT / "rules"))


def _queries(now):
    context = RequestContext(channel="web", page="product", category="t-shirts", sku="TEE-001", timestamp=now)
    return [DecideQuery(customer_id=cid, context=context) for cid in ("C1", "C2", "C7", "K1", "nobody", "C1")] + [
        DecideQuery(customer_id="C3", profile={"sizes": {"t-shirts": "XS"}}, context=context),
        DecideQuery(customer_id="C4", aliases=(("device_id", "d1"),), context=context),     # not prefetched
        DecideQuery(customer_id="x" * 300, context=context),                                # an item error
        DecideQuery(context=context)]                                                       # anonymous


@pytest.mark.parametrize("now", [NOW, NOW + 300 * DAY])
def test_decide_batch_asks_the_store_once_and_answers_as_each_item_alone(store_url, reference_rules, now):
    with open_store(store_url, clock=lambda: NOW) as plain:
        _history(plain)
        counted = Switchable(plain)
        batch_decider = Decider(reference_rules, StoredProfiles(counted, cache_ttl=60.0))
        version, answers = batch_decider.decide_batch(_queries(now))
        assert counted.many == [["C1", "C2", "C7", "K1", "nobody", "C3"]]
        assert counted.gets == 1                       # C4's Decide by device id reads its own way
        alone = []
        for q in _queries(now):                        # each item with a cache of its own
            try:
                alone.append(Decider(reference_rules, StoredProfiles(plain, cache_ttl=60.0)).decide(q))
            except Exception as err:                   # noqa: BLE001 - compared by message below
                alone.append(err)
    assert len(answers) == len(alone)
    for got, want in zip(answers, alone):
        if isinstance(got, ItemError):
            assert str(got.error) == f"requests[8].{want}" or str(want) in str(got.error)
        else:
            assert got == want
    assert answers[2].profile_status == ProfileStatus.STORED and answers[2].customer_id != "C7"   # a survivor's
    assert answers[4].profile_status == ProfileStatus.UNKNOWN_CUSTOMER


def test_a_failing_prefetch_leaves_each_item_to_read_its_own(sqlite_url, reference_rules, caplog):
    with open_store(sqlite_url, clock=lambda: NOW) as plain:
        _history(plain)
        counted = Switchable(plain)

        def broken(ids):
            raise RuntimeError("test: a bug in get_many")
        counted.get_many_encoded = broken      # the read the cache makes
        decider = Decider(reference_rules, StoredProfiles(counted, cache_ttl=60.0))
        with caplog.at_level(logging.ERROR):
            _version, answers = decider.decide_batch(_queries(NOW)[:4])
        assert [a.profile_status for a in answers] == [ProfileStatus.STORED] * 4
        assert counted.gets == 4
        assert "reading the items' profiles ahead failed" in caplog.text
