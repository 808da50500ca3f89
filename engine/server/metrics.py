"""Prometheus metrics of the server (prometheus-client).

With ``--workers N > 1`` every process writes to PROMETHEUS_MULTIPROC_DIR
(set by ``maple serve`` before this module is imported) and the supervisor
serves the sum over workers.

The per-request metrics (requests, their latency, Decide's latency,
decisions per rule, degraded answers) are batched: a request adds to plain
counts under one lock, and :meth:`Recorder.flush` moves them into the
prometheus-client metrics -- before every scrape of this process's
registry, every ``FLUSH_SECONDS`` on a background thread (what the
supervisor of several workers reads), and when a server drains.  Recording
them one by one through prometheus-client cost ~51,000 instructions per
Decide (two histograms, five counters, each behind its own lock): a fifth
of the whole Decide.  Batched, the two calls a Decide makes (``request``
with ``decide_seconds``, ``decided``) cost a few thousand; compiled
(:class:`~engine.server._recording.Counts`, with ``app.raw_unary``'s
handler), the handler and both calls add ~4,300 instructions to a Decide
(``python -m bench.decide_cost --stages served,handled``; ~12,300 in
Python).
"""
from __future__ import annotations

import os
import threading

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from ..profiles.cache import FEED_EVENTS, READ_RESULTS
from ..profiles.sqlite_store import CACHE_KIB, memory_used
from ._recording import Counts, Timings
from ..service.model import ItemError

_MULTI = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
FLUSH_SECONDS = 0.25


class _FlushFirst:
    """Registered before every metric below: a scrape of this process's
    registry first flushes the batched counts, so it sees every request."""

    def describe(self):
        return []

    def collect(self):
        RECORDER.flush()
        return []


REGISTRY.register(_FlushFirst())

#: server-side latency buckets, fine below a millisecond where Decide lives, and
#: finest around the 100 µs its server-side p99 is held to (issue 3), where it sits
FAST_BUCKETS = (0.00001, 0.00002, 0.00003, 0.00004, 0.00005, 0.000075, 0.0001, 0.000125, 0.00015, 0.000175,
                0.0002, 0.00025, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                2.5)

REQUESTS = Counter("maple_requests", "RPCs answered, by method and status code", ["rpc", "code"])
REQUEST_SECONDS = Histogram("maple_request_seconds",
                            "Server time per RPC (handler entered to response ready), by method and code",
                            ["rpc", "code"], buckets=FAST_BUCKETS)
DECIDE_SECONDS = Histogram("maple_decide_seconds",
                           "Decide server-side time from the request parsed to the response ready "
                           "(maple_request_seconds counts from the request's bytes)",
                           buckets=FAST_BUCKETS)
DECISIONS = Counter("maple_decisions", "Decisions made, by decision and the rule that decided "
                    "(the source when no rule did)", ["decision", "rule"])
DEGRADED = Counter("maple_degraded_responses", "Decide answers marked degraded")
INFLIGHT = Gauge("maple_inflight_requests", "RPCs being handled now", ["rpc"],
                 **({"multiprocess_mode": "livesum"} if _MULTI else {}))
# live*: a worker that died (and was restarted) stops counting once the
# supervisor calls mark_process_dead; with plain "max" its last file kept
# the version it served at 1 after every later reload.
RULESET = Gauge("maple_ruleset_info", "The ruleset version being served (1)",
                ["version"], **({"multiprocess_mode": "livemax"} if _MULTI else {}))
RULESET_LOADED_AT = Gauge("maple_ruleset_loaded_timestamp_seconds", "When the current ruleset was loaded",
                          **({"multiprocess_mode": "livemax"} if _MULTI else {}))
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
PROFILE_READS = Counter("maple_profile_cache_reads",
                        "Profile reads for decisions, by where the answer came from: hit (a fresh cache entry, "
                        "the store not asked), miss (read from the store), stale (the store down: an expired "
                        "entry or nothing, degraded), prefetched (ids a DecideBatch read ahead in one call; its "
                        "items then count as hits)", ["result"])
PROFILE_FEED = Counter("maple_profile_cache_feed",
                       "The profile cache following the store's change feed: synced (the feed read), failed "
                       "(a read that failed: cached profiles fall back to their ttl), missed (the feed had been "
                       "pruned past this cache, or held more than one read returns), dropped (cached profiles "
                       "changed in the store since, by another process or coming back from this one's writes)",
                       ["event"])
ROLLBACKS = Counter("maple_ruleset_rollbacks", "RollbackRules that changed the live version")
# what a worker holds (docs/service.md, "What a worker holds"): set at each flush
_LIVESUM = {"multiprocess_mode": "livesum"} if _MULTI else {}
PROFILE_CACHE_ENTRIES = Gauge("maple_profile_cache_entries",
                              "Profiles the workers' caches hold (each worker at most --profile-cache-size)",
                              **_LIVESUM)
PROFILE_CACHE_BYTES = Gauge("maple_profile_cache_bytes",
                            "The memory of the cached profiles as --profile-cache-mib counts it (each worker at "
                            "most that): their bytes, ~4x while held decoded, and ~300 bytes each of bookkeeping",
                            **_LIVESUM)
SQLITE_MEMORY = Gauge("maple_sqlite_memory_bytes",
                      f"Memory SQLite holds in the workers (page caches of at most {CACHE_KIB // 1024} MiB a "
                      "connection, three a worker with a SQLite store; schemas; statements)", **_LIVESUM)


class Recorder:
    """Per process: the hot path's metrics, batched (see the module doc).

    ``requests``/``request_seconds``/``decide_seconds``/``decisions``/
    ``degraded`` are the prometheus-client metrics it flushes into (the
    module's by default; tests pass their own)."""

    def __init__(self, requests=None, request_seconds=None, decide_seconds=None, decisions=None, degraded=None,
                 buckets=FAST_BUCKETS, flush_seconds: float = FLUSH_SECONDS):
        self._metrics = (requests or REQUESTS, request_seconds or REQUEST_SECONDS,
                         decide_seconds or DECIDE_SECONDS, decisions or DECISIONS, degraded or DEGRADED)
        self._bounds = tuple(buckets) + (float("inf"),)
        self._lock = threading.Lock()       # the flusher's start, the profile cache's reads
        # the hot path, compiled (engine/server/_recording.pyx): (rpc, code) -> Timings, Decide's
        # Timings, a Decide's decided_by -> count (split at the flush), degraded answers
        self._counts = Counts(self._bounds, on_first=self._start_flusher, item_error=ItemError)
        self.request = self._counts.request
        self.decided = self._counts.decided
        self.decided_results = self._counts.decided_results
        self._children: dict = {}           # labelled children, made once
        self._inflight: dict = {}
        self._version: str | None = None
        self._flush_seconds = flush_seconds
        self._flusher: threading.Thread | None = None
        # a CachedStore's counts it exports (profile_reads): name -> [the list, what was
        # flushed of it, the labels of its items, the counter]
        self._cache_counts: dict[str, list] = {}
        self._read_counter = PROFILE_READS
        self._feed_counter = PROFILE_FEED
        self._held = None                   # the profile cache whose size is exported (profile_reads)

    # -- the hot path: request(rpc, code, seconds, decide_seconds=-1.0), decided(decided_by, degraded=False) and
    # decided_results(results) are Counts' methods (set in __init__; see engine/server/_recording.pyx)

    def profile_reads(self, reads: list, counter=None, feed: list | None = None, feed_counter=None,
                      held=None) -> None:
        """Export a profile cache's read counts (``CachedStore.reads``, which
        it keeps itself: nothing is recorded per request here) as
        ``maple_profile_cache_reads_total``, and its change feed's
        (``CachedStore.feed``) as ``maple_profile_cache_feed_total``, what
        they grew by at each flush.  Every label is shown from the start,
        at 0.  ``held``: the cache itself (its ``len`` and ``held_bytes``),
        whose size each flush sets ``maple_profile_cache_entries`` and
        ``maple_profile_cache_bytes`` to, and SQLite's memory
        ``maple_sqlite_memory_bytes``."""
        self._held = held
        if self._cache_counts:
            self.flush()                    # what the previous source counted is exported first
        if counter is not None:
            self._read_counter = counter
        if feed_counter is not None:
            self._feed_counter = feed_counter
        sources = {"reads": (reads, READ_RESULTS, self._read_counter)}
        if feed is not None:
            sources["feed"] = (feed, FEED_EVENTS, self._feed_counter)
        with self._lock:
            self._cache_counts = {name: [counts, list(counts), labels, c]
                                  for name, (counts, labels, c) in sources.items()}
        for _counts, labels, c in sources.values():
            for label in labels:
                self._child(("p", id(c), label), lambda: c.labels(label))

    # -- into prometheus-client
    def flush(self) -> None:
        """Move what was recorded since the last flush into the metrics."""
        requests, decide, answers, degraded = self._counts.take()
        grown = []
        with self._lock:
            for source in self._cache_counts.values():
                counts, flushed, labels, c = source
                now = list(counts)
                grown += [(c, label, a - b) for label, a, b in zip(labels, now, flushed) if a > b]
                source[1] = now
        decisions: dict = {}
        for decided_by, times in answers.items():
            for key in decided_by:
                decisions[key] = decisions.get(key, 0) + times
        counter, histogram, decide_histogram, decision_counter, degraded_counter = self._metrics
        for key, t in requests.items():
            c, h = self._child(("r",) + key, lambda: (counter.labels(*key), histogram.labels(*key)))
            c.inc(sum(t.buckets))
            _add(h, t)
        if decide.sum or any(decide.buckets):
            _add(decide_histogram, decide)
        for key, count in decisions.items():
            self._child(("d",) + key, lambda: decision_counter.labels(key[0], key[1] or "(none)")).inc(count)
        if degraded:
            degraded_counter.inc(degraded)
        for c, label, grew in grown:
            self._child(("p", id(c), label), lambda: c.labels(label)).inc(grew)
        held = self._held
        if held is not None:
            PROFILE_CACHE_ENTRIES.set(len(held))
            PROFILE_CACHE_BYTES.set(held.held_bytes)
            sqlite_bytes = memory_used()
            if sqlite_bytes is not None:
                SQLITE_MEMORY.set(sqlite_bytes)

    def _child(self, key, make):
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = make()
        return c

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_forever, name="maple-metrics-flush", daemon=True)
        self._flusher.start()

    def _flush_forever(self) -> None:
        wake = threading.Event()
        while not wake.wait(self._flush_seconds):
            self.flush()

    # -- the rest (not per request)
    def inflight(self, rpc: str):
        g = self._inflight.get(rpc)
        if g is None:
            g = self._inflight[rpc] = INFLIGHT.labels(rpc)
        return g

    def ruleset(self, version: str, loaded_at: float) -> None:
        """The version now served.  The one before goes from the export (one
        series a version would grow with every reload: a year of hourly
        reloads, ~9,000 series); with several workers its gauge file keeps
        it at 0, which the endpoint leaves out (:class:`_ServedVersions`)."""
        if self._version is not None and self._version != version:
            if _MULTI:
                RULESET.labels(self._version).set(0)
            else:
                RULESET.remove(self._version)
        RULESET.labels(version).set(1)
        RULESET_LOADED_AT.set(loaded_at)
        self._version = version


def _add(histogram, t: Timings) -> None:
    """What ``histogram.observe`` would have done for each observation in
    ``t`` (prometheus-client keeps a sum and per-bucket counts; the tests
    hold the exposition equal to observing one by one)."""
    histogram._sum.inc(t.sum)
    for i, count in enumerate(t.buckets):
        if count:
            histogram._buckets[i].inc(count)


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
    registry collects every worker's files.  A port that cannot be used
    (taken, or an address this host does not have) stops ``maple serve``
    with the address, as the gRPC ports do."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = None
    if _MULTI:
        registry = CollectorRegistry()
        registry.register(_ServedVersions())
    kwargs = {"registry": registry} if registry is not None else {}
    try:
        result = start_http_server(port, addr=host, **kwargs)
    except (OSError, OverflowError, ValueError) as err:       # taken, no such address, out of range
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = getattr(err, "strerror", None) or str(err)
        raise SystemExit(f"maple serve: cannot listen on {where} for metrics: {why}") from None
    server = result[0] if isinstance(result, tuple) else None
    return server.server_port if server is not None else port


class _ServedVersions:
    """The workers' files as prometheus-client's MultiProcessCollector
    reads them, less the ``maple_ruleset_info`` versions no live worker
    serves (value 0: a gauge file cannot forget a label), so the export
    holds the version served (two while a reload reaches the workers)."""

    def __init__(self, path: str | None = None):
        from prometheus_client import multiprocess
        self._inner = multiprocess.MultiProcessCollector(None, path)

    def collect(self):
        for metric in self._inner.collect():
            if metric.name == "maple_ruleset_info":
                metric.samples = [s for s in metric.samples if s.value != 0]
            yield metric


def mark_process_dead(pid: int) -> None:
    """A worker exited: drop its live* gauges (in-flight requests, the
    ruleset it served) so they stop counting; its counters and histograms
    stay (prometheus-client keeps them: totals must not go down)."""
    if _MULTI:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
