"""Prometheus metrics of the server (prometheus-client).

With ``--workers N > 1`` every process writes to PROMETHEUS_MULTIPROC_DIR
(set by ``maple serve`` before this module is imported) and the supervisor
serves the sum over workers.  Labelled children are cached: a request pays a
dict lookup and an increment per metric, not a labels() call.
"""
from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

_MULTI = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

#: server-side latency buckets, fine below a millisecond where Decide lives
FAST_BUCKETS = (0.00001, 0.00002, 0.00003, 0.00004, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002,
                0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)

REQUESTS = Counter("maple_requests", "RPCs answered, by method and status code", ["rpc", "code"])
REQUEST_SECONDS = Histogram("maple_request_seconds",
                            "Server time per RPC (handler entered to response ready), by method and code",
                            ["rpc", "code"], buckets=FAST_BUCKETS)
DECIDE_SECONDS = Histogram("maple_decide_seconds",
                           "Decide server-side time from request parsed to response ready",
                           buckets=FAST_BUCKETS)
DECISIONS = Counter("maple_decisions", "Decisions made, by decision and the rule that decided "
                    "(the source when no rule did)", ["decision", "rule"])
DEGRADED = Counter("maple_degraded_responses", "Decide answers marked degraded")
INFLIGHT = Gauge("maple_inflight_requests", "RPCs being handled now", ["rpc"],
                 **({"multiprocess_mode": "livesum"} if _MULTI else {}))
RULESET = Gauge("maple_ruleset_info", "The ruleset version being served (1) and earlier ones (0)",
                ["version"], **({"multiprocess_mode": "max"} if _MULTI else {}))
RULESET_LOADED_AT = Gauge("maple_ruleset_loaded_timestamp_seconds", "When the current ruleset was loaded",
                          **({"multiprocess_mode": "max"} if _MULTI else {}))
RELOADS = Counter("maple_reloads", "Rule loads (startup, watcher, ReloadRules), by result (ok, error, aborted)",
                  ["result"])
RELOAD_FAILURES = Counter("maple_ruleset_reload_failures",
                          "Rule loads refused (the last good version kept serving), by failure: "
                          "compile (diagnostics), tests (rule tests fail), read (directory unreadable)",
                          ["failure"])
LAST_RELOAD_OK = Gauge("maple_ruleset_last_reload_ok",
                       "1 when the last rule load succeeded (or found nothing to change), 0 when it was refused",
                       **({"multiprocess_mode": "max"} if _MULTI else {}))
RELOAD_SECONDS = Histogram("maple_ruleset_reload_seconds",
                           "A successful reload: reading the directory, compiling, rule tests and the swap",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
ROLLBACKS = Counter("maple_ruleset_rollbacks", "RollbackRules that changed the live version")


class Recorder:
    """Per-process cache of labelled children for the hot path."""

    def __init__(self):
        self._req: dict = {}
        self._dec: dict = {}
        self._inflight: dict = {}
        self._version: str | None = None

    def request(self, rpc: str, code: str, seconds: float) -> None:
        pair = self._req.get((rpc, code))
        if pair is None:
            pair = self._req[(rpc, code)] = (REQUESTS.labels(rpc, code), REQUEST_SECONDS.labels(rpc, code))
        pair[0].inc()
        pair[1].observe(seconds)

    def inflight(self, rpc: str):
        g = self._inflight.get(rpc)
        if g is None:
            g = self._inflight[rpc] = INFLIGHT.labels(rpc)
        return g

    def decided(self, decided_by) -> None:
        for key in decided_by:
            c = self._dec.get(key)
            if c is None:
                c = self._dec[key] = DECISIONS.labels(key[0], key[1] or "(none)")
            c.inc()

    def ruleset(self, version: str, loaded_at: float) -> None:
        if self._version is not None and self._version != version:
            RULESET.labels(self._version).set(0)
        RULESET.labels(version).set(1)
        RULESET_LOADED_AT.set(loaded_at)
        self._version = version


RECORDER = Recorder()


class ReloadMetrics:
    """The rules manager's listener (engine.service.reload.ReloadListener)."""

    def reloaded(self, result: str, failure: str | None, seconds: float) -> None:
        RELOADS.labels(result).inc()
        if result == "ok":
            LAST_RELOAD_OK.set(1)
            RELOAD_SECONDS.observe(seconds)
        elif result == "error":
            LAST_RELOAD_OK.set(0)
            RELOAD_FAILURES.labels(failure or "compile").inc()

    def rolled_back(self, seconds: float) -> None:
        ROLLBACKS.inc()


def start_http(port: int, host: str = "0.0.0.0"):
    """Serve /metrics; returns the bound port.  In multiprocess mode the
    registry collects every worker's files."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = None
    if _MULTI:
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    kwargs = {"registry": registry} if registry is not None else {}
    result = start_http_server(port, addr=host, **kwargs)
    server = result[0] if isinstance(result, tuple) else None
    return server.server_port if server is not None else port


def mark_process_dead(pid: int) -> None:
    if _MULTI:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
