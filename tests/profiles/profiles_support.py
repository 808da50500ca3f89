"""Shared by the profile tests and the profile bench: event builders and a
real redis-server on a loopback port."""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

DAY = 86400.0
NOW = 1_760_000_000.0              # the injected "now" of every test (2025-10-09)
T0 = NOW - 30 * DAY                # events start here

_ids = itertools.count(1)


def ev(type_: str, t: float = T0, *, channel: str = "web", cid: str | None = "C1",
       event_id: str | None = None, **fields) -> dict:
    """A raw event: ``ev("purchase", T0 + 5, items=[item("S1")], channel="pos", store_id="s1")``."""
    e = {"event_id": event_id or f"e{next(_ids)}", "type": type_, "channel": channel, "timestamp": t}
    if cid is not None:
        e["customer_id"] = cid
    e.update(fields)
    return e


def item(sku: str, category: str = "shoes", price: float = 10.0, qty: int | None = None,
         size: str | None = None) -> dict:
    out = {"sku": sku, "category": category, "price": price}
    if qty is not None:
        out["qty"] = qty
    if size is not None:
        out["size"] = size
    return out


def as_cached(profile: dict | None) -> dict | None:
    """A stored profile as the profile cache holds it (and Decide reads it):
    without the fold's bookkeeping (``fold.public``)."""
    from engine.profiles.fold import public
    return None if profile is None else public(profile)


# ---------------------------------------------------------------- redis-server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server child process with durable settings (appendonly yes,
    appendfsync always; ``durable=False``: appendonly no, Redis's default)
    on a free loopback port; its data dir survives stop/kill so a restart
    reloads the AOF."""

    def __init__(self, data_dir: Path, port: int | None = None, durable: bool = True):
        self.durable = durable
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # A port from free_port() is only free when it is picked: another test's
        # server or an outgoing connection can take it before redis-server binds
        # it. Such a port is picked again at start, unless someone already holds
        # it (a port passed in, a url read before start, a restart).
        self._pinned = port is not None
        self.proc: subprocess.Popen | None = None
        self.cluster_node = False            # cluster-enabled, its bus on a free port (RedisClusterServers)
        self.bus_port: int | None = None

    @property
    def url(self) -> str:
        self._pinned = True
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 5) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        for attempt in range(1, attempts + 1):
            extra = []
            if self.cluster_node:
                # the cluster bus port defaults to port + 10000, past 65535 for a high free port
                self.bus_port = self.bus_port or free_port()
                extra = ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf"),
                         "--cluster-node-timeout", "5000", "--cluster-port", str(self.bus_port)]
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--appendonly", "yes" if self.durable else "no", "--appendfsync", "always", "--save", "",
                 "--daemonize", "no", "--protected-mode", "no", *extra],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
            log = []
            for line in self.proc.stdout:        # blocks until the server says it is ready
                log.append(line)
                if "Ready to accept connections" in line:
                    break
            else:
                self.proc.wait()
                self.proc = None
                taken = any("Address already in use" in line for line in log)
                if taken and not self._pinned and attempt < attempts:
                    self.port, self.bus_port = free_port(), None
                    continue
                raise RuntimeError("redis-server did not start:\n" + "".join(log))
            break
        self._pinned = True                  # a restart comes back on the same port
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        return self

    @staticmethod
    def _drain(proc) -> None:
        for _ in proc.stdout:
            pass

    def stop(self) -> None:
        """SIGTERM and wait (Redis fsyncs and exits)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class RedisClusterServers:
    """A Redis Cluster of ``size`` primaries (no replicas), each a
    redis-server child with the durable settings of :class:`RedisServer`
    and ``cluster-enabled yes``, joined by ``redis-cli --cluster create``
    (which returns once every node agrees on the slots)."""

    def __init__(self, data_dir: Path, size: int = 3):
        self.dir = Path(data_dir)
        self.nodes = [RedisServer(self.dir / f"node{i}") for i in range(size)]

    @property
    def url(self) -> str:
        return f"redis-cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> "RedisClusterServers":
        for node in self.nodes:
            node.cluster_node = True
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-tools)")
        made = subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                               "--cluster-replicas", "0", "--cluster-yes"],
                              capture_output=True, text=True, timeout=120)
        if made.returncode != 0 or "All 16384 slots covered" not in made.stdout:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{made.stdout}\n{made.stderr}")
        self._until_ok()
        return self

    def _until_ok(self, timeout: float = 60.0) -> None:
        """Until every node says ``cluster_state:ok`` (a node may still be
        learning its peers' slots when ``--cluster create`` returns)."""
        import time

        import redis
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"the Redis Cluster's node {node.port} never said cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def flush(self) -> None:
        import redis
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Switchable:
    """A store wrapper for the cache tests: counts reads (``gets``; the id
    lists of ``get_many`` in ``many``), fails them and its health while
    ``down`` is set (StoreUnavailable, as a store that stopped answering),
    and runs ``during()``, if set, in the middle of a get_many (a write
    racing the read).  Everything else is the store's."""

    def __init__(self, store):
        self.store, self.down, self.during = store, False, None
        self.gets, self.many = 0, []

    def get(self, cid):
        self._read()
        return self.store.get(cid)

    def get_encoded(self, cid):
        self._read()
        return self.store.get_encoded(cid)

    def get_by_encoded(self, kind, value):
        self._read()
        return self.store.get_by_encoded(kind, value)

    def get_many(self, ids):
        self._read_many(ids)
        return self.store.get_many(ids)

    def get_many_encoded(self, ids):
        self._read_many(ids)
        return self.store.get_many_encoded(ids)

    def _read(self):
        self.gets += 1
        self._fail()

    def _read_many(self, ids):
        self.many.append(list(ids))
        self._fail()
        if self.during is not None:
            self.during()

    def health(self):
        from engine.profiles.store import Health
        return Health(False, self.store.url, "test: no answer") if self.down else self.store.health()

    def _fail(self):
        if self.down:
            from engine.profiles import StoreUnavailable
            raise StoreUnavailable("test: the store is down")

    def __getattr__(self, name):
        return getattr(self.store, name)


class FakeClock:
    """An injected clock that moves only when told."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
