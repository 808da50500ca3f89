"""engine.server.metrics: the batched per-request metrics expose exactly
what observing each request through prometheus-client would have."""
from __future__ import annotations

import math
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from engine.server import metrics as m


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
        recorder.request(rpc, code, took, rpc == "Decide")     # as maple serve's handler records them
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
