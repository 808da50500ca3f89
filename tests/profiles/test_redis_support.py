"""The tests' redis-server helper survives a port taken between the moment
it was picked and the moment redis-server binds it (CI once lost every
Redis Cluster test to that: 27 errors from one node's port)."""
from __future__ import annotations

import socket

import pytest
import redis

from profiles_support import RedisClusterServers, RedisServer


@pytest.fixture
def taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_picked_port_taken_before_start_is_picked_again(tmp_path, taken):
    server = RedisServer(tmp_path / "redis", durable=False)
    server.port = taken                              # as if someone bound it after free_port()
    server.start()
    try:
        assert server.port != taken
        assert redis.Redis(port=server.port).ping()
    finally:
        server.stop()


def test_a_port_someone_holds_is_not_changed_behind_their_back(tmp_path, taken):
    passed = RedisServer(tmp_path / "a", port=taken, durable=False)
    with pytest.raises(RuntimeError, match="Address already in use"):
        passed.start()
    published = RedisServer(tmp_path / "b", durable=False)
    published.url                                    # handed out before start: pinned
    published.port = taken
    with pytest.raises(RuntimeError, match="Address already in use"):
        published.start()
    assert published.port == taken


def test_a_cluster_node_keeps_its_ports_across_a_restart(tmp_path):
    cluster = RedisClusterServers(tmp_path / "cluster", size=3).start()
    try:
        node = cluster.nodes[0]
        port, bus = node.port, node.bus_port
        node.kill()
        node.start()
        assert (node.port, node.bus_port) == (port, bus)
        cluster._until_ok()
    finally:
        cluster.stop()
