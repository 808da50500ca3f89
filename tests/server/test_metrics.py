"""engine.server.metrics: the batched per-request metrics expose exactly
what observing each request through prometheus-client would have."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from engine.server import metrics as m

from .conftest import ROOT


def metric_set(registry: CollectorRegistry, prefix: str):
    return (Counter(f"{prefix}_requests", "r", ["rpc", "code"], registry=registry),
            Histogram(f"{prefix}_request_seconds", "rs", ["rpc", "code"], buckets=m.FAST_BUCKETS, registry=registry),
            Histogram(f"{prefix}_decide_seconds", "d", buckets=m.FAST_BUCKETS, registry=registry),
            Counter(f"{prefix}_decisions", "dc", ["decision", "rule"], registry=registry),
            Counter(f"{prefix}_degraded", "dg", registry=registry))


def exposition(registry: CollectorRegistry, prefix: str) -> dict[str, float]:
    """Sample -> value, this prefix's metrics (creation times left out)."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(prefix) and "_created" not in line:
            sample, value = line.rsplit(" ", 1)
            out[sample.replace(prefix, "X", 1)] = float(value)
    return out


seconds = st.one_of(st.sampled_from(m.FAST_BUCKETS), st.floats(0, 3, allow_nan=False), st.just(0.0))
requests = st.lists(st.tuples(st.sampled_from(["Decide", "DecideBatch", "RecordEvents"]),
                              st.sampled_from(["OK", "INVALID_ARGUMENT"]), seconds,
                              st.lists(st.tuples(st.sampled_from(["homepage_category", "nearby_stores"]),
                                                 st.sampled_from(["vip", "on_the_move", None])), max_size=4),
                              st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None)
@given(requests=requests, flush_every=st.integers(1, 50))
def test_batched_metrics_expose_what_one_by_one_observation_would(requests, flush_every):
    registry = CollectorRegistry()
    direct, batched = metric_set(registry, "direct"), metric_set(registry, "batched")
    recorder = m.Recorder(*batched)
    for i, (rpc, code, took, decided_by, degraded) in enumerate(requests):
        direct[0].labels(rpc, code).inc()
        direct[1].labels(rpc, code).observe(took)
        recorder.request(rpc, code, took, took if rpc == "Decide" else -1.0)   # as maple serve's handler does
        if rpc == "Decide":
            direct[2].observe(took)
            for d, rule in decided_by:
                direct[3].labels(d, rule or "(none)").inc()
            if degraded:
                direct[4].inc()
            recorder.decided(tuple(decided_by), degraded)
        if i % flush_every == 0:
            recorder.flush()
    recorder.flush()
    a, b = exposition(registry, "direct"), exposition(registry, "batched")
    assert a.keys() == b.keys()
    for sample, value in a.items():
        if "_sum" in sample:           # added in another order: equal up to rounding
            assert math.isclose(b[sample], value, rel_tol=1e-12, abs_tol=1e-12), sample
        else:                          # counts: exactly
            assert b[sample] == value, sample


def test_counts_from_many_threads_all_arrive():
    registry = CollectorRegistry()
    batched = metric_set(registry, "t")
    recorder = m.Recorder(*batched)
    go = threading.Barrier(4)

    def work():
        go.wait()
        for _ in range(2000):
            recorder.request("Decide", "OK", 0.0001)
            recorder.decided((("homepage_category", "vip"),))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        recorder.flush()                      # flushes racing the recording lose nothing either
    for t in threads:
        t.join()
    recorder.flush()
    assert batched[0].labels("Decide", "OK")._value.get() == 8000
    assert batched[3].labels("homepage_category", "vip")._value.get() == 8000


def test_a_scrape_of_the_process_registry_flushes_first():
    m.RECORDER.request("GetRuleset", "NOT_FOUND", 0.00002)
    m.RECORDER.decided((("scrape_test_decision", "scrape_test_rule"),))
    text = generate_latest().decode()         # the default registry, as /metrics serves it
    assert 'maple_requests_total{code="NOT_FOUND",rpc="GetRuleset"} 1.0' in text
    assert 'maple_decisions_total{decision="scrape_test_decision",rule="scrape_test_rule"} 1.0' in text


def test_a_metrics_port_that_cannot_be_used_is_a_clean_exit_naming_it():
    import socket

    import pytest
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"^maple serve: cannot listen on 127.0.0.1:{port} for metrics: "):
            m.start_http(port, "127.0.0.1")
    for port in (70000, -5):                  # config refuses these first; no traceback if not
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port} for metrics"):
            m.start_http(port, "127.0.0.1")


# ---------------------------------------------------------------- several workers (PROMETHEUS_MULTIPROC_DIR)
def _in_multiproc(metrics_dir, code: str, *args: str) -> str:
    """Run ``code`` in a fresh process that has engine.server.metrics in
    multiprocess mode (as a `--workers N` worker or supervisor); its stdout."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", "import os, sys\nfrom engine.server import metrics as m\n" + code,
                           *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


WORKER = "for v in sys.argv[1:]: m.RECORDER.ruleset(v, 1.0)\nprint(os.getpid())"
SCRAPE = """from prometheus_client import CollectorRegistry, generate_latest
for pid in sys.argv[1:]: m.mark_process_dead(int(pid))
registry = CollectorRegistry()
registry.register(m._ServedVersions())          # what maple serve's metrics endpoint registers
print(generate_latest(registry).decode())"""


def ruleset_info(text: str) -> dict[str, float]:
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("maple_ruleset_info{")}


def test_a_dead_workers_ruleset_stops_counting_once_it_is_marked_dead(tmp_path):
    """A worker SIGKILLed while serving v1 leaves its gauge file behind; the
    supervisor restarts it and marks it dead; after a reload to v2 only v2
    is exported (with multiprocess_mode "max" the dead file kept v1 at 1)."""
    dead = _in_multiproc(tmp_path, WORKER, "v1").strip()        # killed while serving v1
    _in_multiproc(tmp_path, WORKER, "v1", "v2")                 # the other worker, reloaded
    _in_multiproc(tmp_path, WORKER, "v1", "v2")                 # the restarted one, reloaded
    assert ruleset_info(_in_multiproc(tmp_path, SCRAPE)) == {"v1": 1.0, "v2": 1.0}   # not yet marked dead
    assert ruleset_info(_in_multiproc(tmp_path, SCRAPE, dead)) == {"v2": 1.0}


def test_live_workers_on_one_version_report_it_once(tmp_path):
    _in_multiproc(tmp_path, WORKER, "v1", "v2")
    _in_multiproc(tmp_path, WORKER, "v1", "v2")
    assert ruleset_info(_in_multiproc(tmp_path, SCRAPE)) == {"v2": 1.0}


def test_versions_no_worker_serves_are_left_out_however_many_reloads(tmp_path):
    """One series a version would grow the export with every reload; the
    gauge files keep each old version at 0, and the endpoint leaves those
    out: what is exported is what some live worker serves."""
    versions = [f"v{i}" for i in range(200)]
    _in_multiproc(tmp_path, WORKER, *versions)
    _in_multiproc(tmp_path, WORKER, *versions[:150])          # a worker the last reloads have not reached yet
    assert ruleset_info(_in_multiproc(tmp_path, SCRAPE)) == {"v149": 1.0, "v199": 1.0}


def test_one_process_exports_only_the_version_it_serves(tmp_path):
    """Without PROMETHEUS_MULTIPROC_DIR (maple serve --workers 1) the old
    version's series is removed at each reload."""
    code = ("from prometheus_client import REGISTRY, generate_latest\n"
            "for i in range(100): m.RECORDER.ruleset(f'v{i}', 1.0)\n"
            "print(generate_latest(REGISTRY).decode())")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", "import os, sys\nfrom engine.server import metrics as m\n" + code],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert ruleset_info(done.stdout) == {"v99": 1.0}


# ---------------------------------------------------------------- stale metrics directories
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _metrics_dir(base, pid: int, suffix: str, owner: str | None = None, files=()):
    d = base / f"maple-metrics-{pid}-{suffix}"
    d.mkdir()
    if owner is not None:
        (d / "owner").write_text(owner)
    for name in files:
        (d / name).write_bytes(b"")
    return d


def test_only_provably_stale_metrics_dirs_are_removed(tmp_path):
    from engine.server.workers import _owner_line, remove_stale_metrics_dirs
    dead, me = _dead_pid(), os.getpid()
    stale = [_metrics_dir(tmp_path, dead, "a1", _owner_line(dead), [f"counter_{dead}.db", f"gauge_livemax_{dead}.db"]),
             _metrics_dir(tmp_path, dead, "a2", _owner_line(dead))]
    kept = [
        _metrics_dir(tmp_path, me, "b", _owner_line(me)),                                   # a live supervisor
        _metrics_dir(tmp_path, dead, "c", _owner_line(dead), [f"gauge_livemax_{me}.db"]),  # a worker still draining
        _metrics_dir(tmp_path, dead, "d"),                                                 # no marker
        _metrics_dir(tmp_path, dead, "e", _owner_line(dead).replace("pid:", "other:")),    # another pid namespace
        _metrics_dir(tmp_path, dead, "f", _owner_line(dead).replace(" ", " elsewhere-", 1)),  # another host
    ]
    (tmp_path / "maple-metrics-k2j4x").mkdir()                       # unnamed (older servers): unknown owner
    kept.append(tmp_path / "maple-metrics-k2j4x")
    removed = remove_stale_metrics_dirs(str(tmp_path))
    assert sorted(removed) == sorted(str(d) for d in stale)
    assert all(d.is_dir() for d in kept) and not any(d.exists() for d in stale)


def test_a_new_metrics_dir_names_its_supervisor_and_is_not_stale(tmp_path):
    from engine.server.workers import make_metrics_dir, remove_stale_metrics_dirs
    d = make_metrics_dir(str(tmp_path))
    assert os.path.basename(d).startswith(f"maple-metrics-{os.getpid()}-")
    assert remove_stale_metrics_dirs(str(tmp_path)) == [] and os.path.isdir(d)


answers = st.lists(st.one_of(
    st.tuples(st.lists(st.tuples(st.sampled_from(["homepage_category", "nearby_stores"]),
                                 st.sampled_from(["vip", "on_the_move", None])), max_size=4), st.booleans()),
    st.none()), max_size=30)                     # None: a batch item that failed (an ItemError)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(answers, max_size=5))
def test_a_batch_counted_in_one_call_is_each_result_counted_alone(batches):
    """DecideBatch's metrics (``decided_results``, one call a batch) equal
    ``decided`` called per result, the items that failed left out."""
    from engine.service.errors import DeadlineExceeded
    from engine.service.model import DecideResult, ItemError, ProfileStatus
    registry = CollectorRegistry()
    one, many = m.Recorder(*metric_set(registry, "one")), m.Recorder(*metric_set(registry, "many"))
    for batch in batches:
        results = [ItemError(DeadlineExceeded("late")) if a is None else
                   DecideResult("v1", 0.0, ProfileStatus.SNAPSHOT, decided_by=tuple(a[0]), degraded=a[1])
                   for a in batch]
        for r in results:
            if not isinstance(r, ItemError):
                one.decided(r.decided_by, r.degraded)
        many.decided_results(results)
    one.flush()
    many.flush()
    assert exposition(registry, "one") == exposition(registry, "many")


def test_decide_batch_counts_through_the_servicer_in_one_call():
    from engine.server.app import _metrics_on_result
    from engine.server.servicers import DecisionServicer
    from engine.service.model import DecideResult, ProfileStatus
    calls = []

    class Decider:
        def decide_batch(self, items, deadline, encode_raw=None):
            return "v1", [DecideResult("v1", 0.0, ProfileStatus.SNAPSHOT,
                                       decided_by=(("homepage_category", "vip"),))] * len(items)

    class Metrics:
        class RECORDER:
            decided = staticmethod(lambda *a: calls.append(("one", a)))
            decided_results = staticmethod(lambda results: calls.append(("many", len(results))))

    class Context:
        def time_remaining(self):
            return None
    DecisionServicer(Decider(), _metrics_on_result(Metrics))._decide_batch([object()] * 3, Context())
    assert calls == [("many", 3)]


def test_a_profile_cache_s_reads_are_exported_as_they_grow():
    """Recorder.profile_reads: maple_profile_cache_reads_total by result is
    what CachedStore.reads grew by, each result shown from the start."""
    from engine.profiles.cache import READ_RESULTS
    registry = CollectorRegistry()
    recorder = m.Recorder(*metric_set(registry, "r"))
    counter = Counter("p_reads", "p", ["result"], registry=registry)
    reads = [5, 1, 0, 0]                        # counted before the metrics were wired: not exported
    recorder.profile_reads(reads, counter)
    assert exposition(registry, "p_") == {f'X{"reads_total"}{{result="{r}"}}': 0.0 for r in READ_RESULTS}
    reads[0] += 3
    reads[3] += 2
    recorder.flush()
    reads[1] += 1
    recorder.flush()
    recorder.flush()
    assert exposition(registry, "p_") == {'Xreads_total{result="hit"}': 3.0, 'Xreads_total{result="miss"}': 1.0,
                                          'Xreads_total{result="stale"}': 0.0,
                                          'Xreads_total{result="prefetched"}': 2.0}


def test_a_profile_cache_s_change_feed_is_exported_beside_its_reads(tmp_path):
    """maple_profile_cache_feed_total by event is what CachedStore.feed grew
    by, through a real sync of a SQLite store's feed."""
    from engine.profiles import CachedStore, open_store
    from engine.profiles.cache import FEED_EVENTS
    registry = CollectorRegistry()
    recorder = m.Recorder(*metric_set(registry, "f"))
    reads_counter = Counter("f_reads", "r", ["result"], registry=registry)
    feed_counter = Counter("f_feed", "f", ["event"], registry=registry)
    with open_store(f"sqlite://{tmp_path / 'p.db'}") as writer, open_store(f"sqlite://{writer.path}") as store:
        cache = CachedStore(store, ttl=60)
        recorder.profile_reads(cache.reads, reads_counter, feed=cache.feed, feed_counter=feed_counter)
        assert exposition(registry, "f_feed") == {f'X_total{{event="{e}"}}': 0.0 for e in FEED_EVENTS}
        writer.apply([{"event_id": "e1", "type": "page_view", "channel": "web", "timestamp": writer.clock(),
                       "customer_id": "A"}])
        cache.sync()
        cache.read("A")
        writer.apply([{"event_id": "e2", "type": "page_view", "channel": "web", "timestamp": writer.clock(),
                       "customer_id": "A"}])
        cache.sync()
        recorder.flush()
    assert exposition(registry, "f_feed") == {'X_total{event="synced"}': 2.0, 'X_total{event="failed"}': 0.0,
                                              'X_total{event="missed"}': 0.0, 'X_total{event="dropped"}': 1.0}
    assert exposition(registry, "f_reads")['X_total{result="miss"}'] == 1.0


def test_the_compiled_handler_records_each_outcome_s_status_and_time():
    """engine.server._recording.RawUnary (app.raw_unary's handler): the
    status gRPC will send, the time from the bytes to the answer, and an
    answered Decide's time from the request parsed (issue 3's span of
    maple_decide_seconds), for an answer, a method that set a status and
    raised, one that just raised (INTERNAL), and bytes the parser refused
    (the unparsed path's answer)."""
    import grpc
    import pytest
    from engine.server._recording import RawUnary
    recorded = []

    class Context:
        status = None

        def code(self):
            return self.status

    def method(request, context):
        if request == "boom":
            raise RuntimeError("a bug")
        if request == "refused":
            context.status = grpc.StatusCode.INVALID_ARGUMENT
            raise RuntimeError("aborted")
        return b"answer to " + request.encode()

    parsed_at = []

    def parse(raw):
        sum(range(200_000))                           # a parse far longer than the rest of the call
        parsed_at.append(time.perf_counter())
        if raw == b"garbage":
            raise ValueError("not a message")
        return raw.decode()

    unparsed = lambda raw, err, context: "parsed after all" if raw == b"garbage" else None  # noqa: E731
    handle = RawUnary("Decide", parse, method, lambda *a: recorded.append(a), True, unparsed, grpc.StatusCode)
    before = time.perf_counter()
    assert handle(b"hi", Context()) == b"answer to hi"
    after = time.perf_counter()
    assert 0 <= recorded[0][2] <= after - before      # the handler's interval lies inside this one
    # the Decide's own time starts after the parse (the handler's clock is perf_counter's)
    assert 0 <= recorded[0][3] <= after - parsed_at[0]
    assert recorded[0][3] < recorded[0][2]
    assert handle(b"garbage", Context()) == b"answer to parsed after all"
    for raw in (b"refused", b"boom"):
        with pytest.raises(RuntimeError):
            handle(raw, Context())
    assert [(rpc, code, decide >= 0) for rpc, code, _, decide in recorded] == [
        ("Decide", "OK", True), ("Decide", "OK", True), ("Decide", "INVALID_ARGUMENT", False),
        ("Decide", "INTERNAL", False)]
    assert [decide for _, _, _, decide in recorded[2:]] == [-1.0, -1.0]
    assert all(type(seconds) is float and seconds >= 0 for _, _, seconds, _ in recorded)
    others = RawUnary("GetRuleset", parse, method, lambda *a: recorded.append(a), False, unparsed, grpc.StatusCode)
    others(b"hi", Context())
    assert recorded[-1][1:2] == ("OK",) and recorded[-1][3] == -1.0    # not a Decide: no Decide time
    quiet = RawUnary("Decide", parse, method, None, True, unparsed, grpc.StatusCode)   # no recorder: no metrics
    assert quiet(b"hi", Context()) == b"answer to hi"


def test_the_flusher_starts_once_at_the_first_request():
    recorder = m.Recorder(*metric_set(CollectorRegistry(), "f"), flush_seconds=3600)
    assert recorder._flusher is None
    recorder.decided((("homepage_category", "vip"),))       # answers alone do not start it
    assert recorder._flusher is None
    recorder.request("Decide", "OK", 0.0001, 0.0001)
    flusher = recorder._flusher
    assert flusher is not None and flusher.is_alive()
    recorder.request("Decide", "OK", 0.0001, 0.0001)
    assert recorder._flusher is flusher


def test_bounds_without_infinity_still_give_every_value_a_bucket():
    from engine.server._recording import Counts
    counts = Counts([0.001, 0.01])          # +Inf added: a value past the last bound has a bucket
    counts.request("Decide", "OK", 5.0, 0.005)
    requests, decide, _, _ = counts.take()
    assert requests[("Decide", "OK")].buckets == [0, 0, 1]
    assert decide.buckets == [0, 1, 0]      # its own time, in its own bucket


def test_a_second_cache_s_reads_take_over_after_the_first_s_are_exported():
    registry = CollectorRegistry()
    recorder = m.Recorder(*metric_set(registry, "w"))
    first, second = Counter("w1_reads", "a", ["result"], registry=registry), Counter(
        "w2_reads", "b", ["result"], registry=registry)
    old, new = [0, 0, 0, 0], [7, 0, 0, 0]
    recorder.profile_reads(old, first)
    old[1] += 2                                 # counted before the rewiring: exported to the first
    recorder.profile_reads(new, second)
    new[0] += 1
    recorder.flush()
    assert exposition(registry, "w1_")['Xreads_total{result="miss"}'] == 2.0
    assert exposition(registry, "w2_")['Xreads_total{result="hit"}'] == 1.0
