"""``--workers N``: one decision process per core on one port (SO_REUSEPORT).

The supervisor (the ``maple serve`` process) compiles the pack, starts N
worker processes (spawned, never forked: gRPC does not survive a fork), and
serves the admin service, the metrics endpoint and the rules watcher.  Every
worker listens on the same decision port; the kernel spreads connections
over them.  A reload is compiled (and its rule tests run) once, in the
supervisor, by the rules manager (engine.service.reload); :class:`FanoutRules`
is its target: the compiled Bundle (sources and Program) goes to every worker
over its pipe, and each worker only loads the kernel, so all workers serve
the same version and no worker spends its GIL compiling (the supervisor's
compiles run in its compiler process, at a lower priority).  A worker that dies
is restarted with the current bundle.  SIGTERM: admin NOT_SERVING, every
worker drains (see DecisionNode.drain), exit 0 when they all did.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import shutil
import signal
import socket
import tempfile
import threading
import time

from ..service.reload import Bundle, ProcessCompiler, RulesManager
from .affinity import cpu_for
from .config import ServeConfig

log = logging.getLogger("maple.supervisor")
REPLY_TIMEOUT = 60.0


def _load(node, blob: bytes) -> None:
    bundle: Bundle = pickle.loads(blob)
    node.holder.swap(bundle.ruleset())


# ---------------------------------------------------------------- the worker
def worker_main(cfg: ServeConfig, address: str, blob, conn, index: int = 0) -> None:
    from .app import DecisionNode, keep_on_cpu, settle_heap, setup_logging, stop_event
    setup_logging(cfg.log_level)
    keep_on_cpu(cfg, index)             # (--cpu-affinity) before any thread starts
    stop = stop_event()
    node = DecisionNode(cfg, metrics=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")), report_data=False)
    try:
        node.listen(address)
    except SystemExit as err:
        conn.send(("failed", os.getpid(), str(err)))
        return
    node.start()
    if blob:
        _load(node, blob)
    settle_heap()
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
        if msg[0] == "install":
            try:
                _load(node, msg[1])
                conn.send(("ok", _version(node)))
            except Exception as err:        # the supervisor compiled it: unexpected
                log.exception("could not load the version the supervisor sent")
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
    def __init__(self, process, conn, pid: int, version: str, cpu: int | None = None):
        self.process, self.conn, self.pid, self.version = process, conn, pid, version
        self.cpu = cpu                  # the CPU it keeps to (--cpu-affinity), None: free

    def ask(self, msg) -> tuple:
        self.conn.send(msg)
        return self.reply()

    def reply(self) -> tuple:
        if not self.conn.poll(REPLY_TIMEOUT):
            raise TimeoutError(f"worker {self.pid} did not answer")
        return self.conn.recv()


class FanoutRules:
    """The worker processes; the target the rules manager installs into."""

    def __init__(self, cfg: ServeConfig, address: str):
        self.cfg = cfg
        self.address = address
        self.blob: bytes | None = None        # the pickled Bundle every worker serves
        self.version = ""
        self.workers: list[Worker] = []
        self._lock = threading.RLock()
        self._ctx = multiprocessing.get_context("spawn")
        self._signalled: set[int] = set()     # pids sent SIGTERM by terminate()
        self.on_restart = None
        self.on_install = None                # called with each ruleset installed

    # -- startup and supervision
    def start_worker(self, index: int) -> Worker:
        """Worker ``index`` (its slot: a restarted worker keeps its CPU)."""
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=worker_main, args=(self.cfg, self.address, self.blob, child, index),
                              name="maple-worker", daemon=False)
        p.start()
        child.close()
        try:
            if not parent.poll(REPLY_TIMEOUT):
                raise SystemExit("maple serve: a worker did not start")
            try:
                kind, pid, info = parent.recv()
            except EOFError:
                raise SystemExit(f"maple serve: a worker exited at startup (code {p.join(5) or p.exitcode})")
            if kind != "ready":
                raise SystemExit(info)
        except BaseException:                   # not left running, nor to block our exit (not a daemon)
            if p.is_alive():
                p.kill()
            p.join()
            raise
        cpus = self.cfg.cpus
        return Worker(p, parent, pid, info, None if cpus is None else cpu_for(cpus, index))

    def start(self, n: int) -> None:
        """Start ``n`` workers, one at a time; those started stay in
        ``workers`` if a later one fails (for :meth:`abort`)."""
        with self._lock:
            self.workers = []
            for i in range(n):
                self.workers.append(self.start_worker(i))

    def restart_dead(self) -> None:
        with self._lock:
            for i, w in enumerate(self.workers):
                if not w.process.is_alive():
                    log.error("worker %d exited with code %s; restarting it", w.pid, w.process.exitcode)
                    from .metrics import mark_process_dead
                    mark_process_dead(w.pid)
                    self.workers[i] = self.start_worker(i)
                    if self.on_restart is not None:
                        self.on_restart(self.workers[i])

    def sentinels(self) -> list:
        return [w.process.sentinel for w in self.workers]

    def signal_all(self) -> None:
        """Forward SIGTERM to every live worker (from a signal handler: no lock)."""
        for w in list(self.workers):
            if w.process.is_alive():
                os.kill(w.pid, signal.SIGTERM)

    def terminate(self) -> None:
        """SIGTERM every live worker once: each turns NOT_SERVING at once and
        drains.  (A second SIGTERM would cut its drain period short: that is
        :meth:`signal_all`, for the operator's second signal.)"""
        for w in list(self.workers):
            if w.pid not in self._signalled and w.process.is_alive():
                self._signalled.add(w.pid)
                os.kill(w.pid, signal.SIGTERM)

    def wait(self, timeout: float, wake=None) -> bool:
        """Wait for the workers to exit, killing those still running after
        ``timeout``; True when all exited 0.  ``wake``: the supervisor's
        Stop, so that a signal wakes the wait whichever thread the kernel
        gave it to, and its handler runs now (the operator's second SIGTERM
        cuts the workers' drain short) instead of when a join returns."""
        with self._lock:
            ok = True
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                alive = [w.process.sentinel for w in self.workers if w.process.is_alive()]
                if not alive:
                    break
                ready = multiprocessing.connection.wait(alive + ([wake] if wake is not None else []), remaining)
                if wake is not None and wake in ready:
                    wake.drain()
            for w in self.workers:
                w.process.join(max(0.0, deadline - time.monotonic()))
                if w.process.is_alive():
                    log.error("worker %d did not drain in time; killing it", w.pid)
                    w.process.kill()
                    w.process.join()
                ok = ok and w.process.exitcode == 0
            return ok

    def stop(self, timeout: float) -> bool:
        """SIGTERM every worker and wait for them; True when all exited 0."""
        self.terminate()
        return self.wait(timeout)

    def abort(self, timeout: float) -> None:
        """The supervisor is failing: stop every worker now (no drain
        period; in-flight calls get ``timeout``), so none serves unsupervised."""
        self.terminate()
        self.signal_all()                       # the second signal: skip the drain period
        self.wait(timeout)

    # -- the rules manager's target
    def install(self, bundle: Bundle, ruleset, expected_version: str | None = None) -> str:
        """Send the bundle to every worker (all at once: they load in
        parallel) and wait until each serves it; return the version before."""
        blob = pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            previous, self.blob, self.version = self.version, blob, bundle.version   # restarts get it too
            sent = []
            for w in self.workers:
                try:
                    w.conn.send(("install", blob))
                    sent.append(w)
                except OSError as err:
                    log.error("could not send %s to worker %d: %s", bundle.version, w.pid, err)
            for w in sent:
                try:
                    reply = w.reply()
                except (OSError, EOFError, TimeoutError) as err:
                    log.error("worker %d did not confirm %s: %s", w.pid, bundle.version, err)
                    continue
                if reply[0] == "ok":
                    w.version = reply[1]
                else:
                    log.error("worker %d could not load %s: %s", w.pid, bundle.version, reply[1])
        if self.on_install is not None:
            self.on_install(ruleset)
        return previous

    def serving(self) -> tuple[tuple[int, str], ...]:
        with self._lock:
            out = []
            for w in self.workers:
                try:
                    w.version = w.ask(("state",))[1]
                except (OSError, EOFError, TimeoutError):
                    pass
                out.append((w.pid, w.version))
            return tuple(out)


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
        from .app import ensure_free
        ensure_free(address, "decisions")
        return address, None
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((bare, 0))
    return f"{host}:{s.getsockname()[1]}", s


def shut_down(fan: FanoutRules, admin_health, watcher, rules: RulesManager, timeout: float, wake=None) -> bool:
    """After SIGTERM: the workers first (each turns NOT_SERVING at once and
    starts its drain period), then the admin service's health, then the
    watcher and the compiler (which may take a while); wait for the workers
    (woken by a signal: ``wake``, the supervisor's Stop).  True when every
    worker exited 0."""
    fan.terminate()
    if admin_health is not None:
        admin_health.enter_graceful_shutdown()
    watcher.stop()
    rules.close()
    return fan.wait(timeout, wake)


# ---------------------------------------------------------------- the metrics directory
METRICS_PREFIX = "maple-metrics-"
_METRICS_DIR = re.compile(re.escape(METRICS_PREFIX) + r"(\d+)-[A-Za-z0-9_]+$")
_METRICS_FILE = re.compile(r"_(\d+)\.db$")          # prometheus-client's <kind>_[<mode>_]<pid>.db
OWNER = "owner"


def _owner_line(pid: int) -> str:
    """Who may judge the directory's pids: the pid, and this host and pid
    namespace (a /tmp shared with another container sees pids that are not
    ours to test)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = "-"
    return f"{pid} {socket.gethostname()} {pidns}\n"


def make_metrics_dir(base: str) -> str:
    """``maple-metrics-<supervisor pid>-XXXX`` with an ``owner`` marker, so a
    later start can tell when it is stale (see remove_stale_metrics_dirs)."""
    path = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=base)
    with open(os.path.join(path, OWNER), "w") as f:
        f.write(_owner_line(os.getpid()))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                     # EPERM: someone else's process, alive
        return True
    return True


def remove_stale_metrics_dirs(base: str) -> list[str]:
    """Remove the metrics directories a killed supervisor left in ``base``
    (a clean exit removes its own).  Only a directory that is provably
    stale goes: named ``maple-metrics-<pid>-*``, ours (uid), with an owner
    marker from this host and pid namespace naming that pid, whose
    supervisor and every process with a file in it (its workers) are gone.
    Anything else (a live server's, another user's or container's, an
    older unnamed one) is left alone.  Returns the removed paths."""
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        m = _METRICS_DIR.match(name)
        if m is None:
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
                continue
            pid = int(m.group(1))
            with open(os.path.join(path, OWNER)) as f:
                if f.read() != _owner_line(pid):
                    continue
            pids = {pid} | {int(f.group(1)) for f in map(_METRICS_FILE.search, os.listdir(path)) if f}
        except (OSError, ValueError):
            continue
        if any(_alive(p) for p in pids):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, the metrics directory of a maple serve (pid %d) that is gone", path, pid)
        removed.append(path)
    return removed


def supervise(cfg: ServeConfig) -> int:
    """Every port (decisions, metrics, admin) is taken before the first
    worker starts, so a port in use stops ``maple serve`` with nothing
    serving; after that, any failure stops the workers before the
    supervisor exits (non-zero): no worker serves unsupervised."""
    from .app import (ADMIN_SERVICE, AdminServicer, TokenGuard, add_health_and_reflection, admin_handler,
                      ProfileRecheck, announce, bind, check_store_profiles, inventory_listener, log_loaded,
                      make_server, open_inventory_or_exit, open_state, set_serving, start_watcher, stop_event)
    from .inventory_servicer import INVENTORY_SERVICE, InventoryServicer, inventory_handler
    stop = stop_event()
    metrics_dir = None
    if cfg.metrics_port is not None:
        remove_stale_metrics_dirs(tempfile.gettempdir())
        metrics_dir = make_metrics_dir(tempfile.gettempdir())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir    # before the metrics module is imported
    fan = holder_socket = rules = watcher = admin_server = None
    try:
        address, holder_socket = reserve_port(cfg.listen)
        fan = FanoutRules(cfg, address)
        metrics_port = listener = None
        if cfg.metrics_port is not None:
            from . import metrics as m
            metrics_port = m.start_http(cfg.metrics_port, cfg.metrics_host)
            listener = m.ReloadMetrics()
        if cfg.decision_log and cfg.state != "off":
            from ..service.decision_log import load_key
            load_key(cfg.state)                 # made once here, read by every worker
        rules = RulesManager(cfg.rules, fan, store=open_state(cfg), compiler=ProcessCompiler(), listener=listener,
                             watch=cfg.watch)
        stock = FanoutInventory(fan, open_inventory_or_exit(cfg))
        fan.on_restart = stock.sync
        if (cfg.store or "").startswith("jsonl:"):   # the file's profiles, against each new schema
            fan.on_install = ProfileRecheck(lambda rs: check_store_profiles(cfg, rs))
        admin_address = admin_health = None
        if cfg.admin_listen != "off":           # bound now, started once the workers are
            admin_server = make_server(2, 16, cfg.max_message_bytes,
                                       [TokenGuard(cfg.admin_token)] if cfg.admin_token else [])
            admin_server.add_generic_rpc_handlers((
                admin_handler(AdminServicer(rules)),
                inventory_handler(InventoryServicer(stock.holder, stock.apply, stock.reload))))
            admin_health = add_health_and_reflection(admin_server, [ADMIN_SERVICE, INVENTORY_SERVICE])
            admin_address = bind(admin_server, cfg.admin_listen, "admin", probe=True)
        rules.load_initial()                    # before the workers start: they start serving it
        fan.start(cfg.worker_count)
        stop.on_again = fan.signal_all          # a second signal hurries the workers too
        if admin_server is not None:
            admin_server.start()
            set_serving(admin_health, [ADMIN_SERVICE, INVENTORY_SERVICE], True)
        pinned = {"worker_cpus": [[w.pid, w.cpu] for w in fan.workers]} if cfg.cpus is not None else {}
        announce(decisions=address, admin=admin_address, metrics=metrics_port, workers=len(fan.workers), **pinned)
        log_loaded(rules, f"{address} ({len(fan.workers)} workers)")
        rules.compiler.start()
        watcher = start_watcher(cfg, rules, [inventory_listener(stock.holder, stock.reload)])
        while not stop.is_set():
            # wakes on a worker's exit or on the signal (Stop's pipe); the timeout is a backstop
            multiprocessing.connection.wait([*fan.sentinels(), stop], timeout=5.0)
            if not stop.is_set():
                fan.restart_dead()
        ok = shut_down(fan, admin_health, watcher, rules, cfg.drain_seconds + cfg.grace_seconds + 10, stop)
        fan = None                              # stopped
        log.info("drained; exiting")
        return 0 if ok else 1
    except BaseException:
        if fan is not None and fan.workers:
            log.error("the supervisor is failing: stopping the workers")
            fan.abort(cfg.grace_seconds + 5)
        if watcher is not None:
            watcher.stop()
        if rules is not None:
            rules.close()
        raise
    finally:
        if admin_server is not None:
            admin_server.stop(1).wait()
        if holder_socket is not None:
            holder_socket.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
