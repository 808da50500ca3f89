"""Bootstrap: gRPC servers, health, reflection, metrics, graceful shutdown.

One process (``--workers 1``) serves decisions, admin and metrics itself.
With more workers, :mod:`engine.server.workers` runs a supervisor that
serves admin and metrics and starts one decision process per worker, all
listening on the same port with SO_REUSEPORT.  Either way a decision
process is a :class:`DecisionNode`.

Handlers take the request as raw bytes and parse it themselves, so a
payload that is not a valid message is INVALID_ARGUMENT (grpc's own
deserializer would answer INTERNAL), and so server time is measured from
the request's bytes to the response ready (``maple_request_seconds``;
a Decide's ``maple_decide_seconds`` from the request parsed).
"""
from __future__ import annotations

import errno
import gc
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..service.decide import Decider
from ..service.events import EventRecorder
from ..service.inventory import InventoryHolder, InventoryStores, reload_logged
from ..service.reload import LocalTarget, ProcessCompiler, RulesManager, compiler_sched_from_env
from ..service.rules import RulesetHolder
from ..service.errors import ServiceError
from ..service.sources import open_profile_source
from .config import ServeConfig
from .pb.maple.v1 import admin_pb2 as apb
from .pb.maple.v1 import decision_pb2 as pb
from .pb.maple.v1 import events_pb2 as epb
from .inventory_servicer import INVENTORY_SERVICE, InventoryServicer, inventory_handler
from .events import EventsServicer
from . import nesting, wire
from ._recording import RawUnary
from .servicers import AdminServicer, DecisionServicer
from .status import abort as abort_with

log = logging.getLogger("maple.server")

DECISION_SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name
ADMIN_SERVICE = apb.DESCRIPTOR.services_by_name["AdminService"].full_name


# ---------------------------------------------------------------- grpc plumbing
def grpc_options(max_message_bytes: int = 4 * 1024 * 1024, reuseport: bool = True) -> list[tuple[str, object]]:
    """The server's channel options; the bench echo server uses the same.
    ``reuseport``: several processes may listen on the port (``--workers``);
    otherwise a port already in use is an error, not a silent share with
    whatever else listens there (a second ``maple serve``)."""
    return [
        ("grpc.so_reuseport", 1 if reuseport else 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # keepalive: ping idle clients every 60 s, drop them after 20 s silence;
        # accept client pings at most every 10 s (more is a strike, 2 strikes close)
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", 15 * 60_000),
    ]


def make_server(threads: int, max_concurrent_rpcs: int | None, max_message_bytes: int,
                interceptors=(), reuseport: bool = False) -> grpc.Server:
    return grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="maple-rpc"),
                       options=grpc_options(max_message_bytes, reuseport),
                       maximum_concurrent_rpcs=max_concurrent_rpcs, interceptors=list(interceptors))


def raw_unary(rpc: str, request_cls, response_cls, method, recorder=None, decide: bool = False, parse=None,
              on_parse_error=None):
    """A unary handler that parses the request itself (INVALID_ARGUMENT on
    garbage) and records the RPC's status and server time.  With
    ``response_cls`` None, ``method`` returns the response's wire bytes
    (engine.server.wire) and gRPC sends them as they are.  ``parse`` reads
    the request's bytes for ``method`` (default ``request_cls.FromString``;
    it raises on bytes that are not a ``request_cls``).  ``on_parse_error``
    (raw, error), called only when ``parse`` raised, may say more than "not
    a valid message": it raises a ServiceError to answer with, or returns
    the request for ``method`` after all, or None for the generic answer
    (engine.server.nesting).  ``decide``: an answered call's time from the
    request parsed to the response ready is also recorded as a Decide's
    (maple_decide_seconds; maple_request_seconds counts from its bytes)."""
    parse = parse or request_cls.FromString
    what = request_cls.DESCRIPTOR.full_name
    # compiled (engine/server/_recording.pyx): parse, call, and record the status and the time
    handle = RawUnary(rpc, parse, method, recorder.request if recorder is not None else None, decide,
                      lambda raw, err, context: _unparsed(raw, err, on_parse_error, context, what), grpc.StatusCode)

    # response_cls None: the method returns the response's wire bytes itself
    serialize = response_cls.SerializeToString if response_cls is not None else None
    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=None, response_serializer=serialize)


def _unparsed(raw: bytes, err: Exception, on_parse_error, context, what: str):
    """The error path of ``raw_unary``'s parse: ``on_parse_error``'s request,
    or the call aborted with its ServiceError or as not a valid ``what``."""
    if on_parse_error is not None:
        try:
            request = on_parse_error(raw, err)
        except ServiceError as bad:
            abort_with(context, bad)
        except Exception:
            log.exception("on_parse_error failed on a %s the runtime could not parse", what)
        else:
            if request is not None:
                return request
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {what}")


ENCODERS = ("wire", "runtime")


def encoder_from_env() -> str:
    """MAPLE_ENCODER: ``wire`` (the default: answers written by
    engine.server.wire) or ``runtime`` (built as protobuf messages by
    convert.result_to_pb and serialized by the protobuf runtime: the same
    bytes' meaning, slower; a baseline for benchmarks and a way around a
    suspected encoder bug without a deploy)."""
    name = os.environ.get("MAPLE_ENCODER", "wire") or "wire"
    if name not in ENCODERS:
        raise SystemExit(f"maple serve: MAPLE_ENCODER={name!r}: use one of {', '.join(ENCODERS)}")
    return name


def decision_handler(servicer: DecisionServicer, recorder=None, encoder: str = "wire") -> grpc.GenericRpcHandler:
    if encoder == "runtime":      # messages both ways, through the protobuf runtime
        decide, batch = (pb.DecideResponse, servicer.Decide), (pb.DecideBatchResponse, servicer.DecideBatch)
        parse_decide = parse_batch = None
    else:                         # requests read and answers written by engine.server.wire
        decide, batch = (None, servicer.decide_bytes), (None, servicer.decide_batch_bytes)
        parse_decide, parse_batch = wire.decide_request, wire.batch_request
    return grpc.method_handlers_generic_handler(DECISION_SERVICE, {
        "Decide": raw_unary("Decide", pb.DecideRequest, *decide, recorder, True, parse_decide,
                            nesting.decide_parse_error),
        "DecideBatch": raw_unary("DecideBatch", pb.DecideBatchRequest, *batch, recorder, parse=parse_batch,
                                 on_parse_error=nesting.batch_parse_error),
    })


def events_handler(servicer: EventsServicer, recorder=None, encoder: str = "wire") -> grpc.GenericRpcHandler:
    """DecisionService.RecordEvents: a second handler for the same service
    (gRPC asks each generic handler in turn for a method).  The request is
    read and the answer written by engine.server.wire / events.encode_result
    (C) unless ``encoder`` is ``runtime``."""
    if encoder == "runtime":
        parse, response, method = None, epb.RecordEventsResponse, servicer.RecordEvents
    else:
        parse, response, method = wire.record_events_request, None, servicer.record_events_bytes
    return grpc.method_handlers_generic_handler(DECISION_SERVICE, {
        "RecordEvents": raw_unary("RecordEvents", epb.RecordEventsRequest, response, method, recorder,
                                  parse=parse, on_parse_error=nesting.events_parse_error)})


def admin_handler(servicer: AdminServicer, recorder=None) -> grpc.GenericRpcHandler:
    methods = [("ValidateRules", apb.ValidateRulesRequest, apb.ValidateRulesResponse),
               ("ReloadRules", apb.ReloadRulesRequest, apb.ReloadRulesResponse),
               ("GetRuleset", apb.GetRulesetRequest, apb.GetRulesetResponse),
               ("RollbackRules", apb.RollbackRulesRequest, apb.RollbackRulesResponse),
               ("GetRulesetSources", apb.GetRulesetSourcesRequest, apb.GetRulesetSourcesResponse)]
    return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {
        name: raw_unary(name, req, resp, getattr(servicer, name), recorder) for name, req, resp in methods})


class TokenGuard(grpc.ServerInterceptor):
    """AdminService and InventoryService calls need ``authorization: Bearer
    <token>``; a refusal names the service that was called."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}"
        self._deny = {f"/{full}/": _denial(full.rsplit(".", 1)[-1]) for full in (ADMIN_SERVICE, INVENTORY_SERVICE)}

    def intercept_service(self, continuation, details):
        method = details.method
        deny = self._deny.get(method[:method.rfind("/") + 1])
        if deny is not None:
            md = dict(details.invocation_metadata or ())
            if md.get("authorization") != self._expected:
                return deny
        return continuation(details)


def _denial(service: str):
    def deny(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{service} needs authorization: Bearer <token>")
    return grpc.unary_unary_rpc_method_handler(deny)


def add_health_and_reflection(server: grpc.Server, services: list[str]) -> health.HealthServicer:
    """Standard grpc.health.v1 (every service NOT_SERVING to start) and
    server reflection listing ``services``."""
    h = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    for name in ["", *services]:
        h.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return h


def set_serving(h: health.HealthServicer, services: list[str], serving: bool) -> None:
    """The overall status ("") turns SERVING last and NOT_SERVING first, so a
    client that saw it SERVING finds every service SERVING too."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ([*services, ""] if serving else ["", *services]):
        h.set(name, status)


def bind(server: grpc.Server, address: str, what: str, probe: bool = False) -> str:
    """Listen on ``address``; ``probe``: try the address first with a plain
    socket (``ensure_free``), so that a port in use is refused with the
    reason rather than with gRPC's own log line and its generic error (for
    the admin server: the decision port is probed when it is reserved)."""
    if probe:
        ensure_free(address, what)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise SystemExit(f"maple serve: cannot listen on {address} for {what}: {err}")
    if not port:
        raise SystemExit(f"maple serve: cannot listen on {address} for {what}")
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"


# why a bind failed, in the words a reader of ``maple serve: cannot listen on ...`` needs
_BIND_HINTS = {errno.EADDRINUSE: "another maple serve, or another program, listens there",
               errno.EADDRNOTAVAIL: "no network interface of this host has that address",
               errno.EACCES: "a port below 1024 needs root or CAP_NET_BIND_SERVICE"}


def ensure_free(address: str, what: str) -> None:
    """SystemExit unless nothing listens on ``address`` (or holds it for
    sharing): the workers' SO_REUSEPORT would otherwise join whatever does
    (a second ``maple serve`` started by mistake) and split the calls."""
    import socket
    host, _, port = address.rpartition(":")
    bare = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(bare, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as err:
        raise SystemExit(f"maple serve: cannot listen on {address} for {what}: {err}")
    family, _, _, _, sockaddr = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as gRPC does: TIME_WAIT is no owner
        probe.bind(sockaddr)
    except OSError as err:
        hint = _BIND_HINTS.get(err.errno)
        raise SystemExit(f"maple serve: cannot listen on {address} for {what}: {err.strerror}"
                         + (f" ({hint})" if hint else "")) from None
    finally:
        probe.close()


# ---------------------------------------------------------------- one decision process
class DecisionNode:
    """The decision service of one process: ruleset holder, decider,
    gRPC server with health and reflection, metrics hooks."""

    def __init__(self, cfg: ServeConfig, metrics: bool, report_data: bool = True):
        self.cfg = cfg
        self.holder = RulesetHolder()
        self.inventory = open_inventory_or_exit(cfg, report_data)   # a worker's supervisor reports
        self.profiles = open_store_or_exit(cfg, self.inventory.known_stores())
        self.decider = Decider(self.holder, self.profiles, InventoryStores(self.inventory))
        recorder = on_result = None
        if metrics:
            from . import metrics as m
            recorder = m.RECORDER
            on_result = _metrics_on_result(m)
            self.holder.on_swap(lambda rs: m.RECORDER.ruleset(rs.version, rs.loaded_at))
            cache = getattr(self.profiles, "cache", None)
            if getattr(cache, "reads", None) is not None:       # a store behind a cache (sqlite:, redis:)
                m.RECORDER.profile_reads(cache.reads, feed=getattr(cache, "feed", None), held=cache)
        self.servicer = DecisionServicer(self.decider, on_result)
        self.recorder = recorder
        # workers share the decision port (SO_REUSEPORT; the supervisor checked it was free)
        self.server = make_server(cfg.threads, cfg.max_concurrent_rpcs, cfg.max_message_bytes,
                                  reuseport=cfg.worker_count > 1)
        self.events = EventsServicer(EventRecorder.for_source(self.profiles))
        encoder = encoder_from_env()
        self.server.add_generic_rpc_handlers((decision_handler(self.servicer, recorder, encoder),
                                              events_handler(self.events, recorder, encoder)))
        self.health = add_health_and_reflection(self.server, [DECISION_SERVICE])
        self.holder.on_swap(lambda rs: set_serving(self.health, [DECISION_SERVICE], True))
        self.decision_log = None
        if cfg.decision_log:
            from ..service.decision_log import open_decision_log
            self.decision_log = self.decider.decision_log = open_decision_log(
                cfg.decision_log, cfg.decision_log_rate, None if cfg.state == "off" else cfg.state)
        self.address = ""
        self.pruner = None

    def listen(self, address: str) -> str:
        # a worker's port was reserved by its supervisor; a single process probes its own
        self.address = bind(self.server, address, "decisions", probe=self.cfg.worker_count == 1)
        return self.address

    def start(self) -> None:
        self.server.start()
        from ..service.retention import pruner_for
        self.pruner = pruner_for(self.profiles)          # the dedupe rows of old events (SQLite)
        if self.pruner is not None:
            self.pruner.start()

    def drain(self, drain_seconds: float, grace_seconds: float, hurry=None) -> None:
        """NOT_SERVING at once; keep answering for drain_seconds (so balancers
        see it; a second signal cuts it short); then refuse new calls and let
        in-flight ones finish within grace_seconds."""
        self.health.enter_graceful_shutdown()
        if drain_seconds > 0:
            (hurry or threading.Event()).wait(drain_seconds)
        self.server.stop(grace_seconds).wait()
        if self.pruner is not None:
            self.pruner.stop()
        if self.recorder is not None:
            self.recorder.flush()                  # the last requests' counts (metrics are batched)
        if self.decision_log is not None:
            self.decision_log.close()
        close = getattr(self.profiles, "close", None)
        if close is not None:
            close()


def open_inventory_or_exit(cfg: ServeConfig, report: bool = True) -> InventoryHolder:
    """The store data of ``--data``; a file the loader rejects as a whole (a
    header without a required column, an unreadable file) stops the server
    at start with every such problem named: there is no earlier data to
    keep serving, and serving none would hide it.  (A reload of bad files
    later keeps the data being served.)"""
    from ..inventory import InventoryLoadError
    try:
        return InventoryHolder.open(cfg.data_dir, report=report)
    except InventoryLoadError as err:
        problems = "\n".join(f"  {e}" for e in err.errors)
        raise SystemExit(f"maple serve: --data {cfg.data_dir}: the store data cannot be loaded "
                         f"(`maple check` shows the same):\n{problems}")


def open_store_or_exit(cfg: ServeConfig, known_stores=None):
    """This process's own profile source (every worker opens its own).
    ``known_stores``: the store ids events may name (the store data's)."""
    try:
        profiles = open_profile_source(cfg.store, cache_ttl=cfg.profile_cache_ttl,
                                       cache_size=cfg.profile_cache_size, cache_mib=cfg.profile_cache_mib,
                                       known_stores=known_stores)
    except (ValueError, OSError) as err:
        raise SystemExit(f"maple serve: --store: {err}")
    if cfg.profile_cache_feed == "on" and hasattr(profiles, "start_sync"):
        profiles.start_sync()           # (SQLite, Redis; a store without a change feed keeps the ttl)
    log.info("profiles from %s", profiles.describe())
    return profiles


#: at most this many profile problems are logged one by one, then a count
PROFILE_PROBLEMS_SHOWN = 20


def log_profile_problems(profiles, ruleset, shown: int = PROFILE_PROBLEMS_SHOWN) -> int:
    """``--store jsonl:PATH``: one WARNING per attribute of a profile in
    the file that the served pack's ``schema profile`` does not declare or
    would read as missing (PATH:LINE, the attribute, a suggestion: the rule
    tests' checks), the first ``shown`` of them and then a count.  The
    profiles are served as they are.  Other sources (a store folds events
    into its profiles, which the import validates) are not checked.
    Returns how many problems there are."""
    check = getattr(profiles, "schema_problems", None)
    if check is None or ruleset is None:
        return 0
    problems = check(ruleset)
    for problem in problems[:shown]:
        log.warning("%s", problem)
    if len(problems) > shown:
        log.warning("%s: %d more profile problems not shown (%d in all); the rules read such attributes as "
                    "missing, and the profiles are served as they are",
                    getattr(profiles, "path", None) or profiles.describe(), len(problems) - shown, len(problems))
    return len(problems)


def profile_schema(ruleset):
    """The pack's ``schema profile`` (None: it declares none)."""
    return (getattr(getattr(ruleset, "checked", None), "schema", None) or {}).get("profile")


class ProfileRecheck:
    """``--store jsonl:PATH`` serves the file's profiles as they are, so
    they are checked against the pack's ``schema profile`` when the first
    ruleset is installed and again after each reload that changes that
    schema (a renamed attribute now reads as missing in every profile that
    still spells it the old way).  Called with each installed ruleset;
    ``check(ruleset)`` runs on a thread of its own, which it returns (None:
    no check)."""

    def __init__(self, check):
        self.check = check
        self._schema = self._unset = object()

    def __call__(self, ruleset) -> threading.Thread | None:
        schema = profile_schema(ruleset)
        if schema is not self._unset and schema == self._schema:
            return None
        self._schema = schema
        t = threading.Thread(target=self.check, args=(ruleset,), daemon=True,
                             name="maple-profile-check")      # ~0.1 ms a profile: not on the way to serving
        t.start()
        return t


def check_store_profiles(cfg: ServeConfig, ruleset) -> None:
    """The supervisor of ``--workers N`` opens no profile source (each
    worker opens its own): it reads a ``jsonl:`` file once more, only to
    report its profiles' problems once rather than once per worker.  A file
    that cannot be read is left to the workers to report."""
    if not (cfg.store or "").startswith("jsonl:"):
        return
    try:
        profiles = open_profile_source(cfg.store)
    except (ValueError, OSError):
        return
    log_profile_problems(profiles, ruleset)


def _metrics_on_result(m):
    """The servicer's ``on_result``: a Decide's answers counted in the
    metrics; ``.many(results)`` counts a DecideBatch's in one call (one
    lock, no call per item; ItemErrors are skipped); ``.decided(decided_by,
    degraded)`` counts an answer written without a DecideResult
    (``_decide.answer`` with ``wire.encode_raw``)."""
    recorder = m.RECORDER

    def on_result(result):
        recorder.decided(result.decided_by, result.degraded)
    on_result.many = recorder.decided_results
    on_result.decided = recorder.decided
    return on_result


GC_GEN0 = 20_000


def settle_heap() -> None:
    """Once the first ruleset and the inventory are loaded.  They and the
    imported modules live as long as the process: ``gc.freeze()`` takes them
    out of the collector's walks, so a full collection on the request path
    no longer visits them; a larger first generation makes collections rarer
    on a path that allocates a few hundred short-lived objects per decision
    (none of them in cycles).  A ruleset replaced later is collected as
    usual; the frozen first one stays in memory (a few MB at most)."""
    if os.environ.get("MAPLE_GC_FREEZE", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, 20, 20)


# ---------------------------------------------------------------- signals
class _Flag:
    """A ``threading.Event`` whose ``wait`` also wakes when a signal came
    to any thread of the process (see :class:`Stop`); ``set`` from any
    thread wakes it too."""

    def __init__(self, stop: "Stop"):
        self._event = threading.Event()
        self._stop = stop

    def set(self) -> None:
        self._event.set()
        self._stop.poke()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait_for(self._event, timeout)


class Stop:
    """SIGTERM/SIGINT: the first sets ``requested`` (drain); a second one
    sets ``hurry`` (cut the drain period short) and calls ``on_again``.

    The kernel hands a signal sent to the process to any of its threads
    that does not block it, gRPC's C threads included.  Python runs the
    handler in the main thread, but only when that thread next runs
    bytecode: a main thread asleep in a lock (``threading.Event.wait``)
    stays asleep when another thread received the signal, and a worker
    idling in ``stop.wait()`` ignored SIGTERM until something else woke it
    (the two-worker drain test caught it twice in a day of runs).  So the
    C-level handler writes to a pipe (``signal.set_wakeup_fd``) from
    whichever thread got the signal, and the waits here select() on that
    pipe: returning to Python runs the pending handler.  Create it in the
    main thread."""

    def __init__(self):
        # readable once a signal came: a select() (the supervisor's wait on
        # its workers, the waits below) wakes at once
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.requested = _Flag(self)
        self.hurry = _Flag(self)
        self.on_again = None
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _handler(self, signum, frame):
        if self.requested.is_set():
            log.info("received %s again: ending the drain period", signal.Signals(signum).name)
            self.hurry.set()
            if self.on_again is not None:
                self.on_again()
            return
        log.info("received %s: draining", signal.Signals(signum).name)
        self.requested.set()

    def poke(self) -> None:
        """Wake whoever waits (a flag was set, maybe from another thread)."""
        try:
            os.write(self._wake_w, b"!")
        except OSError:                         # full: it is readable anyway
            pass

    def wait_for(self, event: threading.Event, timeout: float | None = None) -> bool:
        """Until ``event`` is set, or ``timeout``: asleep in select() on the
        pipe, which any thread's signal (and every flag set) writes to."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not event.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            select.select([self._wake_r], [], [], remaining)
            self.drain()
        return True

    def drain(self) -> None:
        """Empty the pipe after a select() on it (:meth:`fileno`) returned:
        a signal's handler still pending runs on the way back to Python."""
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def fileno(self) -> int:
        """For select() and multiprocessing.connection.wait: readable once a signal came."""
        return self._wake_r

    def is_set(self) -> bool:
        return self.requested.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.requested.wait(timeout)


def stop_event() -> Stop:
    return Stop()


def announce(**fields) -> None:
    """One JSON line on stdout once listening (tools and tests read it)."""
    print(json.dumps({"event": "listening", "pid": os.getpid(), **fields}), flush=True)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


# ---------------------------------------------------------------- serve
def serve(cfg: ServeConfig) -> int:
    setup_logging(cfg.log_level)
    if encoder_from_env() != "wire":               # checked before any worker starts
        log.warning("MAPLE_ENCODER=runtime: answers are built by the protobuf runtime (slower)")
    compiler_sched_from_env()                      # likewise, before the compiler process reads it
    qos = None
    if cfg.cpu_latency_us is not None:             # machine-wide while held: the workers need no copy
        from .cpu_latency import CpuLatency, CpuLatencyError
        try:
            qos = CpuLatency(cfg.cpu_latency_us).open()
        except CpuLatencyError as err:
            print(f"maple serve: --cpu-latency-us {cfg.cpu_latency_us} (MAPLE_CPU_LATENCY_US): {err.strerror}",
                  file=sys.stderr)
            return 1
        log.info("holding the CPU wake-up latency limit at %d µs while serving (%s)", cfg.cpu_latency_us,
                 qos.device)
    try:
        if cfg.worker_count > 1:
            from .workers import supervise
            return supervise(cfg)
        return serve_single(cfg)
    finally:
        if qos is not None:
            qos.close()


def open_state(cfg: ServeConfig):
    """The version store of ``--state`` (None for ``--state off``)."""
    if cfg.state == "off":
        return None
    state, rules = os.path.abspath(cfg.state), os.path.abspath(cfg.rules)
    if state == rules or state.startswith(rules.rstrip(os.sep) + os.sep):
        raise SystemExit(f"maple serve: the state directory {cfg.state} is inside the rules directory "
                         f"{cfg.rules}: the versions it keeps would be read as rules; use --state elsewhere")
    from ..versions import VersionStore
    try:
        return VersionStore(cfg.state)
    except OSError as err:
        raise SystemExit(f"maple serve: cannot use the state directory {cfg.state}: {err.strerror or err}")


def start_watcher(cfg: ServeConfig, rules: RulesManager, data_listeners=()):
    """Watch ``--rules`` (unless ``--watch off``): edits reload in the
    background; changes under the store-data directory (``--data``, else
    RULES/data/; watched too when it lies outside the rules) go to
    ``data_listeners`` (each called with the changed paths)."""
    from .watch import PackWatcher
    watcher = PackWatcher(cfg.rules, rules.request_reload, mode=cfg.watch, debounce_ms=cfg.watch_debounce_ms,
                          data_dir=cfg.data_dir or None,
                          ignore_paths=[p for p in (cfg.state, cfg.decision_log) if p and p != "off"])
    for listener in data_listeners:
        watcher.on_data_change(listener)
    watcher.start()
    return watcher


def inventory_listener(holder, reload):
    """A watcher data listener: when the store-data files (``holder``'s)
    differ from those last read, ``reload()`` them (as ReloadInventory
    does).  Files that cannot be used keep the current data."""
    from ..service.errors import ServiceError

    def on_change(paths) -> None:
        if holder.inventory is None or not holder.changed_on_disk():
            return
        try:
            reload_logged(holder, reload, "watch")
        except ServiceError:                    # logged: the current data keeps serving
            pass
    return on_change


def log_loaded(rules: RulesManager, where: str) -> None:
    rs = rules.current
    if rs is None:
        log.error("no ruleset is loaded: NOT_SERVING until the rules in %s load (fix them: the watcher "
                  "reloads them, or call ReloadRules)", rules.rules_dir)
    else:
        log.info("serving ruleset %s (%s) from %s on %s (%s)", rs.version, rules.origin, rules.rules_dir, where,
                 ", ".join(f"{v} {k}" for k, v in rs.counts.items()))


def keep_on_cpu(cfg: ServeConfig, index: int) -> tuple[tuple[int, ...] | None, int | None]:
    """``--cpu-affinity``: keep this decision process (worker ``index``) on
    its CPU; call it before the process starts its threads.  Returns the
    CPUs it could run on before (for the children it starts, such as the
    rules compiler, which should not share its CPU) and that CPU; (None,
    None) when off.  See engine.server.affinity."""
    cpus = cfg.cpus
    if cpus is None:
        return None, None
    from .affinity import allowed, cpu_for, pin
    before, cpu = allowed(), cpu_for(cpus, index)
    pin(cpu)
    log.info("decisions kept on CPU %d (--cpu-affinity %s)", cpu, cfg.cpu_affinity)
    return before, cpu


def serve_single(cfg: ServeConfig) -> int:
    """Decisions, admin and metrics in this one process."""
    free, cpu = keep_on_cpu(cfg, 0)
    stop = stop_event()
    metrics_port = listener = None
    if cfg.metrics_port is not None:
        from . import metrics as m
        metrics_port = m.start_http(cfg.metrics_port, cfg.metrics_host)
        listener = m.ReloadMetrics()
    node = DecisionNode(cfg, metrics=metrics_port is not None)
    address = node.listen(cfg.listen)
    # reloads compile in a child process: this one answers decisions
    rules = RulesManager(cfg.rules, LocalTarget(node.holder), store=open_state(cfg), compiler=ProcessCompiler(free),
                         listener=listener, watch=cfg.watch)
    admin_server = admin_address = admin_health = None
    if cfg.admin_listen != "off":
        admin_server = make_server(2, 16, cfg.max_message_bytes,
                                   [TokenGuard(cfg.admin_token)] if cfg.admin_token else [])
        admin_server.add_generic_rpc_handlers((admin_handler(AdminServicer(rules)),
                                               inventory_handler(InventoryServicer(node.inventory))))
        admin_health = add_health_and_reflection(admin_server, [ADMIN_SERVICE, INVENTORY_SERVICE])
        admin_address = bind(admin_server, cfg.admin_listen, "admin", probe=True)
        admin_server.start()
        set_serving(admin_health, [ADMIN_SERVICE, INVENTORY_SERVICE], True)
    node.start()
    announce(decisions=address, admin=admin_address, metrics=metrics_port, workers=1,
             **({"worker_cpus": [[os.getpid(), cpu]]} if cpu is not None else {}))
    if hasattr(node.profiles, "schema_problems"):            # a jsonl: file, served as it is
        node.holder.on_swap(ProfileRecheck(lambda rs: log_profile_problems(node.profiles, rs)))
    rules.load_initial()
    settle_heap()
    log_loaded(rules, address)
    rules.compiler.start()
    watcher = start_watcher(cfg, rules, [inventory_listener(node.inventory, node.inventory.reload)])
    stop.wait()
    node.health.enter_graceful_shutdown()          # NOT_SERVING first; the watcher can take its time
    if admin_health is not None:
        admin_health.enter_graceful_shutdown()
    watcher.stop()
    node.drain(cfg.drain_seconds, cfg.grace_seconds, stop.hurry)
    if admin_server is not None:
        admin_server.stop(1).wait()
    rules.close()
    log.info("drained; exiting")
    return 0
