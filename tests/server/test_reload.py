"""Live reload, rollback, restarts and the decision log against a real
`maple serve`.

Nothing here sleeps to let things happen: a test waits for the state it
expects (GetRuleset, health, a file's lines) and fails at a deadline.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from engine.server.pb.maple.v1 import admin_pb2 as apb
from engine.server.pb.maple.v1 import admin_pb2_grpc
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.pb.maple.v1 import decision_pb2_grpc
from engine.versions import VersionStore

from .conftest import NOW, ROOT, RUNNER, Server

DEADLINE = 60.0

#: a rule test beside the pack: a VIP's banner is "vip"
BANNER_TEST = """\
cases:
  - name: a VIP sees the VIP banner
    now: 2027-01-15T08:00:00Z
    profile: {lifecycle: vip}
    expect:
      banner: vip
"""


def runner_request() -> pb.DecideRequest:
    req = pb.DecideRequest(customer_id="c-runner", context=pb.RequestContext(
        channel=pb.CHANNEL_WEB, category="shoes", sku="sku-1", timestamp=timestamp_pb2.Timestamp(seconds=NOW)))
    req.profile.update(RUNNER)
    return req


def admin(s: Server) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(s.admin_channel)


def state(s: Server) -> apb.GetRulesetResponse:
    return admin(s).GetRuleset(apb.GetRulesetRequest(), timeout=10)


def wait_state(s: Server, what: str, ok, timeout: float = DEADLINE) -> apb.GetRulesetResponse:
    """Poll GetRuleset until ``ok(response)``; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        r = state(s)
        if ok(r):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"GetRuleset never showed {what}; last: {r}")
        threading.Event().wait(0.05)


def decide_version(s: Server) -> str:
    return decision_pb2_grpc.DecisionServiceStub(s.channel).Decide(runner_request(), timeout=10).ruleset_version


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def metric(s: Server, name: str) -> float | None:
    """One sample, by its name with labels as Prometheus prints them."""
    for line in s.metrics().splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------- the watcher
def test_a_valid_edit_goes_live_and_a_broken_one_keeps_the_old_version(pack, start_server):
    s = start_server(pack, "--watch", "on", "--watch-debounce-ms", "50")
    s.wait_health()
    v1 = state(s).ruleset.version
    assert state(s).ruleset.watch == "on" and state(s).ruleset.origin == "startup"

    edit(pack / "decisions.rules", 'banner: string default "none"', 'banner: string default "hello"')
    v2 = wait_state(s, "a new version", lambda r: r.ruleset.version != v1).ruleset
    assert v2.origin == "watch" and decide_version(s) == v2.version

    text = (pack / "decisions.rules").read_text()
    line = text.count("\n") + 2
    (pack / "decisions.rules").write_text(text + "\nrule typo when profile.lifecylce == new then banner = \"x\"\n")
    broken = wait_state(s, "the reload error", lambda r: r.HasField("last_error"))
    assert broken.ruleset.version == v2.version                   # the last good version keeps serving
    err = broken.last_error
    assert err.failure == apb.RELOAD_FAILURE_COMPILE and err.trigger == "watch"
    d = err.diagnostics[0]
    assert (d.code, d.line, d.column) == ("E202", line, 24) and d.path.endswith("decisions.rules")
    assert f"decisions.rules:{line}:24: error[E202]" in err.message
    assert decide_version(s) == v2.version and s.health() == 1
    assert metric(s, "maple_ruleset_last_reload_ok") == 0
    assert metric(s, 'maple_ruleset_reload_failures_total{failure="compile"}') == 1

    (pack / "decisions.rules").write_text(text.replace('default "hello"', 'default "fixed"'))
    v3 = wait_state(s, "the fixed version", lambda r: r.ruleset.version not in (v1, v2.version)
                    and not r.HasField("last_error")).ruleset
    assert decide_version(s) == v3.version
    assert metric(s, "maple_ruleset_last_reload_ok") == 1
    assert s.terminate() == 0
    assert "decisions.rules:%d:24: error[E202]" % line in s.stderr()        # logged with its position


def test_data_files_do_not_reload_the_rules(pack, start_server):
    (pack / "data").mkdir()
    s = start_server(pack, "--watch", "poll", "--watch-debounce-ms", "50")
    s.wait_health()
    v1 = state(s).ruleset.version
    (pack / "data" / "stores.csv").write_text("id,name\ns1,Riverside\n")
    edit(pack / "decisions.rules", 'default "none"', 'default "polled"')
    v2 = wait_state(s, "the edit, by polling", lambda r: r.ruleset.version != v1).ruleset.version
    assert decide_version(s) == v2
    assert s.terminate() == 0


# ---------------------------------------------------------------- the rule-test gate
def test_an_edit_that_breaks_a_rule_test_is_not_swapped_in(pack, start_server):
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    s = start_server(pack)
    s.wait_health()
    v1 = state(s).ruleset.version
    edit(pack / "decisions.rules", 'then banner = "vip"', 'then banner = "gold"')
    with pytest.raises(grpc.RpcError) as info:
        admin(s).ReloadRules(apb.ReloadRulesRequest(), timeout=60)
    err = info.value
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "rule tests fail" in err.details() and "banner.yaml:2" in err.details()
    pf = error_details_pb2.PreconditionFailure()
    rpc_status.from_call(err).details[0].Unpack(pf)
    assert pf.violations[0].type == "RULE_TEST" and pf.violations[0].subject.endswith("banner.yaml:2")
    r = state(s)
    assert r.ruleset.version == v1 == decide_version(s)
    assert r.last_error.failure == apb.RELOAD_FAILURE_TESTS
    f = r.last_error.test_failures[0]
    assert f.name == "a VIP sees the VIP banner" and 'expected "vip", actual "gold"' in f.message
    assert r.last_error.rejected_version not in ("", v1)
    # the test is updated with the rule: now it goes live
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST.replace("banner: vip", "banner: gold"))
    assert admin(s).ReloadRules(apb.ReloadRulesRequest(), timeout=60).changed
    assert decide_version(s) == r.last_error.rejected_version
    assert s.terminate() == 0


def test_a_rule_test_edit_alone_is_run_against_the_live_rules(pack, start_server):
    """Only a test file changes (the version does not): the watcher runs the
    tests against the live rules and a failure is reported as a refused edit
    is; the live version keeps serving; fixing the test clears the error."""
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    s = start_server(pack, "--watch", "on", "--watch-debounce-ms", "50")
    s.wait_health()
    v1 = state(s).ruleset.version
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST.replace("banner: vip", "banner: gold"))
    r = wait_state(s, "the failing rule test", lambda r: r.HasField("last_error"))
    assert r.ruleset.version == v1 == decide_version(s) and r.ruleset.origin == "startup"
    err = r.last_error
    assert (err.failure, err.trigger, err.rejected_version) == (apb.RELOAD_FAILURE_TESTS, "watch", v1)
    f = err.test_failures[0]
    assert f.location.endswith("banner.yaml:2") and 'expected "gold", actual "vip"' in f.message
    assert metric(s, "maple_ruleset_last_reload_ok") == 0
    assert metric(s, 'maple_ruleset_reload_failures_total{failure="tests"}') == 1
    with pytest.raises(grpc.RpcError) as info:                    # ReloadRules answers as for a refused edit
        admin(s).ReloadRules(apb.ReloadRulesRequest(), timeout=60)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "rule tests fail" in info.value.details() and "banner.yaml:2" in info.value.details()
    pf = error_details_pb2.PreconditionFailure()
    rpc_status.from_call(info.value).details[0].Unpack(pf)
    assert pf.violations[0].type == "RULE_TEST" and pf.violations[0].subject.endswith("banner.yaml:2")
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST + "  # fixed\n")
    r = wait_state(s, "the error cleared", lambda r: not r.HasField("last_error"))
    assert r.ruleset.version == v1 and metric(s, "maple_ruleset_last_reload_ok") == 1
    assert admin(s).ReloadRules(apb.ReloadRulesRequest(), timeout=60).changed is False
    assert s.terminate() == 0
    log = s.stderr()
    assert "fail against the live version" in log and 'expected "gold", actual "vip"' in log


# ---------------------------------------------------------------- compare-and-swap
def race(s: Server, expected: str) -> list:
    """Two ReloadRules with the same expected version, released together."""
    barrier = threading.Barrier(2)
    out: list = [None, None]

    def one(i):
        stub = admin(s)
        barrier.wait()
        try:
            out[i] = stub.ReloadRules(apb.ReloadRulesRequest(expected_version=expected), timeout=60)
        except grpc.RpcError as err:
            out[i] = err.code()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_two_racing_reloads_one_wins_the_other_is_aborted(pack, start_server):
    s = start_server(pack)
    s.wait_health()
    v1 = state(s).ruleset.version
    edit(pack / "decisions.rules", 'default "none"', 'default "raced"')
    results = race(s, v1)
    won = [r for r in results if isinstance(r, apb.ReloadRulesResponse)]
    assert len(won) == 1 and grpc.StatusCode.ABORTED in results
    assert won[0].changed and won[0].previous_version == v1
    assert decide_version(s) == won[0].ruleset.version != v1
    assert s.terminate() == 0


# ---------------------------------------------------------------- rollback
def test_rollback_over_rpc_and_the_cli_and_it_survives_a_restart(pack, start_server):
    s = start_server(pack)
    s.wait_health()
    v1 = state(s).ruleset.version
    edit(pack / "decisions.rules", 'default "none"', 'default "v2"')
    v2 = admin(s).ReloadRules(apb.ReloadRulesRequest(), timeout=60).ruleset.version

    cli = subprocess.run([sys.executable, "-m", "engine", "rollback", "--admin", s.admin], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert f"rolled back {v2} -> {v1}" in cli.stdout
    r = state(s).ruleset
    assert (r.version, r.origin) == (v1, "rollback") and decide_version(s) == v1

    back = admin(s).RollbackRules(apb.RollbackRulesRequest(to_version=v2[:6]), timeout=60)
    assert back.changed and back.previous_version == v1 and back.ruleset.version == v2
    with pytest.raises(grpc.RpcError) as info:
        admin(s).RollbackRules(apb.RollbackRulesRequest(to_version="ffffffffff"), timeout=60)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        admin(s).RollbackRules(apb.RollbackRulesRequest(expected_version=v1), timeout=60)
    assert info.value.code() is grpc.StatusCode.ABORTED
    assert admin(s).RollbackRules(apb.RollbackRulesRequest(), timeout=60).ruleset.version == v1
    assert VersionStore(s.state).live_sequence() == [v1, v2, v1, v2, v1]
    assert s.terminate() == 0

    # the directory has not changed since the rollback: a restart keeps it
    again = start_server(pack, "--state", str(s.state))
    again.wait_health()
    assert (state(again).ruleset.version, state(again).ruleset.origin) == (v1, "kept")
    assert again.terminate() == 0
    # once the directory changes, it is the directory again
    edit(pack / "decisions.rules", 'default "v2"', 'default "v3"')
    third = start_server(pack, "--state", str(s.state))
    third.wait_health()
    assert state(third).ruleset.version not in (v1, v2) and state(third).ruleset.origin == "startup"
    assert third.terminate() == 0


# ---------------------------------------------------------------- restarts
@pytest.mark.parametrize("damage", ["syntax", "missing"])
def test_a_restart_with_a_broken_rules_dir_serves_the_last_good_version(pack, start_server, tmp_path, damage):
    state_dir = tmp_path / "state"
    s = start_server(pack, "--state", str(state_dir))
    s.wait_health()
    good = state(s).ruleset.version
    assert s.terminate() == 0
    if damage == "syntax":
        (pack / "decisions.rules").write_text((pack / "decisions.rules").read_text() + "\nrule oops when\n")
    else:
        for p in pack.iterdir():
            p.unlink()
        pack.rmdir()
    again = start_server(pack, "--state", str(state_dir))
    again.wait_health()
    r = state(again)
    assert (r.ruleset.version, r.ruleset.origin) == (good, "state") and decide_version(again) == good
    if damage == "syntax":
        assert r.last_error.failure == apb.RELOAD_FAILURE_COMPILE
        assert r.last_error.diagnostics[0].path.endswith("decisions.rules") and r.last_error.diagnostics[0].line > 0
    else:
        assert r.last_error.failure == apb.RELOAD_FAILURE_READ
    assert again.terminate() == 0
    assert f"serving the last good version {good}" in again.stderr()


# ---------------------------------------------------------------- the decision log
def test_the_decision_log_is_masked_and_replayable(pack, start_server, tmp_path):
    log_path = tmp_path / "decisions.jsonl"
    s = start_server(pack, "--decision-log", str(log_path), "--decision-log-rate", "1")
    s.wait_health()
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    for i in range(5):
        req = runner_request()
        req.customer_id = f"c-secret-{i}"
        req.profile.update({"customer_id": f"c-secret-{i}", "email_address": "ann@example.com",
                            "loyalty_card": "LC-123456", "device_id": "dev-42", "_fold": {"seq": 3},
                            "home": {"lat": 51.507351, "lon": -0.127758}})
        req.context.location.lat, req.context.location.lon = 51.5145, -0.0983
        stub.Decide(req, timeout=10)
    deadline = time.monotonic() + DEADLINE
    while len(lines := log_path.read_text().splitlines() if log_path.exists() else []) < 5:
        assert time.monotonic() < deadline, "the decision log never got 5 lines"
        threading.Event().wait(0.05)
    text = log_path.read_text()
    for secret in ("c-secret", "@", "LC-123456", "dev-42", "_fold", "51.507351", "0.0983"):
        assert secret not in text
    rec = json.loads(lines[0])
    assert rec["customer_id"].startswith("h-") and rec["profile"]["customer_id"] == rec["customer_id"]
    assert rec["profile"]["home"] == {"lat": 51.51, "lon": -0.13}
    assert rec["request"]["location"] == {"lat": 51.51, "lon": -0.1}
    assert rec["profile"]["lifecycle"] == "vip" and rec["profile"]["sizes"] == {"shoes": "42"}
    assert rec["version"] == state(s).ruleset.version and rec["now"] == NOW
    assert rec["decisions"]["prefill_size"] == {"value": "42", "source": "rule", "rule": "size_memory"}
    assert len({json.loads(x)["customer_id"] for x in lines}) == 5

    replay = subprocess.run([sys.executable, "-m", "engine", "replay", "--rules", str(pack), "--against-server",
                             s.admin, "--profiles", str(log_path), "--format", "json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    assert report["samples"] == 5 and report["old_version"] == report["new_version"] == rec["version"]
    assert report["customers_affected"] == 0
    assert report["decisions"]["prefill_size"]["total"] == 5
    assert s.terminate() == 0


# ---------------------------------------------------------------- workers
def test_workers_converge_on_one_version_and_races_are_aborted(pack, start_server):
    s = start_server(pack, "--workers", "2", "--watch", "on", "--watch-debounce-ms", "50")
    s.wait_health()
    v1 = state(s).ruleset.version
    edit(pack / "decisions.rules", 'default "none"', 'default "watched"')
    r = wait_state(s, "both workers on the new version", lambda r: r.ruleset.version != v1 and
                   len(r.ruleset.workers) == 2 and {w.version for w in r.ruleset.workers} == {r.ruleset.version})
    v2 = r.ruleset.version
    for _ in range(4):                                   # new connections land on either worker
        with grpc.insecure_channel(s.address) as ch:
            resp = decision_pb2_grpc.DecisionServiceStub(ch).Decide(runner_request(), timeout=10)
            assert resp.ruleset_version == v2 and resp.decisions["banner"].value.string_value == "vip"
    # the supervisor is the one controller: the same compare-and-swap
    sources = admin(s).GetRulesetSources(apb.GetRulesetSourcesRequest(), timeout=10)
    assert sources.version == v2 and {x.path for x in sources.sources} == {"schema.rules", "decisions.rules"}
    # two ReloadRules expecting v2 (and the watcher) race for the same edit: at most one of the
    # calls wins, the other is ABORTED (both are, when the watcher got there first)
    edit(pack / "decisions.rules", 'default "watched"', 'default "raced"')
    results = race(s, v2)
    assert grpc.StatusCode.ABORTED in results
    assert sum(isinstance(x, apb.ReloadRulesResponse) for x in results) <= 1
    r = wait_state(s, "the raced version everywhere", lambda r: r.ruleset.version not in (v1, v2) and
                   {w.version for w in r.ruleset.workers} == {r.ruleset.version})
    assert s.terminate() == 0
