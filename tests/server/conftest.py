"""Fixtures for the decision service: a small pack, and a real `maple serve`.

The pack uses the reference schema (rules/schema.rules) and decides the four
typed decisions plus one custom decision (`banner`), with an experiment on
the offers.  `Server` runs `maple serve` as a subprocess on free loopback
ports, reads the JSON line it prints once listening, and waits for health
by polling with a deadline (never by sleeping).
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]

DECISIONS = '''
decision homepage_category: string default "new-arrivals" pick first

rule continue_where_left_off priority 100
  when profile.last_view.category is set and profile.last_view.at within 14 days
  then homepage_category = profile.last_view.category
  because "Continue where you left off"

rule kiosk_home priority 50
  when request.channel == kiosk
  then homepage_category = "in-store-deals"
  because "Kiosks lead with in-store deals"

decision prefill_size: string pick first

rule size_memory
  when profile.sizes[request.category] is set
  then prefill_size = profile.sizes[request.category]
  because "The size bought last time in this category"

decision nearby_stores {
  radius: distance = 10 km
  max_stores: number = 3
  min_quantity: number = 1
  low_stock_below: number = 2
  preferred_first: bool = true
}

rule wide_search_for_app
  when request.channel == app
  then nearby_stores.radius = 25 km
  because "App users travel further"

decision next_best_offer: offer pick best top 2

offer free_latte_with_beans
  eligible when "coffee-beans" in profile.cart.categories
  score 40 + profile.loyalty_points / 100
  message "Free vanilla latte with a bag of beans"

offer welcome_ten
  eligible when profile.lifecycle == new
  score 10
  message "10% off your first order"

experiment offer_copy on next_best_offer
  holdout 10%
  variant a 45%
  variant b 45%

decision banner: string default "none"

rule vip_banner when profile.lifecycle == vip then banner = "vip" because "VIPs"
'''

#: 2027-01-15T08:00:00Z, the clock of these tests
NOW = 1_800_000_000

RUNNER = {"customer_id": "c-runner", "lifecycle": "vip", "sizes": {"shoes": "42"},
          "last_view": {"category": "running-shoes", "at": NOW - 86400},
          "cart": {"categories": ["coffee-beans"]}, "loyalty_points": 1000,
          "preferred_store": "s-riverside", "home": {"lat": 51.5, "lon": -0.12}}


def write_pack(d: Path, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "rules" / "schema.rules", d / "schema.rules")
    (d / "decisions.rules").write_text(DECISIONS + extra)
    return d


@pytest.fixture
def pack(tmp_path) -> Path:
    return write_pack(tmp_path / "pack")


@pytest.fixture(scope="module")
def module_pack(tmp_path_factory) -> Path:
    return write_pack(tmp_path_factory.mktemp("pack"))


class Server:
    """`maple serve` in a subprocess on free loopback ports."""

    def __init__(self, rules: Path, *args: str, env: dict | None = None):
        defaults = []
        if "--state" not in args:                 # never the repository's .maple/state
            self.state = Path(tempfile.mkdtemp(prefix="maple-state-"))
            weakref.finalize(self, shutil.rmtree, self.state, True)
            defaults += ["--state", str(self.state)]
        if "--watch" not in args:                 # tests that reload by RPC must not race the watcher
            defaults += ["--watch", "off"]
        cmd = [sys.executable, "-m", "engine", "serve", "--rules", str(rules), "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
               "--workers", "1", "--drain-seconds", "0", *defaults, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, cwd=ROOT)
        self.info = info = self._read_announcement(deadline=time.monotonic() + 60)
        self.address, self.admin, self.metrics_port = info["decisions"], info["admin"], info["metrics"]
        self.channel = grpc.insecure_channel(self.address)
        self.admin_channel = grpc.insecure_channel(self.admin) if self.admin else None

    def _read_announcement(self, deadline: float) -> dict:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("{"):
                    return json.loads(line)
        self.proc.kill()
        raise AssertionError("maple serve did not start: " + self.proc.stderr.read())

    def health(self, service: str = "", channel=None) -> int:
        stub = health_pb2_grpc.HealthStub(channel or self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    def wait_health(self, status=health_pb2.HealthCheckResponse.SERVING, timeout: float = 30.0,
                    channel=None, service: str = "") -> None:
        """Watch health (a server-streaming call: no polling, no sleeping)
        until it reports ``status``; fail at the deadline."""
        stub = health_pb2_grpc.HealthStub(channel or self.channel)
        seen = []
        try:
            for update in stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=timeout):
                seen.append(update.status)
                if update.status == status:
                    return
        except grpc.RpcError as err:
            seen.append(err.code())
        raise AssertionError(f"health never became {status}; saw {seen}; the server's log:\n{self._log_now()}")

    def wait_exit(self, timeout: float) -> int:
        """The server's exit code once it exits; at ``timeout`` a failure
        carrying its log."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"maple serve did not exit within {timeout} s; its log:\n{self._log_now()}")

    def _log_now(self) -> str:
        """The server's stderr so far, for a failure message: the server is
        killed to read it (a test that fails here is over anyway).  Workers
        it leaves behind may hold the pipe open while they drain, so this
        reads what has come and stops at a quiet second, not at EOF."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.read_stderr(quiet=1.0).decode(errors="replace")[-20_000:]

    def read_stderr(self, until: bytes | None = None, quiet: float | None = None, timeout: float = 60.0) -> bytes:
        """The server's stderr as it comes, by raw reads (a buffered
        readline could hold a line back from the selector): up to the
        first chunk holding ``until``, or until nothing came for ``quiet``
        seconds, or EOF.  Waiting for ``until`` fails at ``timeout``."""
        fd = self.proc.stderr.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        out = b""
        deadline = time.monotonic() + timeout
        while until is None or until not in out:
            wait = quiet if quiet is not None else max(0.0, deadline - time.monotonic())
            if not sel.select(timeout=wait):
                if until is not None:
                    raise AssertionError(f"never logged {until!r}; stderr so far:\n{out.decode(errors='replace')}")
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                if until is not None:
                    raise AssertionError(f"stderr ended before {until!r}:\n{out.decode(errors='replace')}")
                break
            out += chunk
        return out

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.channel.close()
            if self.admin_channel is not None:
                self.admin_channel.close()

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


@pytest.fixture
def start_server():
    started = []

    def start(rules: Path, *args, **kw) -> Server:
        s = Server(rules, *args, **kw)
        started.append(s)
        return s
    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture(scope="module")
def server(module_pack):
    """One server for a module's read-only tests."""
    s = Server(module_pack)
    s.wait_health()
    yield s
    s.terminate()


def until(predicate, what: str, timeout: float = 30.0):
    """Poll a condition (a cache expiring, a store coming back) up to a
    deadline; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def damaged(raw: bytes, data, unknown_field: bytes) -> bytes:
    """``raw`` damaged one way a hypothesis ``data`` draws: truncated, a bit
    flipped, bytes inserted, or ``unknown_field`` appended (the wire readers'
    tests: what the C reader makes of it must be what the runtime makes)."""
    from hypothesis import strategies as st
    out = bytearray(raw)
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "unknown field"]))
    if how == "truncate" and out:
        del out[data.draw(st.integers(0, len(out) - 1)):]
    elif how == "flip" and out:
        out[data.draw(st.integers(0, len(out) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "insert":
        at = data.draw(st.integers(0, len(out)))
        out[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        out += unknown_field
    return bytes(out)
