"""``--workers N``: one decision process per core on one port (SO_REUSEPORT).

The supervisor (the ``maple serve`` process) compiles the pack, starts N
worker processes (spawned, never forked: gRPC does not survive a fork), and
serves the admin service and the metrics endpoint.  Every worker listens on
the same decision port; the kernel spreads connections over them.  A reload
is compiled once in the supervisor and the same sources are sent to every
worker over its pipe, so all workers serve the same version.  A worker that
dies is restarted with the current sources.  SIGTERM: admin NOT_SERVING,
every worker drains (see DecisionNode.drain), exit 0 when they all did.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

from ..diagnostics import PackError
from ..ruleset import build
from ..service.errors import Aborted
from ..service.rules import ReloadResult, RulesetState, precondition_from, read_pack, validate_sources, LoadError
from ..source import SourceFile
from .config import ServeConfig

log = logging.getLogger("maple.supervisor")
REPLY_TIMEOUT = 60.0


def _payload(sources) -> list[tuple[str, str]]:
    return [(s.path, s.text) for s in sources]


def _sources(payload) -> list[SourceFile]:
    return [SourceFile(p, t) for p, t in payload]


# ---------------------------------------------------------------- the worker
def worker_main(cfg: ServeConfig, address: str, payload, conn) -> None:
    from .app import DecisionNode, setup_logging, stop_event
    setup_logging(cfg.log_level)
    stop = stop_event()
    node = DecisionNode(cfg, metrics=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
    try:
        node.listen(address)
    except SystemExit as err:
        conn.send(("failed", os.getpid(), str(err)))
        return
    node.start()
    if payload:
        node.holder.swap(build(_sources(payload)))
    conn.send(("ready", os.getpid(), _version(node)))
    threading.Thread(target=_commands, args=(node, conn, stop), daemon=True, name="maple-commands").start()
    stop.wait()
    node.drain(cfg.drain_seconds, cfg.grace_seconds, stop.hurry)


def _version(node) -> str:
    rs = node.holder.current
    return rs.version if rs is not None else ""


def _commands(node, conn, stop: threading.Event) -> None:
    """Serve the supervisor's requests until it goes away."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            stop.requested.set()            # the supervisor is gone: drain and exit
            return
        if msg[0] == "reload":
            try:
                node.holder.swap(build(_sources(msg[1])))
                conn.send(("ok", _version(node)))
            except Exception as err:        # the supervisor compiled the same sources: unexpected
                conn.send(("error", str(err)))
        elif msg[0] == "state":
            conn.send(("state", _version(node)))
        elif msg[0] == "inventory":
            try:
                result = node.inventory.update(msg[1])
                conn.send(("ok", result.version))
            except Exception as err:        # the supervisor applied the same batch: unexpected
                conn.send(("error", str(err)))
        elif msg[0] == "inventory_reload":
            try:
                conn.send(("ok", node.inventory.reload().info.version))
            except Exception as err:
                conn.send(("error", str(err)))


# ---------------------------------------------------------------- the supervisor
class Worker:
    def __init__(self, process, conn, pid: int, version: str):
        self.process, self.conn, self.pid, self.version = process, conn, pid, version

    def ask(self, msg) -> tuple:
        self.conn.send(msg)
        if not self.conn.poll(REPLY_TIMEOUT):
            raise TimeoutError(f"worker {self.pid} did not answer")
        return self.conn.recv()


class FanoutRules:
    """The admin operations for many workers (the rules controller of
    AdminServicer)."""

    def __init__(self, cfg: ServeConfig, address: str):
        self.cfg = cfg
        self.rules_dir = cfg.rules
        self.address = address
        self.current = None
        self.payload: list | None = None
        self.last_error: LoadError | None = None
        self.workers: list[Worker] = []
        self._lock = threading.RLock()
        self._ctx = multiprocessing.get_context("spawn")
        self.on_restart = None

    # -- startup and supervision
    def load_initial(self) -> None:
        try:
            sources = read_pack(self.rules_dir)
            self.current = build(sources)
            self.payload = _payload(sources)
        except PackError as err:
            self.last_error = LoadError.of(err)

    def start_worker(self) -> Worker:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=worker_main, args=(self.cfg, self.address, self.payload, child),
                              name="maple-worker", daemon=False)
        p.start()
        child.close()
        if not parent.poll(REPLY_TIMEOUT):
            p.kill()
            raise SystemExit("maple serve: a worker did not start")
        try:
            kind, pid, info = parent.recv()
        except EOFError:
            raise SystemExit(f"maple serve: a worker exited at startup (code {p.exitcode})")
        if kind != "ready":
            raise SystemExit(info)
        return Worker(p, parent, pid, info)

    def start(self, n: int) -> None:
        with self._lock:
            self.workers = [self.start_worker() for _ in range(n)]

    def restart_dead(self) -> None:
        with self._lock:
            for i, w in enumerate(self.workers):
                if not w.process.is_alive():
                    log.error("worker %d exited with code %s; restarting it", w.pid, w.process.exitcode)
                    from .metrics import mark_process_dead
                    mark_process_dead(w.pid)
                    self.workers[i] = self.start_worker()
                    if self.on_restart is not None:
                        self.on_restart(self.workers[i])

    def sentinels(self) -> list:
        return [w.process.sentinel for w in self.workers]

    def signal_all(self) -> None:
        """Forward SIGTERM to every live worker (from a signal handler: no lock)."""
        for w in list(self.workers):
            if w.process.is_alive():
                os.kill(w.pid, signal.SIGTERM)

    def stop(self, timeout: float) -> bool:
        """SIGTERM every worker and wait for them; True when all exited 0."""
        with self._lock:
            for w in self.workers:
                if w.process.is_alive():
                    os.kill(w.pid, signal.SIGTERM)
            ok = True
            deadline = time.monotonic() + timeout
            for w in self.workers:
                w.process.join(max(0.0, deadline - time.monotonic()))
                if w.process.is_alive():
                    log.error("worker %d did not drain in time; killing it", w.pid)
                    w.process.kill()
                    w.process.join()
                ok = ok and w.process.exitcode == 0
            return ok

    # -- the rules controller
    def validate(self, sources):
        return validate_sources(sources)

    def reload(self, expected_version: str | None = None) -> ReloadResult:
        with self._lock:
            previous = self.current.version if self.current is not None else ""
            if expected_version and expected_version != previous:
                raise Aborted(f"expected version {expected_version} but {previous or 'none'} is current")
            try:
                sources = read_pack(self.rules_dir)
                rs = build(sources)
            except PackError as err:
                self.last_error = LoadError.of(err)
                raise precondition_from(self.last_error) from None
            payload = _payload(sources)
            for w in self.workers:
                reply = w.ask(("reload", payload))
                if reply[0] != "ok":
                    log.error("worker %d could not load %s: %s", w.pid, rs.version, reply[1])
                w.version = reply[1] if reply[0] == "ok" else w.version
            self.current, self.payload, self.last_error = rs, payload, None
            return ReloadResult(previous, rs, previous != rs.version)

    def state(self) -> RulesetState:
        with self._lock:
            workers = []
            for w in self.workers:
                try:
                    w.version = w.ask(("state",))[1]
                except (OSError, EOFError, TimeoutError):
                    pass
                workers.append((w.pid, w.version))
            return RulesetState(self.current, self.rules_dir, self.last_error, tuple(workers))


class FanoutInventory:
    """InventoryService for many workers: the supervisor keeps its own copy
    of the store data (to validate, and to answer with the result), applies
    each change there, then sends the same batch to every worker in order.
    A worker restarted after changes is brought up to date with the
    supervisor's counts."""

    def __init__(self, fan: FanoutRules, holder):
        self.fan = fan
        self.holder = holder
        self.loaded_version = holder.inventory.version if holder.inventory is not None else 0

    def apply(self, updates):
        with self.fan._lock:
            result = self.holder.update(updates)
            if result.applied:
                self._send(("inventory", list(updates)))
            return result

    def reload(self):
        with self.fan._lock:
            summary = self.holder.reload()
            self._send(("inventory_reload",))
            self.loaded_version = summary.info.version
            return summary

    def sync(self, worker: Worker) -> None:
        """Send a (re)started worker every count changed since the files were read."""
        inv = self.holder.inventory
        if inv is None or inv.version == self.loaded_version:
            return
        from ..inventory.availability import StockUpdate
        data = inv.snapshot.data
        batch = [StockUpdate(store, sku, size, quantity=n)
                 for (sku, size), by_store in data.stock.items() for store, n in by_store.items()]
        worker.ask(("inventory", batch))

    def _send(self, msg) -> None:
        for w in self.fan.workers:
            try:
                reply = w.ask(msg)
            except (OSError, EOFError, TimeoutError) as err:
                log.error("worker %d did not take the inventory change (%s); it is restarted", w.pid, err)
                continue
            if reply[0] != "ok":
                log.error("worker %d could not apply an inventory change: %s", w.pid, reply[1])


def reserve_port(address: str) -> tuple[str, socket.socket | None]:
    """For port 0: pick a port every worker can share.  A bound (not
    listening) SO_REUSEPORT socket holds it until shutdown."""
    host, _, port = address.rpartition(":")
    if port != "0":
        return address, None
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((bare, 0))
    return f"{host}:{s.getsockname()[1]}", s


def supervise(cfg: ServeConfig) -> int:
    from .app import (ADMIN_SERVICE, AdminServicer, TokenGuard, add_health_and_reflection, admin_handler,
                      announce, bind, make_server, set_serving, stop_event)
    from ..service.inventory import InventoryHolder
    from .inventory_servicer import INVENTORY_SERVICE, InventoryServicer, inventory_handler
    stop = stop_event()
    metrics_dir = None
    if cfg.metrics_port is not None:
        metrics_dir = tempfile.mkdtemp(prefix="maple-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir    # before the metrics module is imported
    try:
        address, holder_socket = reserve_port(cfg.listen)
        fan = FanoutRules(cfg, address)
        fan.load_initial()
        if fan.last_error is not None:
            log.error("the rules do not compile; NOT_SERVING until a ReloadRules succeeds:\n%s",
                      fan.last_error.message)
        metrics_port = on_reload = None
        if cfg.metrics_port is not None:
            from . import metrics as m
            metrics_port = m.start_http(cfg.metrics_port, cfg.metrics_host)
            on_reload = lambda result: m.RELOADS.labels(result).inc()  # noqa: E731
            m.RELOADS.labels("ok" if fan.last_error is None else "error").inc()
        stock = FanoutInventory(fan, InventoryHolder.open(cfg.data_dir))
        fan.on_restart = stock.sync
        fan.start(cfg.worker_count)
        stop.on_again = fan.signal_all          # a second signal hurries the workers too
        admin_server = admin_address = admin_health = None
        if cfg.admin_listen != "off":
            admin_server = make_server(2, 16, cfg.max_message_bytes,
                                       [TokenGuard(cfg.admin_token)] if cfg.admin_token else [])
            admin_server.add_generic_rpc_handlers((
                admin_handler(AdminServicer(fan, on_reload)),
                inventory_handler(InventoryServicer(stock.holder, stock.apply, stock.reload))))
            admin_health = add_health_and_reflection(admin_server, [ADMIN_SERVICE, INVENTORY_SERVICE])
            admin_address = bind(admin_server, cfg.admin_listen, "admin")
            admin_server.start()
            set_serving(admin_health, [ADMIN_SERVICE, INVENTORY_SERVICE], True)
        announce(decisions=address, admin=admin_address, metrics=metrics_port, workers=len(fan.workers))
        log.info("%d workers serving %s on %s", len(fan.workers),
                 fan.current.version if fan.current else "nothing", address)
        while not stop.is_set():
            multiprocessing.connection.wait(fan.sentinels(), timeout=0.5)
            if not stop.is_set():
                fan.restart_dead()
        if admin_health is not None:
            admin_health.enter_graceful_shutdown()
        ok = fan.stop(cfg.drain_seconds + cfg.grace_seconds + 10)
        if admin_server is not None:
            admin_server.stop(1).wait()
        if holder_socket is not None:
            holder_socket.close()
        log.info("drained; exiting")
        return 0 if ok else 1
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
