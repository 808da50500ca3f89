"""The Redis store on a real Redis Cluster (three redis-server primaries).

The behaviour every store shares runs here too (``store_url`` includes the
cluster); these are what only a cluster has: one hash slot for every key,
the settings of the node holding it, and the URL's rules."""
from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from engine.profiles import StoreError, StoreUnavailable, open_store
from engine.profiles.redis_store import CLUSTER_PREFIX, RedisStore
from profiles_support import NOW, T0, ev, free_port, item


def test_every_key_of_a_batch_is_in_one_slot_and_reads_come_back(redis_cluster_url, redis_cluster):
    with open_store(redis_cluster_url, clock=lambda: NOW) as s:
        assert isinstance(s, RedisStore) and s.cluster and s.prefix == CLUSTER_PREFIX
        r = s.apply([ev("purchase", T0, channel="pos", store_id="x", items=[item("S1", size="42")],
                        loyalty_card="L1", cid="C1"),
                     ev("page_view", T0 + 1, cid="C2", email_hash="h2"),
                     ev("page_view", T0 + 2, cid=None, email_hash="h2")])      # C2 by its email
        assert len(r.accepted) == 3 and r.errors == ()
        keys, slots = [], set()
        for node in redis_cluster.nodes:
            client = redis.Redis(port=node.port)
            try:
                found = [k.decode() for k in client.keys("*")]
                keys += found
                slots |= {client.cluster("keyslot", k) for k in found}
            finally:
                client.close()
        assert len(slots) == 1 and all(k.startswith(CLUSTER_PREFIX) for k in keys), keys
        assert {"{maple}:p:C1", "{maple}:p:C2", "{maple}:a:loyalty_card:L1", "{maple}:seq"} <= set(keys)
        assert s.resolve("email_hash", "h2") == "C2" and s.get("C1")["sizes"] == {"shoes": "42"}
        assert s.get_many(["C1", "C2", "nobody"])["C2"]["last_seen_at"] == T0 + 2
        assert s.apply([ev("page_view", T0, event_id=r.accepted[0])]).duplicates == (r.accepted[0],)


def test_durability_is_the_settings_of_the_node_holding_the_keys(redis_cluster_url, redis_cluster):
    cluster = RedisCluster.from_url(redis_cluster_url.replace("redis-cluster", "redis"))
    holder = cluster.get_node_from_key(CLUSTER_PREFIX + "seq").port
    try:
        for node in redis_cluster.nodes:
            client = redis.Redis(port=node.port)
            client.config_set("appendfsync", "everysec")
            try:
                with open_store(redis_cluster_url) as s:
                    h = s.health()
                assert h.ok and h.durable is (node.port != holder), (node.port, holder, h)
            finally:
                client.config_set("appendfsync", "always")
                client.close()
    finally:
        cluster.close()


def test_the_url_names_a_cluster_node_and_database_0(redis_cluster_url):
    with pytest.raises(StoreError, match="a Redis Cluster has database 0 only"):
        open_store(redis_cluster_url + "/3")
    with open_store(redis_cluster_url + "/0") as s:
        assert s.cluster
    port = free_port()                                          # nothing listens there
    with pytest.raises(StoreUnavailable, match=f"redis-cluster://127.0.0.1:{port}: cannot read the cluster"):
        open_store(f"redis-cluster://127.0.0.1:{port}", connect_timeout=0.2)


def test_a_prefix_that_is_not_a_hash_tag_is_refused(redis_cluster_url):
    with pytest.raises(StoreError, match="must be a hash tag"):
        open_store(redis_cluster_url, prefix="maple:")
    with open_store(redis_cluster_url, prefix="{shop7}:", clock=lambda: NOW) as s:   # several tenants
        s.apply([ev("page_view", T0, cid="C9")])
        assert s.get("C9") is not None and s.key("p", "C9") == "{shop7}:p:C9"


def test_the_primary_holding_the_keys_down_is_unavailable_and_nothing_acknowledged_is_lost(tmp_path):
    """The node holding Maple's slot killed (no replica to take over):
    writes and reads are StoreUnavailable (a batch is never acknowledged and
    then dropped); restarted from its append-only file, the cluster answers
    again with every acknowledged event."""
    from profiles_support import RedisClusterServers
    cluster = RedisClusterServers(tmp_path / "cluster").start()
    try:
        with open_store(cluster.url, clock=lambda: NOW, connect_timeout=0.2, socket_timeout=0.5) as s:
            assert s.apply([ev("page_view", T0, cid="C1", event_id="before")]).accepted == ("before",)
            holder = s.client.get_node_from_key(s.key("seq")).port
            node = next(n for n in cluster.nodes if n.port == holder)
            node.kill()
            with pytest.raises(StoreUnavailable, match="not acknowledged"):
                s.apply([ev("page_view", T0 + 1, cid="C1", event_id="during")])
            with pytest.raises(StoreUnavailable):
                s.get("C1")
            node.start()                                    # same port, its nodes.conf and AOF
            cluster._until_ok()
            p = _until_answered(lambda: s.get("C1"))        # the client finds the node again
            assert p is not None and p["last_seen_at"] == T0
            assert s.applied("before") == "C1" and s.applied("during") is None
            assert s.apply([ev("page_view", T0 + 1, cid="C1", event_id="during")]).accepted == ("during",)
    finally:
        cluster.stop()


def _until_answered(read, timeout: float = 30.0):
    """``read()`` once the store answers (polled up to a deadline, as
    tests/server/conftest.py's ``until``; never a fixed sleep)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the cluster never answered again"
            time.sleep(0.05)
