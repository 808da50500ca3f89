"""Both stores, the same behaviour: a real SQLite file and a real redis-server."""
from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.profiles import StoreError, StoreUnavailable, ValidationConfig, open_store
from engine.profiles.events import event_to_dict
from engine.profiles.fold import fold_all, new_profile, public
from engine.profiles.redis_store import RedisStore
from engine.profiles.sqlite_store import SQLiteStore
from profiles_histories import events, histories
from profiles_support import NOW, T0, RedisServer, ev, item


@pytest.fixture
def store(store_url):
    with open_store(store_url, clock=lambda: NOW) as s:
        yield s


def test_open_store_picks_the_class_by_url(sqlite_url, redis_url):
    with open_store(sqlite_url) as s:
        assert isinstance(s, SQLiteStore)
    with open_store(redis_url) as s:
        assert isinstance(s, RedisStore)
    with pytest.raises(StoreError, match="unknown profile store URL 'mysql://x'"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite://")


def test_sqlite_does_not_create_when_asked_not_to(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite://{tmp_path / 'missing.db'}", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_apply_then_get(store):
    result = store.apply([ev("purchase", T0, channel="pos", store_id="riverside", items=[item("S1", size="42")]),
                          ev("product_view", T0 + 5, channel="app", sku="T1", category="shirts")])
    assert result.accepted == tuple(result.assigned) and len(result.accepted) == 2
    assert result.customers == ("C1",) and result.errors == () and result.duplicates == ()
    p = store.get("C1")
    assert p["sizes"] == {"shoes": "42"} and p["last_view"]["sku"] == "T1" and p["orders_count"] == 1
    assert store.get("nobody") is None
    assert store.applied(result.accepted[0]) == "C1" and store.applied("nope") is None


def test_same_event_id_applies_once(store):
    batch = [ev("purchase", T0, items=[item("S1", price=5)]), ev("purchase", T0 + 1, items=[item("S2", price=7)])]
    first = store.apply(batch)
    again = store.apply(batch + [batch[0]])
    assert again.accepted == () and again.duplicates == tuple(e["event_id"] for e in batch + [batch[0]])
    assert again.acknowledged == again.duplicates
    assert store.get("C1")["orders_count"] == 2 and store.get("C1")["lifetime_value"] == 12.0
    inside = store.apply([ev("page_view", T0, event_id="same"), ev("page_view", T0 + 9, event_id="same")])
    assert inside.accepted == ("same",) and inside.duplicates == ("same",)
    assert store.get("C1")["last_seen_at"] == T0 + 1
    assert first.accepted == tuple(e["event_id"] for e in batch)


def test_one_bad_event_is_reported_by_index_and_the_rest_stored(store):
    result = store.apply([ev("page_view", T0), ev("purchase", T0, items=[item("S1", price=-1)]),
                          ev("store_visit", T0, channel="pos", store_id="mall")])
    assert [str(e) for e in result.errors] == ["events[1].items[0].price: must not be negative"]
    assert len(result.accepted) == 2
    assert store.get("C1")["preferred_store"] == "mall" and "orders_count" not in store.get("C1")
    nothing = store.apply([ev("teleport", T0)])
    assert nothing.accepted == () and nothing.errors[0].field == "type"


def test_known_stores_are_checked(store_url):
    with open_store(store_url, clock=lambda: NOW,
                    validation=ValidationConfig(known_stores=frozenset({"mall"}))) as s:
        result = s.apply([ev("store_visit", T0, channel="pos", store_id="mars")])
        assert [str(e) for e in result.errors] == ["events[0].store_id: unknown store 'mars'"]


def test_out_of_order_batches_fold_like_in_order(store):
    late = ev("product_view", T0 + 100, sku="NEW", category="shirts")
    store.apply([late, ev("purchase", T0 + 50, channel="pos", store_id="s1", items=[item("S1", size="44")])])
    store.apply([ev("product_view", T0, sku="OLD", category="shoes"),
                 ev("purchase", T0 + 10, items=[item("S2", size="41")])])
    p = store.get("C1")
    assert p["last_view"]["sku"] == "NEW" and p["sizes"]["shoes"] == "44"


def test_identities_link_and_merge(store):
    store.apply([ev("add_to_cart", T0, channel="app", cid=None, device_id="d1", items=[item("B1", "coffee-beans")])])
    store.apply([ev("purchase", T0 + 5, channel="pos", cid=None, loyalty_card="L1", store_id="mall",
                    items=[item("S1", size="42")])])
    anon_app = store.resolve("device_id", "d1")
    anon_pos = store.resolve("loyalty_card", "L1")
    assert anon_app != anon_pos
    # logging in on the web links the device, the loyalty card and the account
    result = store.apply([ev("page_view", T0 + 9, cid="C7", device_id="d1", loyalty_card="L1")])
    assert result.merged == ((anon_pos, anon_app),)          # the app customer was created first
    assert set(result.touched) == {anon_app, anon_pos, "C7"}       # C7 now names anon_app
    for kind, value in [("device_id", "d1"), ("loyalty_card", "L1"), ("customer_id", "C7"),
                        ("customer_id", anon_pos)]:
        assert store.resolve(kind, value) == anon_app
    p = store.get("C7")
    assert p == store.get(anon_pos) == store.get(anon_app)
    assert p == store.get_by("loyalty_card", "L1") == store.get_by("device_id", "d1")
    assert p == store.get_by("customer_id", "C7")
    assert store.get_by("loyalty_card", "C7") is None and store.get_by("email_hash", "nobody") is None
    assert p["customer_id"] == anon_app and p["cart"]["skus"] == ["B1"] and p["sizes"] == {"shoes": "42"}
    assert p["channels"] == ["app", "pos", "web"]
    # a later event from any identifier lands on the same profile
    store.apply([ev("offer_impression", T0 + 20, channel="email", cid=None, email_hash="h", loyalty_card="L1",
                    offer_id="latte")])
    assert store.get("C7")["offer_impressions"] == {"latte": [T0 + 20]}
    assert store.resolve("email_hash", "h") == anon_app


def test_chained_merges_repoint_every_alias(store):
    for n in range(3):
        store.apply([ev("page_view", T0 + n, cid=f"K{n}", device_id=f"d{n}")])
    store.apply([ev("page_view", T0 + 10, cid="K1", device_id="d2")])
    store.apply([ev("page_view", T0 + 11, cid="K0", device_id="d1")])
    for n in range(3):
        assert store.resolve("device_id", f"d{n}") == "K0"
        assert store.get(f"K{n}")["customer_id"] == "K0"


def test_merges_within_one_batch(store):
    result = store.apply([ev("page_view", T0, cid=None, device_id="d1"),
                          ev("page_view", T0 + 1, cid="C1"),
                          ev("page_view", T0 + 2, cid="C1", device_id="d1")])
    (loser, survivor), = result.merged
    assert loser == "C1" and store.get("C1")["customer_id"] == survivor
    assert store.get(survivor)["visits"]["web"] == [T0]


def test_data_survives_reopening(store_url):
    with open_store(store_url, clock=lambda: NOW) as s:
        s.apply([ev("purchase", T0, items=[item("S1")], cid=None, email_hash="h1")])
        cid = s.resolve("email_hash", "h1")
    with open_store(store_url, clock=lambda: NOW) as s:
        assert s.get(cid)["orders_count"] == 1
        assert s.apply([ev("page_view", T0, cid=None, email_hash="h1")]).customers == (cid,)
        s.apply([ev("page_view", T0, cid="later"), ev("page_view", T0, cid="latest")])
        order = [s.get(c)["_fold"]["seq"] for c in (cid, "later", "latest")]
        assert order == sorted(set(order))          # creation order survives reopening


def test_health_reports_durability(store):
    h = store.health()
    assert h.ok and h.durable is True, h


def test_redis_health_flags_a_server_that_does_not_fsync(redis_url):
    import redis
    client = redis.Redis.from_url(redis_url)
    client.config_set("appendfsync", "everysec")
    try:
        with open_store(redis_url) as s:
            h = s.health()
        assert h.ok and h.durable is False and "NOT durable" in h.detail
    finally:
        client.config_set("appendfsync", "always")
        client.close()


def test_password_is_hidden_in_the_url():
    from engine.profiles.store import safe_url
    assert safe_url("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert safe_url("redis://host:6379/0") == "redis://host:6379/0"


def test_concurrent_writers_lose_nothing(store_url):
    """Two store objects (two replicas) write the same customers at once."""
    stores = [open_store(store_url, clock=lambda: NOW) for _ in range(2)]
    barrier = threading.Barrier(2)

    def writer(s, w):
        barrier.wait()
        for b in range(15):
            s.apply([ev("purchase", T0 + b, cid=f"P{k}", items=[item(f"S{w}-{b}", price=1)]) for k in range(4)]
                    + [ev("page_view", T0, cid=None, device_id=f"shared{b}", event_id=f"v{b}")])

    threads = [threading.Thread(target=writer, args=(s, w)) for w, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        p = stores[0].get(f"P{k}")
        assert p["orders_count"] == 30 and p["lifetime_value"] == 30.0 and len(p["purchased_skus"]) == 30
    assert stores[0].get(stores[0].resolve("device_id", "shared3"))["visits"]["web"] == [T0]
    for s in stores:
        s.close()


_customers = itertools.count()


@pytest.mark.parametrize("kind", ["sqlite", "sqlite-decoded", "redis"])
def test_duplicates_and_batching_do_not_change_the_profile(kind, request):
    """(sqlite-decoded: the writer keeps every profile it wrote decoded and
    folds the next batch into it.)"""
    url = request.getfixturevalue(f"{kind.split('-')[0]}_url")
    options = {"decoded_min_bytes": 0} if kind == "sqlite-decoded" else {}
    with open_store(url, clock=lambda: NOW, **options) as s:

        @settings(max_examples=25, deadline=None)
        @given(histories, st.data())
        def check(history, data):
            cid = f"H{next(_customers)}"
            raws = [{**event_to_dict(e), "customer_id": cid, "event_id": f"{cid}-{e.event_id}"} for e in history]
            sent = raws + data.draw(st.lists(st.sampled_from(raws), max_size=10))   # duplicates
            sent = data.draw(st.permutations(sent))
            cuts = sorted(data.draw(st.lists(st.integers(0, len(sent)), max_size=4)))
            for lo, hi in zip([0] + cuts, cuts + [len(sent)]):
                s.apply(sent[lo:hi])
            once = fold_all(new_profile(cid), events(*raws))
            stored = s.get(cid)
            assert public(stored) == public(once) | {"customer_id": cid}

        check()


# ---------------------------------------------------------------- the durability warning
def durability_warnings(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if "durable" in r.getMessage()]


def test_a_redis_that_does_not_fsync_is_named_once_when_the_server_opens_it(tmp_path, caplog):
    """One line from one logger (it used to be two: the store's and the
    service's, reading "NOT durable (NOT durable: ...)")."""
    from engine.service.stored import StoredProfiles
    server = RedisServer(tmp_path / "redis", durable=False).start()
    try:
        caplog.set_level("INFO")
        StoredProfiles.open(server.url).close()
        assert durability_warnings(caplog) == [
            f"engine.profiles.redis_store: profile store {server.url} is not durable: appendonly no, appendfsync "
            "always (needs appendonly yes and appendfsync always): acknowledged events can be lost if Redis "
            "crashes"]
    finally:
        server.stop()


def test_a_redis_unreachable_at_open_is_checked_on_first_contact_and_after_each_outage(tmp_path, caplog):
    """Started while Redis is down, then Redis starts without fsync: the
    first command that reaches it (before the batch is acknowledged) logs
    the warning, once; an outage and a reconnection check again."""
    caplog.set_level("INFO")
    server = RedisServer(tmp_path / "redis", durable=False)          # not started yet
    store = open_store(server.url, clock=lambda: NOW)
    try:
        with pytest.raises(StoreUnavailable):
            store.get("C1")
        assert durability_warnings(caplog) == []
        server.start()
        assert store.apply([ev("page_view", T0)]).accepted
        assert len(durability_warnings(caplog)) == 1 and "appendonly no" in durability_warnings(caplog)[0]
        store.get("C1")
        store.apply([ev("page_view", T0 + 1)])
        assert store.health().durable is False
        assert len(durability_warnings(caplog)) == 1                  # once per contact, not per command
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.get("C1")
        server.start()
        store.get("C1")                                               # (appendonly no: the profile is gone)
        assert len(durability_warnings(caplog)) == 2
    finally:
        store.close()
        server.stop()


def test_a_durable_redis_logs_no_warning_after_an_outage(own_redis, caplog):
    caplog.set_level("INFO")
    with open_store(own_redis.url, clock=lambda: NOW) as store:
        store.apply([ev("page_view", T0)])
        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            store.get("C1")
        own_redis.start()
        assert store.get("C1")["channels"] == ["web"]
    assert durability_warnings(caplog) == []
