"""The cache in front of a store: freshness, invalidation, the staleness
bound between replicas, and degraded reads while Redis is down.  Time is a
FakeClock; nothing sleeps."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
from cachetools import Cache
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.profiles import CachedStore, StoreUnavailable, open_store
from engine.profiles.cache import DECODED_FACTOR, ENTRY_BYTES, held_size
from engine.profiles.fold import public
from engine.profiles.store import encode, public_bytes
from engine.ruleset import build
from engine.source import SourceFile
from profiles_support import NOW, T0, FakeClock, Switchable, ev, item

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_store(sqlite_url):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        yield Switchable(s)


def test_fresh_entries_come_from_the_cache(sqlite_store):
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, clock=clock)
    cache.apply([ev("page_view", T0)])
    first = cache.read("C1")
    assert (first.source, first.degraded) == ("store", False)
    clock.advance(0.5)
    second = cache.read("C1")
    assert (second.source, second.age, second.profile) == ("cache", 0.5, first.profile)
    assert sqlite_store.gets == 1
    clock.advance(0.5)                       # ttl reached: back to the store
    assert cache.read("C1").source == "store" and sqlite_store.gets == 2


def test_missing_customers_are_cached_too(sqlite_store):
    cache = CachedStore(sqlite_store, clock=FakeClock())
    assert cache.read("nobody").source == "none"
    assert cache.get("nobody") is None and sqlite_store.gets == 1


def test_own_writes_invalidate(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("purchase", T0, items=[item("S1")])])
    assert cache.get("C1")["orders_count"] == 1
    cache.apply([ev("purchase", T0 + 1, items=[item("S2")])])
    assert cache.get("C1")["orders_count"] == 2


def test_invalidation_reaches_aliases_and_merged_ids(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid="A"), ev("page_view", T0 + 1, cid="B")])
    cache.apply([ev("page_view", T0 + 2, cid="B", device_id="d1")])
    assert cache.get("A")["channels"] == ["web"] and cache.get("B")["last_seen_at"] == T0 + 2
    result = cache.apply([ev("push_open", T0 + 3, channel="app", cid="A", device_id="d1")])
    assert result.merged == (("B", "A"),)
    assert cache.get("B")["customer_id"] == "A" and cache.get("B")["channels"] == ["app", "web"]
    cache.apply([ev("email_open", T0 + 4, channel="email", cid="A")])
    assert cache.get("B")["channels"] == ["app", "email", "web"]     # cached under the alias, dropped


def test_a_cached_miss_is_dropped_when_the_id_starts_naming_someone(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid=None, device_id="d1")])
    assert cache.get("C7") is None                         # cached: nobody
    cache.apply([ev("page_view", T0 + 1, cid="C7", device_id="d1")])
    assert cache.get("C7")["last_seen_at"] == T0 + 1      # C7 is now an alias of the device's customer


def test_another_identifier_finds_its_customer_and_is_cached_under_the_pair(sqlite_store):
    """Decide by loyalty card (email hash, device id): the profile of the
    customer the card points at, cached under ("loyalty_card", value), and
    dropped like any entry of that customer when this process writes to it."""
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid="A", loyalty_card="L1")])
    assert cache.read(("loyalty_card", "L1")).profile["customer_id"] == "A"
    assert cache.read(("loyalty_card", "L1")).source == "cache"
    assert cache.get("loyalty_card:L1") is None            # a customer id of that text is someone else
    cache.apply([ev("purchase", T0 + 1, cid="A", items=[item("S1")])])
    assert cache.read(("loyalty_card", "L1")).profile["orders_count"] == 1


def test_a_cached_unknown_identifier_is_dropped_when_an_event_links_it(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid="A")])
    assert cache.read(("loyalty_card", "L2")).profile is None     # cached: nobody
    cache.apply([ev("store_visit", T0 + 1, channel="pos", cid="A", loyalty_card="L2", store_id="s1")])
    assert cache.read(("loyalty_card", "L2")).profile["customer_id"] == "A"


def test_an_identifier_cached_for_a_merged_away_customer_finds_the_survivor(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid="A"), ev("page_view", T0 + 1, cid="B", email_hash="h1")])
    assert cache.read(("email_hash", "h1")).profile["customer_id"] == "B"
    result = cache.apply([ev("email_open", T0 + 2, channel="email", cid="A", email_hash="h1")])
    assert result.merged == (("B", "A"),)
    assert cache.read(("email_hash", "h1")).profile["customer_id"] == "A"


def test_a_fetch_racing_a_local_write_is_not_cached(sqlite_store):
    cache = CachedStore(sqlite_store, ttl=60, clock=FakeClock())
    cache.apply([ev("purchase", T0, items=[item("S1")])])
    real_get = sqlite_store.get_encoded      # what the cache reads: the profile as stored

    def get_then_write(cid):
        profile = real_get(cid)               # the old profile ...
        cache.apply([ev("purchase", T0 + 1, items=[item("S2")])])  # ... and a write lands meanwhile
        return profile

    sqlite_store.get_encoded = get_then_write
    assert cache.get("C1")["orders_count"] == 1
    sqlite_store.get_encoded = real_get
    assert cache.get("C1")["orders_count"] == 2


def test_lru_bound(sqlite_store):
    cache = CachedStore(sqlite_store, maxsize=2, clock=FakeClock())
    for cid in ("a", "b", "c"):
        cache.get(cid)
    assert len(cache) == 2


def test_the_least_recently_fetched_entry_goes_first(sqlite_store):
    """A customer still being read is fetched again every ttl, which puts
    the entry last: it outlives one fetched once, earlier."""
    clock = FakeClock()
    cache = CachedStore(sqlite_store, maxsize=2, ttl=1.0, clock=clock)
    cache.apply([ev("page_view", T0, cid=c) for c in ("a", "b", "c")])
    cache.get("a")
    cache.get("b")
    clock.advance(1.5)
    cache.get("a")                        # past the ttl: fetched again, now the newest
    cache.get("c")                        # full: b goes, not a
    held = [c for c in ("a", "b", "c") if Cache.__contains__(cache._entries, c)]
    assert held == ["a", "c"]
    fetches = sqlite_store.gets
    cache.get("a")
    assert sqlite_store.gets == fetches   # a is still served from the cache


def test_the_index_of_ids_holds_strings_until_a_customer_has_aliases(sqlite_store):
    """One key per customer is a str, which the collector does not track."""
    cache = CachedStore(sqlite_store, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid=c) for c in ("C1", "C2")])
    cache.get("C1")
    cache.get("C2")
    assert cache._entries.keys_of == {"C1": "C1", "C2": "C2"}
    assert not any(gc.is_tracked(v) for v in cache._entries.keys_of.values())


def _held(cache, cid):
    """How the cache holds a customer's profile (no LRU update)."""
    return Cache.__getitem__(cache._entries, cid)[0]


def test_entries_past_the_ttl_are_held_encoded_and_still_serve_an_outage(sqlite_store):
    """Decoded profiles are what Python's garbage collector visits on every
    full pass (a cache of 20k made one take ~0.4 s); an entry past its ttl
    only serves the store-down fallback, so a later fetch re-holds it as
    bytes, which the collector does not track."""
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, clock=clock)
    cache.apply([ev("purchase", T0, items=[item("S1", size="42")]), ev("page_view", T0, cid="C2")])
    original = cache.get("C1")
    assert type(_held(cache, "C1")) is dict
    clock.advance(1.5)
    assert type(_held(cache, "C1")) is dict                  # nothing fetched since: unchanged
    cache.get("C2")                                          # a fetch settles what passed the ttl
    assert type(_held(cache, "C1")) is bytes and not gc.is_tracked(_held(cache, "C1"))
    assert type(_held(cache, "C2")) is dict and cache.fresh("C2") == public(cache.store.get("C2"))
    sqlite_store.down = True
    down = cache.read("C1")
    assert (down.source, down.degraded, down.profile) == ("cache", True, original)
    assert down.profile["sizes"] == {"shoes": "42"}


def test_an_entry_past_the_ttl_is_held_as_the_bytes_the_store_gave_not_encoded_again(sqlite_store, monkeypatch):
    """A fetch reads the profile as stored (get_encoded), cuts the fold's
    bookkeeping out of the bytes (public_bytes) and decodes them; the entry
    keeps those bytes, so settling it encodes nothing (a second msgpack
    pass per cache miss, before)."""
    import engine.profiles.cache as cache_module
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, clock=clock)
    cache.apply([ev("purchase", T0, items=[item("S1", size="42")]), ev("page_view", T0, cid="C2")])
    cache.prefetch(["C1", "C2"])
    cache.get(("customer_id", "C1"))                          # an identifier's key too

    def no_encoding(profile):
        raise AssertionError("settling an entry encoded its profile again")
    monkeypatch.setattr(cache_module, "encode", no_encoding)
    clock.advance(1.5)
    cache.get("C3")                                          # a fetch settles what passed the ttl
    for key, cid in (("C1", "C1"), ("C2", "C2"), (("customer_id", "C1"), "C1")):
        assert type(_held(cache, key)) is bytes and _held(cache, key) == public_bytes(sqlite_store.store.get_encoded(cid))
    sqlite_store.down = True
    assert cache.read("C1").profile == public(sqlite_store.store.get("C1"))


def test_a_stand_in_store_with_get_alone_is_read_with_get(sqlite_store):
    """Anything with get() (and get_by, get_many) still works as the
    cache's store; its profiles are held without the fold's bookkeeping,
    as a ProfileStore's bytes are cut, and encoded when settled."""

    class GetOnly:
        def __init__(self, store):
            self.store = store

        def get(self, cid):
            return self.store.get(cid)

    clock = FakeClock()
    cache = CachedStore(GetOnly(sqlite_store.store), ttl=1.0, clock=clock)
    sqlite_store.store.apply([ev("page_view", T0, cid="C2")])
    assert cache.get("C2")["customer_id"] == "C2" and cache.get("nobody") is None
    assert "_fold" in sqlite_store.store.get("C2") and "_fold" not in cache.get("C2")
    clock.advance(1.5)
    cache.get("C3")
    assert _held(cache, "C2") == encode(public(sqlite_store.store.get("C2")))


def test_the_young_list_stays_bounded_and_every_entry_answers_right(sqlite_store):
    """Fetches, invalidations and re-fetches within one ttl: the list of
    decoded entries to settle never outgrows the cache; an entry encoded
    early (to keep that bound) still answers fresh reads, decoded."""
    clock = FakeClock()
    cache = CachedStore(sqlite_store, maxsize=3, ttl=60, clock=clock)
    ids = ["a", "b", "c", "d"]
    cache.apply([ev("page_view", T0, cid=c) for c in ids])
    encoded_early = 0
    # re-fetches after invalidations leave two young items for one entry, so
    # the list outgrows the cache while its oldest entry is still held
    steps = [("a", False), ("a", True), ("b", False), ("c", False), ("d", False), ("b", True), ("b", True),
             ("c", False), ("a", False), ("d", True)] * 4
    for cid, invalidate in steps:
        if invalidate:
            cache.invalidate([cid])
        cache.get(cid)
        assert len(cache._entries.young) <= 3 and len(cache) <= 3
        for live in [c for c in ids if Cache.__contains__(cache._entries, c)]:
            encoded_early += type(_held(cache, live)) is bytes
            assert cache.fresh(live) == public(sqlite_store.store.get(live))
    assert encoded_early        # the sequence does reach the early case


def test_replicas_see_each_other_within_the_ttl(redis_url):
    """The documented staleness bound: another replica's write is visible
    once the entry is ttl seconds old, never later."""
    clock = FakeClock()
    a = CachedStore(open_store(redis_url, clock=lambda: NOW), ttl=1.0, clock=clock)
    b = CachedStore(open_store(redis_url, clock=lambda: NOW), ttl=1.0, clock=clock)
    a.apply([ev("purchase", T0, items=[item("S1")])])
    assert a.get("C1")["orders_count"] == 1
    b.apply([ev("purchase", T0 + 1, items=[item("S2")])])
    assert b.get("C1")["orders_count"] == 2                # the writer reads its own write
    clock.advance(0.999)
    stale = a.read("C1")
    assert stale.profile["orders_count"] == 1 and stale.age < a.ttl   # stale, within the bound
    clock.advance(0.001)
    assert a.get("C1")["orders_count"] == 2                # bound reached: fresh
    a.close()
    b.close()


# ---------------------------------------------------------------- Redis down
PACK = build([SourceFile("rules/schema.rules", (ROOT / "rules/schema.rules").read_text()),
              SourceFile("pack.rules", (ROOT / "tests/profiles/data/pack.rules").read_text())])


def test_redis_down_reads_degrade_writes_fail_and_recovery_is_automatic(own_redis):
    clock = FakeClock()
    cache = CachedStore(open_store(own_redis.url, clock=lambda: NOW), ttl=1.0, retry_after=5.0, clock=clock)
    cache.apply([ev("purchase", T0, channel="pos", store_id="mall", items=[item("S1", size="42")])])
    assert cache.read("C1").source == "store"

    own_redis.stop()                                         # Redis goes away mid-run
    clock.advance(2)                                         # the entry is past its ttl
    down = cache.read("C1")
    assert (down.source, down.degraded, down.profile["sizes"]) == ("cache", True, {"shoes": "42"})
    assert "ConnectionError" in down.reason and own_redis.url.split("//")[1].split("/")[0] in down.reason
    assert PACK.values(down.profile, {"category": "shoes"}, NOW)["prefilled_size"] == "42"
    unknown = cache.read("C2")                               # never cached: missing, decisions use defaults
    assert (unknown.profile, unknown.degraded) == (None, True)
    assert PACK.values(unknown.profile or {}, {}, NOW)["homepage_category"] == "new-arrivals"
    with pytest.raises(StoreUnavailable, match="not acknowledged"):
        cache.apply([ev("page_view", T0 + 1)])
    assert not cache.health().ok and cache.degraded

    own_redis.start()                                        # back, from its append-only file
    clock.advance(1)
    assert cache.read("C1").degraded                         # within retry_after: not asked yet
    clock.advance(5)
    back = cache.read("C1")
    assert (back.source, back.degraded, back.reason) == ("store", False, None)
    assert cache.degraded is None and cache.health().ok
    result = cache.apply([ev("page_view", T0 + 1)])          # the same connection pool, no restart
    assert result.accepted and cache.get("C1")["channels"] == ["pos", "web"]
    cache.close()


def test_a_write_notices_the_outage_and_a_write_notices_the_recovery(own_redis):
    clock = FakeClock()
    cache = CachedStore(open_store(own_redis.url, clock=lambda: NOW), ttl=10, retry_after=60, clock=clock)
    cache.apply([ev("page_view", T0)])
    assert cache.read("C1").degraded is False
    own_redis.kill()
    with pytest.raises(StoreUnavailable):
        cache.apply([ev("page_view", T0 + 1)])
    assert cache.read("C1").degraded                         # fresh entry, but the store is known down
    own_redis.start()
    assert cache.apply([ev("page_view", T0 + 2)]).accepted
    assert cache.read("C1").degraded is False
    cache.close()


# ---------------------------------------------------------------- what an outage logs
def outage_lines(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "engine.profiles.cache"]


def test_an_outage_logs_one_warning_and_its_recovery_one_line_with_its_length(sqlite_store, caplog):
    caplog.set_level("INFO", logger="engine.profiles.cache")
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, retry_after=1.0, clock=clock)
    cache.apply([ev("page_view", T0)])
    assert cache.read("C1").source == "store" and outage_lines(caplog) == []
    sqlite_store.down = True
    for _ in range(5):                                    # many requests, several retries: one line
        clock.advance(2)
        assert cache.read("C1").degraded and cache.read("C2").degraded
    assert outage_lines(caplog) == [("WARNING", f"profile store {sqlite_store.url} is unavailable: test: the "
                                                "store is down; reads are served from the cache (degraded) and "
                                                "writes are refused until it answers")]
    sqlite_store.down = False
    clock.advance(2)
    assert not cache.read("C1").degraded
    assert cache.read("C2").degraded is False
    assert outage_lines(caplog)[1:] == [("INFO", f"profile store {sqlite_store.url} answers again after "
                                                 "10.0 s unavailable")]   # first failure to answer
    sqlite_store.down = True                              # a second outage is logged again
    clock.advance(2)
    cache.read("C1")
    assert [level for level, _ in outage_lines(caplog)] == ["WARNING", "INFO", "WARNING"]


def test_a_store_down_at_start_is_logged_once_and_its_recovery_once(sqlite_store, caplog):
    """`maple serve --store redis://127.0.0.1:1/0` logged the outage twice:
    at open (maple.service) and again at the first request (the cache)."""
    from engine.service.sources import SourceUnavailable
    from engine.service.stored import StoredProfiles
    caplog.set_level("INFO")
    sqlite_store.down = True
    profiles = StoredProfiles(sqlite_store, retry_after=0.0)
    profiles.check_at_start()
    for _ in range(3):                                    # requests while it is down: no more lines
        with pytest.raises(SourceUnavailable):
            profiles.lookup("C1", None, None)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [("WARNING", f"profile store {sqlite_store.url} is not reachable yet (test: no answer): until it "
                                 "answers, decisions are degraded (no stored profiles) and RecordEvents is refused "
                                 "(UNAVAILABLE)")], lines
    sqlite_store.down = False
    assert profiles.lookup("C1", None, None).degraded is None
    assert [(r.levelname, r.getMessage().split(" after ")[0]) for r in caplog.records][1:] == [
        ("INFO", f"profile store {sqlite_store.url} answers again")]
    sqlite_store.down = True                              # a later outage: its own WARNING, as before
    with pytest.raises(SourceUnavailable):
        profiles.lookup("C2", None, None)                 # C1 is fresh in the cache: not asked
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]
    assert "is unavailable: test: the store is down" in caplog.records[-1].getMessage()


def test_a_redis_nobody_listens_for_is_one_line_at_start(caplog):
    import socket
    from engine.service.sources import SourceUnavailable
    from engine.service.stored import StoredProfiles
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"       # closed again: connection refused
    caplog.set_level("INFO")
    profiles = StoredProfiles.open(url)
    for cid in ("C1", "C2", "C1"):
        with pytest.raises(SourceUnavailable):
            profiles.lookup(cid, None, None)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 1 and lines[0][0] == "WARNING", lines
    assert lines[0][1].startswith(f"profile store {url} is not reachable yet (ConnectionError: ")
    profiles.close()


def test_a_refused_write_starts_an_outage_and_an_acknowledged_one_ends_it(own_redis, caplog):
    caplog.set_level("INFO", logger="engine.profiles.cache")
    clock = FakeClock()
    cache = CachedStore(open_store(own_redis.url, clock=lambda: NOW), ttl=10, retry_after=60, clock=clock)
    cache.apply([ev("page_view", T0)])
    own_redis.kill()
    for i in range(3):
        with pytest.raises(StoreUnavailable):
            cache.apply([ev("page_view", T0 + 1 + i)])
    lines = outage_lines(caplog)
    assert len(lines) == 1 and lines[0][0] == "WARNING" and "ConnectionError" in lines[0][1]
    own_redis.start()
    clock.advance(3.5)
    assert cache.apply([ev("page_view", T0 + 5)]).accepted
    assert outage_lines(caplog)[1:] == [("INFO", f"profile store {own_redis.url} answers again after "
                                                 "3.5 s unavailable")]
    cache.close()


def test_lock_free_fresh_reads_race_writes_and_still_read_own_writes(sqlite_store):
    """fresh() takes no lock: readers racing applies, invalidations and
    evictions get a profile, None or STALE, never an error, and a read
    after a write has returned sees that write."""
    import threading
    from engine.profiles.cache import STALE
    cache = CachedStore(sqlite_store, ttl=60, maxsize=8, clock=FakeClock())
    cids = [f"R{i}" for i in range(12)]                      # more than maxsize: evictions too
    cache.apply([ev("page_view", T0, cid=c) for c in cids])
    done, errors = threading.Event(), []

    def reader():
        try:
            while not done.is_set():
                for c in cids:
                    got = cache.fresh(c)
                    if got is STALE:
                        got = cache.get(c)
                    assert got is None or got["customer_id"] == c
        except Exception as err:                              # pragma: no cover - the failure
            errors.append(err)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 31):
            c = cids[n % len(cids)]
            cache.apply([ev("purchase", T0 + n, cid=c, items=[item(f"S{n}")])])
            assert cache.get(c)["last_purchase_at"] == T0 + n    # its own write, at once
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []


def test_each_read_is_counted_once_by_where_its_answer_came_from(sqlite_store):
    """CachedStore.reads (maple_profile_cache_reads_total): hit, miss, stale,
    prefetched, in the order the module docstring defines them."""
    from engine.profiles.cache import HIT, MISS, PREFETCHED, READ_RESULTS, STALE, STALE_READ
    assert READ_RESULTS[HIT] == "hit" and READ_RESULTS[MISS] == "miss"
    assert READ_RESULTS[STALE_READ] == "stale" and READ_RESULTS[PREFETCHED] == "prefetched"
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, retry_after=5.0, clock=clock)
    cache.apply([ev("page_view", T0, cid="A"), ev("page_view", T0, cid="B"), ev("page_view", T0, cid="C")])
    counted = cache.reads

    def reads():
        assert cache.reads is counted          # held by reference (the metrics and stored_hit read it)
        return dict(zip(READ_RESULTS, counted))

    cache.read("A")
    assert reads() == {"hit": 0, "miss": 1, "stale": 0, "prefetched": 0}
    cache.read("A")
    assert cache.fresh("A")["customer_id"] == "A"
    cache.read("nobody"), cache.read("nobody")          # a known miss is a hit the second time
    assert cache.fresh("nobody") is None
    assert cache.fresh("B") is STALE                    # not held: fresh counts nothing, read will
    assert reads() == {"hit": 4, "miss": 2, "stale": 0, "prefetched": 0}
    assert sqlite_store.gets == 2
    clock.advance(1.0)
    assert cache.fresh("A") is STALE
    sqlite_store.down = True
    assert cache.read("A").degraded                     # the store failed this read: an expired entry
    assert cache.read("B").profile is None              # marked down: nothing held, nothing asked
    assert reads() == {"hit": 4, "miss": 2, "stale": 2, "prefetched": 0}
    clock.advance(5.0)
    sqlite_store.down = False
    assert cache.prefetch(["A", "B", "C", "A"]) == 3     # ids fetched ahead, each once
    for cid in "ABC":
        assert cache.read(cid).source == "cache"
    assert reads() == {"hit": 7, "miss": 2, "stale": 2, "prefetched": 3}
    cache.apply([ev("page_view", T0 + 1, cid="A")])       # a write drops the entry: the next read asks
    cache.read("A")
    assert reads() == {"hit": 7, "miss": 3, "stale": 2, "prefetched": 3}


def test_a_read_that_fails_past_the_store_is_a_miss_and_a_raced_prefetch_counts_nothing(sqlite_store):
    """A stored profile that does not decode: the store was asked, so the
    read counts as a miss though it raises.  A prefetch that a write of
    this process raced caches nothing, so it counts nothing: its items
    then read the store themselves (misses)."""
    from engine.profiles.cache import MISS, PREFETCHED, STALE
    cache = CachedStore(sqlite_store, clock=FakeClock())
    cache.apply([ev("page_view", T0, cid="A"), ev("page_view", T0, cid="B")])
    real = sqlite_store.get_encoded
    sqlite_store.get_encoded = lambda cid: b"\xc1" if cid == "A" else real(cid)     # 0xc1: never valid msgpack
    with pytest.raises(Exception):
        cache.read("A")
    assert cache.reads[MISS] == 1
    sqlite_store.during = lambda: cache.apply([ev("page_view", T0 + 1, cid="B")])
    assert cache.prefetch(["B", "C"]) == 2
    assert cache.reads[PREFETCHED] == 0 and cache.fresh("B") is STALE
    sqlite_store.during = None
    assert cache.prefetch(["B", "C"]) == 2 and cache.reads[PREFETCHED] == 2


# ---------------------------------------------------------------- the memory bound
def _counted(cache) -> int:
    return sum(held_size(v) for v in Cache.values(cache._entries))


def test_entries_are_counted_by_their_bytes_and_the_memory_bound_evicts_the_oldest(sqlite_store):
    """--profile-cache-mib: an entry counts its bytes (4x while decoded)
    and ~300 of bookkeeping; past the bound the least recently fetched go,
    never the entry just fetched."""
    clock = FakeClock()
    big = [ev("purchase", T0 + i, items=[item(f"S{i}-{j}", size="42") for j in range(5)]) for i in range(40)]
    cache = CachedStore(sqlite_store, ttl=1.0, clock=clock, max_bytes=10**9)
    cache.apply(big + [ev("page_view", T0, cid=c) for c in ("a", "b", "c")])
    cache.get("C1")
    stored = public_bytes(sqlite_store.store.get_encoded("C1"))
    assert cache.held_bytes == ENTRY_BYTES + DECODED_FACTOR * len(stored)          # decoded: 4x
    clock.advance(1.5)
    cache.get("a")                                                              # settles C1 as bytes
    assert _held(cache, "C1") == stored
    assert cache.held_bytes == _counted(cache) == 2 * ENTRY_BYTES + len(stored) + DECODED_FACTOR * len(
        public_bytes(sqlite_store.store.get_encoded("a")))
    cache.get("nobody")                                                         # a known miss: bookkeeping
    assert cache.held_bytes == _counted(cache)

    small = len(public_bytes(sqlite_store.store.get_encoded("a")))
    bound = CachedStore(sqlite_store, ttl=1.0, clock=clock, max_bytes=2 * (ENTRY_BYTES + DECODED_FACTOR * small))
    for cid in ("a", "b", "c"):
        bound.get(cid)                  # decoded, 4x each: two fit, a third pushes out the first
    assert [c for c in ("a", "b", "c") if Cache.__contains__(bound._entries, c)] == ["b", "c"]
    assert bound.held_bytes == _counted(bound) <= bound._entries.max_bytes
    bound.get("C1")                     # larger than the bound alone: kept, everything else goes
    assert list(bound._entries) == ["C1"] and bound.get("C1") == public(sqlite_store.store.get("C1"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["get", "get", "prefetch", "invalidate", "advance", "write", "clear"]),
                          st.sampled_from(["a", "b", "c", "d", "C1", "nobody"])), max_size=40),
       st.integers(min_value=1, max_value=5), st.integers(min_value=1_000, max_value=20_000))
def test_the_counted_memory_is_always_the_entries_and_within_both_bounds(sqlite_store, steps, maxsize, max_bytes):
    """Whatever reads, prefetches, invalidations, writes and settling do,
    ``held_bytes`` is the sum of the entries' sizes, the entries stay within
    ``maxsize`` and (but for one larger than the bound alone) within
    ``max_bytes``, and every entry still answers as the store would."""
    clock = FakeClock()
    cache = CachedStore(sqlite_store, ttl=1.0, clock=clock, maxsize=maxsize, max_bytes=max_bytes)
    n = 0
    for op, cid in steps:
        if op == "get":
            cache.get(cid)
        elif op == "prefetch":
            cache.prefetch([cid, "a", "b"])
        elif op == "invalidate":
            cache.invalidate([cid])
        elif op == "advance":
            clock.advance(0.7)
        elif op == "write":
            n += 1
            cache.apply([ev("purchase", T0 + n, cid=cid, items=[item(f"P{n}", size="40")])])
        else:
            cache.clear()
        assert cache.held_bytes == _counted(cache)
        assert len(cache) <= maxsize
        assert cache.held_bytes <= max_bytes or len(cache) == 1
    for key in list(cache._entries):
        assert cache.read(key).profile == public(sqlite_store.store.get(key)) if sqlite_store.store.get(key) \
            else cache.read(key).profile is None
