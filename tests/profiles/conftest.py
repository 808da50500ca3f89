"""Fixtures: a real redis-server per session (and one per test that stops
it), a Redis Cluster of three per session, a fresh SQLite file per test,
and ``store_url`` over the three kinds of store."""
from __future__ import annotations

import pytest
import redis

from profiles_support import RedisClusterServers, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster):
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, free to stop, kill and restart."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite://{tmp_path / 'profiles.db'}"


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def store_url(request):
    return request.getfixturevalue(f"{request.param}_url")
