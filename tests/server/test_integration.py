"""A real `maple serve` process: health, reflection, Decide, errors, reload,
metrics, SIGTERM drain, several workers on one port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

from engine.server.pb.maple.v1 import admin_pb2 as apb
from engine.server.pb.maple.v1 import admin_pb2_grpc
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.pb.maple.v1 import decision_pb2_grpc

from .conftest import NOW, ROOT, RUNNER, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def runner_request(**kw) -> pb.DecideRequest:
    req = pb.DecideRequest(customer_id="c-runner", context=pb.RequestContext(
        channel=pb.CHANNEL_WEB, category="shoes", sku="sku-1", timestamp=timestamp_pb2.Timestamp(seconds=NOW)), **kw)
    req.profile.update(RUNNER)
    return req


def test_health_and_reflection_on_both_ports(server):
    assert server.health() == SERVING
    assert server.health("maple.v1.DecisionService") == SERVING
    assert server.health(channel=server.admin_channel) == SERVING
    services = set(ProtoReflectionDescriptorDatabase(server.channel).get_services())
    assert {"maple.v1.DecisionService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    assert "maple.v1.AdminService" not in services             # admin stays off the decision port
    assert "maple.v1.AdminService" in ProtoReflectionDescriptorDatabase(server.admin_channel).get_services()


def test_decide_and_batch_over_the_wire(server):
    stub = decision_pb2_grpc.DecisionServiceStub(server.channel)
    resp = stub.Decide(runner_request(), timeout=10)
    assert resp.homepage_category.category == "running-shoes"
    assert resp.prefill_size.size == "42"
    assert resp.decisions["banner"].value.string_value == "vip"
    assert resp.profile_status == pb.PROFILE_STATUS_SNAPSHOT
    assert resp.customer_id == "c-runner"
    batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[runner_request(), pb.DecideRequest(decisions=["x"])]),
                             timeout=10)
    assert [r.WhichOneof("result") for r in batch.results] == ["response", "error"]
    assert batch.results[0].response.prefill_size.size == "42"
    assert batch.results[0].response.customer_id == "c-runner"


def test_errors_have_proper_codes_and_details(server):
    stub = decision_pb2_grpc.DecisionServiceStub(server.channel)
    bad = pb.DecideRequest(context=pb.RequestContext(location=pb.GeoPoint(lat=float("inf"), lon=0)))
    try:
        stub.Decide(bad, timeout=10)
        raise AssertionError("expected INVALID_ARGUMENT")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(err)
        br = error_details_pb2.BadRequest()
        status.details[0].Unpack(br)
        assert br.field_violations[0].field == "context.location.lat"
    raw = server.channel.unary_unary("/maple.v1.DecisionService/Decide")
    try:
        raw(b"\x0a\xff\xff\xff\xff", timeout=10)
        raise AssertionError("expected INVALID_ARGUMENT")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid maple.v1.DecideRequest" in err.details()
    huge = pb.DecideRequest(customer_id="x" * (5 * 1024 * 1024))
    try:
        stub.Decide(huge, timeout=10)
        raise AssertionError("expected RESOURCE_EXHAUSTED")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.health() == SERVING


def test_metrics_count_requests_decisions_and_version(server):
    stub = decision_pb2_grpc.DecisionServiceStub(server.channel)
    stub.Decide(runner_request(), timeout=10)
    text = server.metrics()
    assert 'maple_requests_total{code="OK",rpc="Decide"}' in text
    assert 'maple_decisions_total{decision="prefill_size",rule="size_memory"}' in text
    assert "maple_decide_seconds_bucket" in text
    assert 'maple_ruleset_info{version="' in text
    assert 'maple_reloads_total{result="ok"}' in text


def test_reload_broken_pack_keeps_serving_last_good_version(pack, start_server):
    s = start_server(pack)
    s.wait_health()
    admin = admin_pb2_grpc.AdminServiceStub(s.admin_channel)
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    v1 = admin.GetRuleset(apb.GetRulesetRequest(), timeout=10).ruleset.version
    text = (pack / "decisions.rules").read_text()
    line = text.count("\n") + 2
    (pack / "decisions.rules").write_text(text + "\nrule typo when profile.lifecylce == new then banner = \"x\"\n")
    try:
        admin.ReloadRules(apb.ReloadRulesRequest(), timeout=30)
        raise AssertionError("expected FAILED_PRECONDITION")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert f"decisions.rules:{line}:24: error[E202]" in err.details()
        pf = error_details_pb2.PreconditionFailure()
        rpc_status.from_call(err).details[0].Unpack(pf)
        assert pf.violations[0].type == "E202" and pf.violations[0].subject.endswith(f"decisions.rules:{line}:24")
    state = admin.GetRuleset(apb.GetRulesetRequest(), timeout=10)
    assert state.ruleset.version == v1
    assert (state.last_error.diagnostics[0].line, state.last_error.diagnostics[0].column) == (line, 24)
    assert stub.Decide(runner_request(), timeout=10).ruleset_version == v1
    assert s.health() == SERVING
    # fix it: the new version serves; a reload expecting the old one loses
    (pack / "decisions.rules").write_text((pack / "decisions.rules").read_text().replace("lifecylce", "lifecycle"))
    r = admin.ReloadRules(apb.ReloadRulesRequest(expected_version=v1), timeout=30)
    assert r.changed and r.previous_version == v1
    assert stub.Decide(runner_request(), timeout=10).ruleset_version == r.ruleset.version != v1
    try:
        admin.ReloadRules(apb.ReloadRulesRequest(expected_version=v1), timeout=30)
        raise AssertionError("expected ABORTED")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.ABORTED
    assert s.terminate() == 0


def test_broken_pack_at_start_is_not_serving_until_a_reload(pack, start_server):
    good = (pack / "decisions.rules").read_text()
    (pack / "decisions.rules").write_text("decision d: string default 1\n")
    s = start_server(pack, "--admin-token", "s3cret")
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    s.wait_health(NOT_SERVING)
    try:
        stub.Decide(pb.DecideRequest(), timeout=10)
        raise AssertionError("expected FAILED_PRECONDITION")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    admin = admin_pb2_grpc.AdminServiceStub(s.admin_channel)
    (pack / "decisions.rules").write_text(good)
    try:
        admin.ReloadRules(apb.ReloadRulesRequest(), timeout=30)
        raise AssertionError("expected UNAUTHENTICATED")
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
        assert err.details() == "AdminService needs authorization: Bearer <token>"
    admin.ReloadRules(apb.ReloadRulesRequest(), timeout=30, metadata=[("authorization", "Bearer s3cret")])
    s.wait_health(SERVING)
    assert stub.Decide(runner_request(), timeout=10).prefill_size.size == "42"
    assert s.terminate() == 0


def test_sigterm_drains_in_flight_calls_and_exits_0(pack, start_server):
    s = start_server(pack, "--drain-seconds", "30")
    s.wait_health()
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    in_flight = stub.DecideBatch.future(pb.DecideBatchRequest(requests=[runner_request(explain=True)] * 200),
                                        timeout=60)
    s.proc.send_signal(signal.SIGTERM)
    s.wait_health(NOT_SERVING)                       # at once, while still answering
    assert stub.Decide(runner_request(), timeout=10).prefill_size.size == "42"
    assert len(in_flight.result().results) == 200
    s.proc.send_signal(signal.SIGTERM)              # a second signal cuts the 30 s drain period short
    assert s.proc.wait(60) == 0


def test_two_workers_share_the_port_and_reload_together(pack, start_server):
    s = start_server(pack, "--workers", "2")
    s.wait_health()
    admin = admin_pb2_grpc.AdminServiceStub(s.admin_channel)
    state = admin.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset
    assert len(state.workers) == 2 and {w.version for w in state.workers} == {state.version}
    (pack / "decisions.rules").write_text((pack / "decisions.rules").read_text() + "\nconst more = 2\n")
    r = admin.ReloadRules(apb.ReloadRulesRequest(expected_version=state.version), timeout=60)
    assert {w.version for w in r.ruleset.workers} == {r.ruleset.version} != {state.version}
    for _ in range(4):                               # new connections land on either worker
        with grpc.insecure_channel(s.address) as ch:
            v = decision_pb2_grpc.DecisionServiceStub(ch).Decide(runner_request(), timeout=10).ruleset_version
            assert v == r.ruleset.version
    # workers flush their batched request metrics every FLUSH_SECONDS
    until(lambda: 'maple_requests_total{code="OK",rpc="Decide"} 4.0' in s.metrics(),
          "the workers' Decide counts to reach /metrics")
    assert s.terminate() == 0


def test_a_killed_and_restarted_worker_does_not_keep_its_version_live_in_metrics(pack, start_server):
    """SIGKILL a worker: the supervisor restarts it; after a reload
    maple_ruleset_info holds the new version alone, at 1 (the dead worker's
    gauge file used to keep the old version at 1 too)."""
    s = start_server(pack, "--workers", "2")
    s.wait_health()
    admin = admin_pb2_grpc.AdminServiceStub(s.admin_channel)
    state = admin.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset
    pids = {w.pid for w in state.workers}
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)

    def restarted():
        now = {w.pid for w in admin.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset.workers}
        return len(now) == 2 and victim not in now
    until(restarted, "the supervisor to restart the killed worker")
    (pack / "decisions.rules").write_text((pack / "decisions.rules").read_text() + "\nconst more = 2\n")
    r = admin.ReloadRules(apb.ReloadRulesRequest(expected_version=state.version), timeout=60)
    live = {line.split('"')[1]: line.rsplit(" ", 1)[1] for line in s.metrics().splitlines()
            if line.startswith("maple_ruleset_info{")}
    assert live == {r.ruleset.version: "1.0"}
    assert s.terminate() == 0


def test_a_killed_supervisors_metrics_dir_is_removed_by_the_next_start(pack, start_server, tmp_path):
    """SIGKILL leaves the supervisor's maple-metrics-<pid>-* directory
    behind; once its workers are gone too, the next start removes it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    first = start_server(pack, "--workers", "2", env=env)
    first.wait_health()
    workers = [w.pid for w in admin_pb2_grpc.AdminServiceStub(first.admin_channel).GetRuleset(
        apb.GetRulesetRequest(), timeout=30).ruleset.workers]
    [left] = [p.name for p in tmp.iterdir() if p.name.startswith("maple-metrics-")]
    assert left.startswith(f"maple-metrics-{first.proc.pid}-")
    first.proc.kill()
    first.proc.wait()
    until(lambda: not any(_alive(p) for p in workers), "the orphaned workers to drain and exit")
    assert (tmp / left).is_dir()
    second = start_server(pack, "--workers", "2", env=env)
    now = sorted(p.name for p in tmp.iterdir() if p.name.startswith("maple-metrics-"))
    assert len(now) == 1 and now[0].startswith(f"maple-metrics-{second.proc.pid}-")
    assert second.terminate() == 0
    assert f"removed {tmp / left}, the metrics directory of a maple serve (pid {first.proc.pid})" in second.stderr()
    assert not any(p.name.startswith("maple-metrics-") for p in tmp.iterdir())     # a clean exit removes its own


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers, port", [("1", "decisions"), ("2", "decisions"), ("1", "admin")])
def test_a_second_server_on_a_port_in_use_refuses_to_start(server, module_pack, workers, port):
    """SO_REUSEPORT lets a server's own workers share the decision port; it
    must not let a second `maple serve` (started by mistake) join a running
    one's decision or admin port and split the calls between them: the
    second one exits, naming the address."""
    taken = server.address if port == "decisions" else server.admin
    listen = ["--listen", taken, "--admin-listen", "127.0.0.1:0"] if port == "decisions" else \
             ["--listen", "127.0.0.1:0", "--admin-listen", taken]
    with tempfile.TemporaryDirectory() as state:
        done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(module_pack),
                               *listen, "--workers", workers, "--state", state, "--watch", "off"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0
    assert (f"cannot listen on {taken} for {port}: Address already in use (another maple serve, or another "
            "program, listens there)") in done.stderr
    assert "add_port" not in done.stderr          # the reason, not gRPC's own log line and its generic error
    stub = decision_pb2_grpc.DecisionServiceStub(server.channel)
    assert stub.Decide(runner_request(), timeout=10).prefill_size.size == "42"    # the first one serves on


@pytest.mark.parametrize("workers, port", [("1", "decisions"), ("2", "decisions"), ("1", "admin")])
def test_an_address_this_host_does_not_have_stops_the_server_saying_so(module_pack, workers, port):
    """192.0.2.1 (TEST-NET-1, never a host's) cannot be listened on: the
    server exits 1 with the system's reason and what it means, not the
    hint for a port in use."""
    listen = ["--listen", "192.0.2.1:5000", "--admin-listen", "off"] if port == "decisions" else \
             ["--listen", "127.0.0.1:0", "--admin-listen", "192.0.2.1:5000"]
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(module_pack), *listen,
                           "--workers", workers, "--state", "off", "--watch", "off"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "add_port" not in done.stderr
    assert (f"maple serve: cannot listen on 192.0.2.1:5000 for {port}: Cannot assign requested address "
            "(no network interface of this host has that address)") in done.stderr


def test_store_data_that_cannot_be_loaded_stops_the_server_at_start_with_the_problem(module_pack, tmp_path):
    """A stores.csv whose header lacks a required column is refused as a
    whole: at start there is no earlier data to keep serving, so the server
    exits naming file:line:col, not with a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("catalog.csv", "inventory.csv"):
        (data / name).write_text((ROOT / "rules" / "data" / name).read_text())
    (data / "stores.csv").write_text("id,name,address,city,lat,lon\ns001,Soho,1 High St,London,51.5,-0.1\n")
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(module_pack), "--data", str(data),
                           "--listen", "127.0.0.1:0", "--admin-listen", "off", "--workers", "1", "--state", "off",
                           "--watch", "off"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{data / 'stores.csv'}:1:1: error[D003]: the header lacks `hours`" in done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nothing_listens_on(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("what", ["admin", "metrics"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_admin_or_metrics_port_stops_the_server_before_any_worker_serves(module_pack, workers, what):
    """The supervisor used to start its workers, then fail to bind the admin
    port and hang with the workers serving unsupervised.  Every port is
    taken before the first worker starts now: the server exits non-zero,
    naming the port, and nothing listens on its decision port."""
    decisions = free_port()
    with socket.socket() as taken, tempfile.TemporaryDirectory() as state:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = ["--admin-listen", f"127.0.0.1:{port}"] if what == "admin" else \
                ["--admin-listen", "127.0.0.1:0", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(module_pack),
                               "--listen", f"127.0.0.1:{decisions}", *ports, "--workers", workers,
                               "--state", state, "--watch", "off"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"maple serve: cannot listen on 127.0.0.1:{port} for {what}" in done.stderr
    assert done.stdout == ""                             # never announced
    assert nothing_listens_on(decisions)


def test_a_supervisor_failing_after_its_workers_started_stops_them(module_pack):
    """Any failure once the workers serve (here: the announcement cannot be
    written, stdout is /dev/full) stops them: the supervisor exits non-zero
    and no worker is left serving on the decision port."""
    decisions = free_port()
    with open("/dev/full", "w") as full, tempfile.TemporaryDirectory() as state:
        done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(module_pack),
                               "--listen", f"127.0.0.1:{decisions}", "--admin-listen", "127.0.0.1:0",
                               "--workers", "2", "--drain-seconds", "30", "--state", state, "--watch", "off"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0
    assert "stopping the workers" in done.stderr
    assert nothing_listens_on(decisions)


def test_two_workers_turn_not_serving_at_once_on_sigterm_and_drain(pack, start_server):
    """SIGTERM to the supervisor reaches the workers first: health is
    NOT_SERVING within a long drain period while Decide is still answered;
    a second signal cuts the drain short."""
    s = start_server(pack, "--workers", "2", "--drain-seconds", "60")
    s.wait_health()
    s.proc.send_signal(signal.SIGTERM)
    s.wait_health(NOT_SERVING, timeout=30)
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    assert stub.Decide(runner_request(), timeout=10).prefill_size.size == "42"
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait_exit(50) == 0                      # well inside the 60 s drain period


def test_the_supervisor_signals_the_workers_before_stopping_the_watcher_and_compiler():
    from engine.server.workers import shut_down
    calls = []

    class Fake:
        def __init__(self, **methods):
            for name, label in methods.items():
                setattr(self, name, lambda *a, label=label: calls.append(label) or True)

    ok = shut_down(Fake(terminate="workers signalled", wait="workers waited for"),
                   Fake(enter_graceful_shutdown="admin NOT_SERVING"),
                   Fake(stop="watcher stopped"), Fake(close="compiler stopped"), timeout=5)
    assert ok and calls == ["workers signalled", "admin NOT_SERVING", "watcher stopped", "compiler stopped",
                            "workers waited for"]
