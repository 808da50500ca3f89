"""bench.layers' probe layers do what docs/performance.md says they do."""
import array
import re

import pytest

from bench.layers import chase, chase_ring


@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_the_chase_ring_visits_every_node_once_and_comes_back(n):
    head = chase_ring(n)
    seen, node = set(), head
    for _ in range(n):
        assert id(node) not in seen
        seen.add(id(node))
        node = node[0]
    assert node is head and len(seen) == n
    assert chase(head, n) is head


def test_the_chase_ring_is_not_in_allocation_order():
    """Linked in a random order: walking it does not visit the nodes in the
    order they were made (and laid out), which the CPU would fetch ahead."""
    head = chase_ring(200)
    ids, node = [], head
    for _ in range(200):
        ids.append(id(node))
        node = node[0]
    ascending = sum(b > a for a, b in zip(ids, ids[1:]))
    assert 50 < ascending < 150



def _details(method):
    import collections
    return collections.namedtuple("Details", "method invocation_metadata")(method, ())


def test_handler_times_time_one_method_and_pass_the_others_through(tmp_path):
    """Each layer's server times its own Decide handler call by call; the
    times it writes at the end read back as p50 and p99, the warm-up's
    calls left out, and no other method is timed."""
    import grpc

    from bench.layers import HandlerTimes, read_times

    seen = []
    generic = grpc.method_handlers_generic_handler("maple.v1.DecisionService", {
        "Decide": grpc.unary_unary_rpc_method_handler(lambda req, ctx: seen.append(req) or b"answer"),
        "DecideBatch": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"batch"),
    })
    timer = HandlerTimes("/maple.v1.DecisionService/Decide")
    timed = timer.timed(generic)
    decide = timed.service(_details("/maple.v1.DecisionService/Decide"))
    for i in range(10):
        assert decide.unary_unary(i, None) == b"answer"
    assert timed.service(_details("/maple.v1.DecisionService/DecideBatch")).unary_unary(b"", None) == b"batch"
    assert timed.service(_details("/maple.v1.Other/Method")) is None
    assert seen == list(range(10)) and len(timer.times) == 10 and min(timer.times) > 0

    timer.times[:] = array.array("q", [5_000] * 4 + [1_000 * k for k in range(1, 101)])
    timer.write(tmp_path / "decide.times")
    p50, p99 = read_times(tmp_path / "decide.times", skip=4)
    assert (p50, p99) == (51.0, 100.0)
    assert read_times(tmp_path / "decide.times", skip=104) is None
    assert read_times(tmp_path / "missing.times", skip=0) is None


@pytest.mark.parametrize("ticks", ["counted", "none"])
def test_a_short_run_reports_each_layers_server_side_time(capsys, monkeypatch, ticks):
    """End to end: every layer's server writes its handler's times when it
    stops, and the table shows them (the echo, not on Maple's handler, has none).
    So short a run may see no CPU tick of a server at all (/proc counts in
    10 ms): the table must still print."""
    from bench import server_cpu
    from bench.layers import main

    if ticks == "none":                     # as when no server's CPU clock ticked during the run
        monkeypatch.setattr(server_cpu, "cpu_seconds", lambda pid: 0.0)
    assert main(["--requests", "30", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("echo", "stack", "read", "decide", "encode", "served")}
    assert rows["echo"][-2:] == ["-", "-"]
    for layer in ("stack", "read", "decide", "encode", "served"):
        p50, p99 = map(float, rows[layer][-2:])
        assert 0 < p50 <= p99
    # the served layer's Decides from the request parsed (maple_decide_seconds' span): the same calls, each
    # inside its handler's time, so each percentile at most the handler's
    [parsed] = re.findall(r"^served, from the request parsed.*p50 ([\d.]+), p99 ([\d.]+) µs$", out, re.M)
    p50, p99 = map(float, parsed)
    assert 0 < p50 <= p99 and p50 <= float(rows["served"][-2]) and p99 <= float(rows["served"][-1])
