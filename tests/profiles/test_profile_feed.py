"""The stores' change feeds and the caches that follow them.

Every process writing a SQLite file feeds it (triggers), every Maple
writing Redis appends to its stream; each process's cache
reads it (``CachedStore.sync``) and drops what the others changed, so an
entry stays valid until changed, for as long as the last sync is younger
than the ttl: the staleness bound of a cache without a feed, with entries
that outlive one ttl.  Two stores on one file stand for two processes (each
has its own connections, as a worker does).  Time is a FakeClock; nothing
sleeps.  Redis stores get a fresh key prefix each, so one redis-server
serves them all.
"""
from __future__ import annotations

import itertools
import logging
import sqlite3
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.profiles import CachedStore, StoreUnavailable, open_store
from engine.profiles.sqlite_writer import FeedPruner
from profiles_support import NOW, T0, FakeClock, as_cached, ev, item


_prefixes = itertools.count()


def _pair(url: str):
    """Two processes' stores on one store: a SQLite file, or Redis (a fresh
    key prefix each time: a hash tag in a cluster)."""
    options = {}
    if not url.startswith("sqlite"):
        n = next(_prefixes)
        options["prefix"] = f"{{t{n}}}:" if "cluster" in url else f"t{n}:"
    return (open_store(url, clock=lambda: NOW, **options), open_store(url, clock=lambda: NOW, **options))


@pytest.fixture
def two(store_url):
    """Two processes' stores, over each kind of store that has a feed."""
    a, b = _pair(store_url)
    with a, b:
        yield a, b


@pytest.fixture
def two_sqlite(sqlite_url):
    a, b = _pair(sqlite_url)
    with a, b:
        yield a, b


def _keys_after(store, position):
    feed = store.changes_since(position)
    assert feed.complete
    return feed.keys, feed.head


# ---------------------------------------------------------------- the feed
def test_every_write_of_every_process_is_in_the_feed_in_commit_order(two_sqlite):
    a, b = two_sqlite
    start = a.changes_since(None)
    assert not start.complete and start.keys == []
    a.apply([ev("page_view", T0, cid="A")])
    b.apply([ev("page_view", T0 + 1, cid="B", device_id="d1")])
    keys, head = _keys_after(b, start.head)
    assert keys == ["customer_id:A", "customer_id:A",           # the profile, and its own alias
                    "customer_id:B", "customer_id:B", "device_id:d1"]
    result = a.apply([ev("push_open", T0 + 2, channel="app", cid="A", device_id="d1")])
    assert result.merged == (("B", "A"),)
    keys, head2 = _keys_after(b, head)
    assert {"customer_id:A", "customer_id:B", "device_id:d1"} <= set(keys)   # survivor, merged away, repointed
    assert head2 > head
    a.apply([ev("page_view", T0 + 3, cid="A")])                 # an update in place: one row
    assert _keys_after(a, head2)[0] == ["customer_id:A"]
    assert _keys_after(a, a.changes_since(None).head) == ([], a.changes_since(None).head)


def test_a_position_past_the_head_is_another_file_and_reads_as_incomplete(two_sqlite):
    a, _ = two_sqlite
    a.apply([ev("page_view", T0, cid="A")])
    head = a.changes_since(None).head
    assert a.changes_since(head + 100).complete is False


def test_each_redis_batch_is_one_entry_of_the_keys_it_changed(redis_url):
    a, b = _pair(redis_url)
    with a, b:
        start = b.changes_since(None)
        assert not start.complete and start.head == "0-0/0"
        a.apply([ev("page_view", T0, cid="A")])
        b.apply([ev("page_view", T0 + 1, cid="B", device_id="d1")])
        keys, head = _keys_after(a, start.head)
        assert keys == ["customer_id:A", "customer_id:B", "device_id:d1"]
        a.apply([ev("push_open", T0 + 2, channel="app", cid="A", device_id="d1")])      # B merged into A
        keys, head = _keys_after(b, head)
        assert set(keys) == {"customer_id:A", "customer_id:B", "device_id:d1"}
        a.apply([ev("page_view", T0 + 2, cid="A")], NOW)                                # a duplicate? no: new id
        assert _keys_after(b, head)[0] == ["customer_id:A"]
        assert a.client.xlen(a.key("changes")) == 4


def test_a_redis_reader_whose_entry_was_trimmed_away_is_told_it_missed_some(redis_url):
    a, b = _pair(redis_url)
    a.feed_length = 1                               # MAXLEN ~ 1: trimmed by whole nodes (~100 entries)
    with a, b:
        a.apply([ev("page_view", T0, cid="A")])
        position = b.changes_since(None).head
        assert b.changes_since(position).complete
        for i in range(300):
            a.apply([ev("page_view", T0 + 1 + i, cid=f"C{i}")])
        assert a.client.xlen(a.key("changes")) < 300
        feed = b.changes_since(position)
        last = a.client.xrevrange(a.key("changes"), "+", "-", count=1)[0][0].decode()
        assert not feed.complete and feed.head == f"{last}/301"     # the last id, and 301 entries ever added
        assert b.changes_since(feed.head) == (feed.head, [], True)
        a.client.delete(a.key("changes"))           # the stream gone (flushed): nothing to trust
        assert b.changes_since(feed.head) == ("0-0/0", [], False)
        a.apply([ev("page_view", T0 + 400, cid="A")])              # ... nor in a stream made afresh
        assert not b.changes_since(feed.head).complete


def test_a_redis_reader_on_an_empty_stream_still_notices_a_trim(redis_url):
    a, b = _pair(redis_url)
    a.feed_length = 1
    with a, b:
        position = b.changes_since(None).head
        assert position == "0-0/0"
        a.apply([ev("page_view", T0, cid="A")])
        assert b.changes_since(position) == (b.changes_since(None).head, ["customer_id:A"], True)
        for i in range(300):
            a.apply([ev("page_view", T0 + 1 + i, cid=f"C{i}")])
        assert not b.changes_since(position).complete               # 301 added, ~100 left


def test_a_redis_stream_whose_ids_went_back_reads_as_incomplete(redis_url):
    """A restore, or a failover to a replica that lagged behind with its
    clock behind: new entries get ids below the position a cache holds."""
    a, b = _pair(redis_url)
    with a, b:
        a.apply([ev("page_view", T0, cid="A")])
        position = b.changes_since(None).head
        ms = int(position.split("-")[0])
        key = a.key("changes")
        a.client.delete(key)
        a.client.xadd(key, {"k": b'["customer_id:A"]'}, id=f"{ms - 50}-0")
        a.client.xadd(key, {"k": b'["customer_id:A"]'}, id=f"{ms - 10}-0")
        assert not b.changes_since(position).complete


def test_a_file_made_before_the_feed_gets_it_when_opened(sqlite_url):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        s.apply([ev("page_view", T0, cid="A")])
        path = s.path
    db = sqlite3.connect(path)
    for trigger in ("changes_customer_inserted", "changes_customer_updated", "changes_customer_deleted",
                    "changes_alias_written"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE changes")
    db.commit()
    db.close()
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        head = s.changes_since(None).head
        s.apply([ev("page_view", T0 + 1, cid="A")])
        assert _keys_after(s, head)[0] == ["customer_id:A"]
        assert s.get("A")["last_seen_at"] == T0 + 1


def test_the_pruner_keeps_a_minute_of_changes_and_never_the_last_row(two_sqlite, caplog):
    a, b = two_sqlite
    clock = FakeClock()
    a._feed_pruner = FeedPruner(keep=60.0, every=1.0, clock=clock)
    cache = CachedStore(b, ttl=1.0, clock=FakeClock())
    assert cache.sync()
    a.apply([ev("page_view", T0, cid="A")])                     # marks the feed as it stood: empty
    clock.advance(1.0)
    a.apply([ev("page_view", T0 + 1, cid="B")])                 # marks rows 1-2 (A's)
    first = a.changes_since(None).head
    clock.advance(30.0)
    a.apply([ev("page_view", T0 + 2, cid="C")])
    rows = lambda: [r[0] for r in a._db.execute("SELECT seq FROM changes ORDER BY seq")]   # noqa: E731
    assert len(rows()) == 6                                     # three customers, two rows each
    clock.advance(30.5)                                         # the mark of rows 1-2 is a minute old
    a.apply([ev("page_view", T0 + 3, cid="C")])
    assert rows()[0] == 3 and a._one("SELECT value FROM meta WHERE key = 'changes_pruned'", ())[0] == 2
    assert b.changes_since(2).complete and not b.changes_since(1).complete
    with caplog.at_level(logging.WARNING, logger="engine.profiles.cache"):
        assert cache.sync()                                     # it last read before row 1: it missed rows
    assert cache.feed[2] == 1 and cache._feed_position == a.changes_since(None).head
    assert "pruned past this cache's last read" in caplog.text
    clock.advance(120.0)                                        # nothing new since: the last row stays
    a.apply([ev("page_view", T0 + 4, cid="C")], NOW)
    clock.advance(120.0)
    a.apply([], NOW)
    a.apply([ev("page_view", T0 + 5, cid="C")], NOW)
    assert rows() and max(rows()) > first


# ---------------------------------------------------------------- a cache following it
def _following(a, b, *events):
    """Process b's cache (ttl 1 s), synced once after process a applied
    ``events``, its clock a tenth of a second on: what it fetches from now
    on, the feed vouches for."""
    clock = FakeClock()
    cache = CachedStore(b, ttl=1.0, clock=clock)
    a.apply(list(events))
    cache.sync()
    clock.advance(0.1)
    return cache, clock


def test_a_cache_drops_what_another_process_changed_at_its_next_sync(two):
    a, b = two
    cache, clock = _following(a, b, ev("purchase", T0, cid="A", items=[item("S1")], loyalty_card="L1"))
    assert cache.get("A")["orders_count"] == 1
    assert cache.read(("loyalty_card", "L1")).profile["orders_count"] == 1
    assert cache.read(("loyalty_card", "L2")).profile is None              # an unknown card, cached
    assert cache.get("nobody") is None
    a.apply([ev("purchase", T0 + 1, cid="A", items=[item("S2")])])
    a.apply([ev("store_visit", T0 + 2, channel="pos", cid="B", loyalty_card="L2", store_id="s1")])
    assert cache.get("A")["orders_count"] == 1                             # not synced yet: the entry
    assert cache.read(("loyalty_card", "L2")).profile is None
    assert cache.sync()
    assert cache.feed[3] == 2                                           # A (its card's entry with it), L2
    assert cache.get("A")["orders_count"] == 2
    assert cache.read(("loyalty_card", "L1")).profile["orders_count"] == 2
    assert cache.read(("loyalty_card", "L2")).profile["customer_id"] == "B"
    a.apply([ev("page_view", T0 + 3, cid="nobody")])                       # a cached miss starts naming someone
    cache.sync()
    assert cache.get("nobody")["customer_id"] == "nobody"


def test_a_merge_elsewhere_reaches_the_ids_and_identifiers_cached_here(two):
    a, b = two
    cache, clock = _following(a, b, ev("page_view", T0, cid="A"), ev("page_view", T0 + 1, cid="B", email_hash="h1"))
    assert cache.get("B")["customer_id"] == "B"
    assert cache.read(("email_hash", "h1")).profile["customer_id"] == "B"
    a.apply([ev("email_open", T0 + 2, channel="email", cid="A", email_hash="h1")])
    cache.sync()
    assert cache.get("B")["customer_id"] == "A"
    assert cache.read(("email_hash", "h1")).profile["customer_id"] == "A"


def test_entries_stay_valid_while_syncs_come_and_expire_when_they_stop(two):
    a, b = two
    clock = FakeClock()
    cache = CachedStore(b, ttl=1.0, clock=clock)
    a.apply([ev("page_view", T0, cid="A")])
    fetched_before_the_first_sync = cache.read("A")
    assert fetched_before_the_first_sync.source == "store"
    cache.sync()
    clock.advance(0.1)
    assert cache.read("B").source == "none"                     # fetched after it: a known miss
    for _ in range(40):                                         # ten seconds of syncs, a quarter ttl apart
        clock.advance(0.25)
        cache.sync()
        assert cache.read("B").source == "none" and cache.reads[1] == 2
    assert cache.read("A").source == "store"                    # fetched before the first sync: its ttl only
    clock.advance(0.99)                                         # no sync for just under a ttl: still valid
    assert cache.read("B").source == "none" and cache.reads[1] == 3
    clock.advance(0.01)                                         # a ttl since the last sync began: expired
    assert cache.read("B").source == "none" and cache.reads[1] == 4


def test_a_sync_that_fails_leaves_the_entries_to_their_ttl(two, monkeypatch):
    a, b = two
    cache, clock = _following(a, b, ev("page_view", T0, cid="A"))
    cache.read("A")

    def down(position):
        raise StoreUnavailable("sqlite://x: disk I/O error")

    monkeypatch.setattr(b, "changes_since", down)
    for _ in range(3):
        clock.advance(0.3)
        assert cache.sync() is False
        assert cache.read("A").source == "cache"                # the last good sync is younger than the ttl
    clock.advance(0.2)
    assert cache.read("A").source == "store"                    # 1.1 s since it: back to expiry


def test_a_feed_that_keeps_failing_is_logged_once_per_run_of_failures(two_sqlite, monkeypatch, caplog):
    _, b = two_sqlite
    cache = CachedStore(b, ttl=1.0, clock=FakeClock())
    real = b.changes_since

    def broken(position):
        raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR, logger="engine.profiles.cache"):
        monkeypatch.setattr(b, "changes_since", broken)
        assert [cache.sync() for _ in range(3)] == [False] * 3
        monkeypatch.setattr(b, "changes_since", real)
        assert cache.sync()
        monkeypatch.setattr(b, "changes_since", broken)
        assert cache.sync() is False
    failures = [r for r in caplog.records if "change feed failed" in r.getMessage()]
    assert len(failures) == 2 and cache.feed[:2] == [1, 4]          # synced once, failed four times


class HookClock(FakeClock):
    """A FakeClock that runs ``hook`` once, at its next reading: a thread
    switch at that point (the sync thread running in between)."""

    hook = None

    def __call__(self) -> float:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return self.t


@pytest.mark.parametrize("path", ["fresh", "compiled"])
def test_a_sync_between_a_lock_free_lookup_and_its_check_cannot_vouch_for_what_it_dropped(two_sqlite, path):
    """fresh() and the compiled hit read no lock: a sync may run between
    their lookup of the entry and their clock reading.  If that sync
    dropped the entry (changed elsewhere) after a gap in syncs, the entry
    must not be judged by the sync's new time."""
    from engine.profiles.cache import STALE
    from engine.service import _decide
    from engine.service.stored import StoredProfiles
    a, b = two_sqlite
    profiles = StoredProfiles(b, cache_ttl=1.0)
    cache = profiles.cache
    clock = cache.clock = HookClock()
    a.apply([ev("purchase", T0, cid="A", items=[item("S1")])])
    cache.sync()
    clock.advance(0.1)
    assert cache.read("A").profile["orders_count"] == 1
    a.apply([ev("purchase", T0 + 1, cid="A", items=[item("S2")])])        # changed elsewhere ...
    clock.advance(5.0)                                                      # ... and no sync for 5 s
    assert cache.fresh("A") is STALE
    clock.hook = cache.sync                                                 # the sync thread gets in
    got = cache.fresh("A") if path == "fresh" else _decide.stored_hit(profiles, "A", NOW)
    assert got is (STALE if path == "fresh" else None)
    assert "A" not in cache._entries.table and cache.get("A")["orders_count"] == 2


def test_a_slow_sync_vouches_from_when_it_began_not_from_when_it_ended(two_sqlite, monkeypatch):
    """The feed is read at some moment during the sync: what changed after
    its start may be missing from it, so the ttl runs from the start."""
    a, b = two_sqlite
    cache, clock = _following(a, b, ev("page_view", T0, cid="A"))
    cache.read("A")
    real = b.changes_since

    def slow(position):
        feed = real(position)
        clock.advance(0.9)                  # the read took most of a ttl
        return feed

    clock.advance(0.5)
    started = clock()
    monkeypatch.setattr(b, "changes_since", slow)
    assert cache.sync()
    assert cache._feed_until == started + 1.0
    clock.t = started + 0.999
    assert cache.read("A").source == "cache"
    clock.t = started + 1.0
    assert cache.read("A").source == "store"


def test_a_sync_with_nothing_new_leaves_a_racing_fetch_cached(two_sqlite, monkeypatch):
    a, b = two_sqlite
    cache, clock = _following(a, b, ev("page_view", T0, cid="A"), ev("page_view", T0, cid="B"))
    real = b.get_many_encoded

    def read_then_sync(ids):
        found = real(ids)
        assert cache.sync()                 # nothing changed since the last sync
        return found

    monkeypatch.setattr(b, "get_many_encoded", read_then_sync)
    assert cache.prefetch(["A", "B"]) == 2
    assert cache.reads[3] == 2 and set(cache._entries.table) == {"A", "B"}       # cached


def test_an_entry_on_the_feed_s_word_is_fetched_again_at_its_max_age(two_sqlite):
    """A backstop should a writer that does not feed the store change it."""
    a, b = two_sqlite
    clock = FakeClock()
    cache = CachedStore(b, ttl=1.0, clock=clock, feed_max_age=10.0)
    a.apply([ev("page_view", T0, cid="A")])
    cache.sync()
    clock.advance(0.1)
    assert cache.read("A").source == "store"
    for _ in range(38):                     # 9.5 s more, a sync every quarter second
        clock.advance(0.25)
        cache.sync()
    assert cache.read("A").source == "cache" and cache.fresh("A") is not None
    clock.advance(0.5)
    cache.sync()
    assert cache.read("A").source == "store"                               # 10.1 s old


def test_a_long_ttl_still_syncs_every_second_at_most(two_sqlite):
    _, b = two_sqlite
    assert CachedStore(b, ttl=1.0).sync_period() == 0.25
    assert CachedStore(b, ttl=240.0).sync_period() == 1.0      # the feed keeps a minute of changes


def test_more_changes_than_one_read_returns_read_as_incomplete(two_sqlite, monkeypatch):
    """After a bulk import: dropping each key would hold the reader and the
    cache up; the cache trusts only what it fetches next instead."""
    from engine.profiles import sqlite_store
    a, b = two_sqlite
    monkeypatch.setattr(sqlite_store, "FEED_ROWS", 5)
    position = b.changes_since(None).head
    a.apply([ev("page_view", T0, cid=f"C{i}") for i in range(2)])           # 4 rows
    assert b.changes_since(position).complete
    a.apply([ev("page_view", T0, cid=f"C{i}") for i in range(2, 5)])        # 10 rows in all
    feed = b.changes_since(position)
    assert not feed.complete and feed.head == b.changes_since(None).head


def test_a_fetch_racing_a_sync_is_not_cached(two, monkeypatch):
    a, b = two
    cache, clock = _following(a, b, ev("purchase", T0, cid="A", items=[item("S1")]))
    real = b.get_encoded

    def read_then_sync(cid):
        old = real(cid)                                         # the profile as it was ...
        a.apply([ev("purchase", T0 + 1, cid="A", items=[item("S2")])])    # ... changed elsewhere,
        cache.sync()                                            # ... and a sync passes the change
        return old

    monkeypatch.setattr(b, "get_encoded", read_then_sync)
    assert cache.get("A")["orders_count"] == 1                  # answered (it was current when read) ...
    monkeypatch.setattr(b, "get_encoded", real)
    clock.advance(0.1)
    assert cache.get("A")["orders_count"] == 2                  # ... but not cached


def test_a_prefetch_skips_entries_the_feed_vouches_for(two):
    a, b = two
    cache, clock = _following(a, b, ev("page_view", T0, cid="A"), ev("page_view", T0, cid="B"))
    assert cache.prefetch(["A", "B"]) == 2
    clock.advance(5.0)
    cache.sync()
    assert cache.prefetch(["A", "B", "C"]) == 1                 # A and B still valid


def test_stores_without_a_feed_and_a_zero_ttl_do_not_sync(two):
    a, b = two

    class NoFeed:
        has_change_feed = False

        def __getattr__(self, name):
            return getattr(b, name)

    assert CachedStore(NoFeed(), ttl=1.0).sync() is False
    assert CachedStore(NoFeed(), ttl=1.0).start_sync() is False
    assert CachedStore(b, ttl=0.0).start_sync() is False


def test_the_sync_thread_runs_until_close(sqlite_url, monkeypatch):
    store = open_store(sqlite_url, clock=lambda: NOW)
    cache = CachedStore(store, ttl=1.0)
    seen = threading.Event()
    real = store.changes_since

    def noted(position):
        seen.set()
        return real(position)

    monkeypatch.setattr(store, "changes_since", noted)
    assert cache.start_sync(every=3600)
    assert cache.start_sync() is False                          # one thread
    assert seen.wait(30)                                        # the first sync runs at once
    thread = cache._sync_thread
    cache.close()
    assert not thread.is_alive() and cache._sync_thread is None


# ---------------------------------------------------------------- the staleness bound
CUSTOMERS = ["A", "B", "C"]


class _Process:
    def __init__(self, store, clock):
        self.store = store
        self.cache = CachedStore(store, ttl=1.0, clock=clock)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(
    st.sampled_from(["read", "read", "write", "write_cached", "sync", "sync", "advance", "advance", "settle",
                     "prefetch"]),
    st.sampled_from([0, 1]), st.sampled_from(CUSTOMERS), st.sampled_from([0.1, 0.25, 0.6, 1.0, 3.0])),
    max_size=40))
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_caches_never_serve_a_profile_older_than_the_ttl(kind, request, tmp_path_factory, steps):
    """Whatever the order of writes, reads, syncs and time: a profile a
    cache answers with was the store's at some moment less than a ttl ago
    (the bound without a feed), and right after a sync it is the store's
    current one, unless written to before that cache's first sync."""
    url = (f"sqlite://{tmp_path_factory.mktemp('feed') / 'profiles.db'}" if kind == "sqlite"
           else request.getfixturevalue("redis_url"))
    a, b = _pair(url)                       # (a fresh file, or a fresh key prefix)
    with a, b:
        _staleness(steps, (a, b))


def _staleness(steps, two) -> None:
    clock = FakeClock()
    procs = [_Process(s, clock) for s in two]
    versions: dict[str, list[tuple[dict | None, float | None]]] = {c: [(None, None)] for c in CUSTOMERS}
    t = [T0]
    first_sync: list[int | None] = [None, None]               # the step of each process's first sync
    last_write: dict[str, int] = {}

    def wrote(cid, step):
        now = clock()
        versions[cid][-1] = (versions[cid][-1][0], now)        # replaced now
        versions[cid].append((as_cached(two[0].get(cid)), None))        # as the caches hold it
        last_write[cid] = step

    for step, (op, who, cid, seconds) in enumerate(steps):
        p = procs[who]
        if op in ("write", "write_cached"):
            t[0] += 1
            event = ev("page_view", t[0], cid=cid)
            (p.cache.apply([event]) if op == "write_cached" else p.store.apply([event]))
            wrote(cid, step)
        elif op == "sync":
            p.cache.sync()
            if first_sync[who] is None:
                first_sync[who] = step
        elif op == "advance":
            clock.advance(seconds)
        elif op == "settle":
            with p.cache._lock:
                p.cache._entries.settle(clock())
        elif op == "prefetch":
            p.cache.prefetch(CUSTOMERS)
        got = p.cache.read(cid)
        assert not got.degraded
        now = clock()
        allowed = [v for v, replaced in versions[cid] if replaced is None or now - replaced < 1.0]
        assert got.profile in allowed, (op, who, cid, got)
        # right after a sync, every write the feed holds for this process has
        # reached it: those since its first sync (before it, the ttl bounds them)
        if op == "sync" and last_write.get(cid, step) > first_sync[who]:
            assert got.profile == versions[cid][-1][0]
