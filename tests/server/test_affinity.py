"""``maple serve --cpu-affinity``: each decision process kept on one CPU,
the supervisor and the rules compiler left free (engine.server.affinity)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

import grpc
import pytest

from engine.server import affinity
from engine.server.config import ConfigError, from_args
from engine.server.pb.maple.v1 import admin_pb2 as apb
from engine.server.pb.maple.v1 import admin_pb2_grpc, decision_pb2_grpc

from .conftest import ROOT, until
from .test_integration import runner_request

ALLOWED = tuple(sorted(os.sched_getaffinity(0)))
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs this process may run on")


@pytest.mark.parametrize("spec, may_use, cpus", [
    ("off", (0, 1), None),
    ("auto", (0, 1, 3), (0, 1, 3)),
    (" auto ", (2,), (2,)),
    ("1", (0, 1), (1,)),
    ("1,0", (0, 1), (1, 0)),            # the order given: worker 0 on CPU 1
    ("0-2", (0, 1, 2, 3), (0, 1, 2)),
    ("3,0-1,1", (0, 1, 3), (3, 0, 1)),  # each CPU once
    ("2-2", (2,), (2,)),
])
def test_specs(spec, may_use, cpus):
    assert affinity.parse(spec, may_use) == cpus


@pytest.mark.parametrize("spec, why", [
    ("", "'' is not a CPU number"),
    ("x", "'x' is not a CPU number or a range such as 2-3"),
    ("-1", "'-1' is not a CPU number"),
    ("0-", "'0-' is not a CPU number"),
    ("1,,2", "'' is not a CPU number"),
    ("٣", "is not a CPU number"),        # a digit, not an ASCII one
    ("2-1", "the range 2-1 is empty"),
    ("4", "CPU 4 is not one this process may run on (it may use 0, 1)"),
    ("0-5", "CPU 2, 3, 4, 5 is not one this process may run on"),
])
def test_bad_specs_say_what_is_wrong(spec, why):
    with pytest.raises(ValueError) as err:
        affinity.parse(spec, (0, 1))
    assert why in str(err.value)


def test_workers_take_the_cpus_in_turn():
    assert [affinity.cpu_for((3, 1), i) for i in range(5)] == [3, 1, 3, 1, 3]


def config(environ=None, **flags):
    return from_args(argparse.Namespace(rules="rules", **flags), environ=environ or {})


def test_a_cpu_the_process_may_not_use_is_refused_at_start_naming_the_flag_or_variable():
    outside = max(ALLOWED) + 1
    with pytest.raises(ConfigError, match=rf"^maple serve: --cpu-affinity '{outside}': CPU {outside} is not one"):
        config(cpu_affinity=str(outside))
    with pytest.raises(ConfigError, match=r"^maple serve: MAPLE_CPU_AFFINITY='any': 'any' is not a CPU number"):
        config(environ={"MAPLE_CPU_AFFINITY": "any"})
    assert config().cpus is None and config(cpu_affinity="auto").cpus == ALLOWED


def threads_cpus(pid: int) -> set[str]:
    """The Cpus_allowed_list of every thread of ``pid``."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except FileNotFoundError:           # a thread that ended meanwhile
            continue
        out.add(next(line.split(":", 1)[1].strip() for line in status.splitlines()
                     if line.startswith("Cpus_allowed_list")))
    return out


def cpu_list(cpus) -> str:
    """``cpus`` as /proc writes them (0-1, 0,2)."""
    cpus, parts = sorted(cpus), []
    for c in cpus:
        if parts and parts[-1][1] == c - 1:
            parts[-1][1] = c
        else:
            parts.append([c, c])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def children(pid: int) -> dict[int, str]:
    """pid -> command line of ``pid``'s child processes."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out[int(d)] = open(f"/proc/{d}/cmdline").read().replace("\0", " ")
            except (FileNotFoundError, ProcessLookupError):
                continue
    return out


def test_one_process_keeps_every_thread_on_its_cpu_and_compiles_elsewhere(module_pack, start_server):
    s = start_server(module_pack, "--cpu-affinity", "auto")
    s.wait_health()
    pid = s.info["pid"]
    assert s.info["worker_cpus"] == [[pid, ALLOWED[0]]]
    with grpc.insecure_channel(s.address) as ch:    # answers while pinned
        assert decision_pb2_grpc.DecisionServiceStub(ch).Decide(runner_request(), timeout=10).ruleset_version
    assert threads_cpus(pid) == {str(ALLOWED[0])}   # gRPC's threads, the handlers', the metrics server's
    compiler = until(lambda: [c for c, cmd in children(pid).items() if "spawn_main" in cmd],
                     "the rules compiler's process to start")           # (it starts once serving)
    assert len(compiler) == 1
    until(lambda: threads_cpus(compiler[0]) == {cpu_list(ALLOWED)},     # free to use any, once initialised
          "the compiler to leave the server's CPU")
    assert s.terminate() == 0


def test_off_leaves_the_scheduler_alone(module_pack, start_server):
    s = start_server(module_pack)
    s.wait_health()
    assert "worker_cpus" not in s.info and threads_cpus(s.info["pid"]) == {cpu_list(ALLOWED)}
    assert s.terminate() == 0


def test_more_workers_than_cpus_share_them_and_the_supervisor_stays_free(module_pack, start_server):
    s = start_server(module_pack, "--workers", "2", "--cpu-affinity", str(ALLOWED[0]))
    s.wait_health()
    workers = s.info["worker_cpus"]
    assert [cpu for _pid, cpu in workers] == [ALLOWED[0], ALLOWED[0]]
    for pid, cpu in workers:
        assert threads_cpus(pid) == {str(cpu)}
    assert threads_cpus(s.info["pid"]) == {cpu_list(ALLOWED)}
    assert s.terminate() == 0


@two_cpus
def test_each_worker_has_a_cpu_of_its_own_and_a_restarted_worker_gets_it_back(module_pack, start_server):
    s = start_server(module_pack, "--workers", "2", "--cpu-affinity", "auto")
    s.wait_health()
    workers = dict(map(tuple, s.info["worker_cpus"]))
    assert sorted(workers.values()) == list(ALLOWED[:2])
    for pid, cpu in workers.items():
        assert threads_cpus(pid) == {str(cpu)}
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    admin = admin_pb2_grpc.AdminServiceStub(s.admin_channel)

    def restarted():
        now = {w.pid for w in admin.GetRuleset(apb.GetRulesetRequest(), timeout=30).ruleset.workers}
        return len(now) == 2 and victim not in now and now - set(workers)
    until(restarted, "the supervisor to restart the killed worker")
    new = (restarted() - set(workers)).pop()
    assert threads_cpus(new) == {str(workers[victim])}
    assert s.terminate() == 0


def test_the_echo_floor_takes_the_same_setting():
    r = subprocess.run([sys.executable, "-m", "bench.echo_server", "--cpu-affinity", "1-0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--cpu-affinity 1-0: the range 1-0 is empty" in r.stderr


def test_the_echo_floor_keeps_its_threads_on_the_cpu_it_is_given():
    from bench import loadgen
    proc, address = loadgen.start_echo(1, str(ALLOWED[-1]))
    try:
        with grpc.insecure_channel(address) as ch:
            assert ch.unary_unary(loadgen.ECHO)(b"x" * 600, timeout=10) == b"x" * 600
        assert threads_cpus(proc.pid) == {str(ALLOWED[-1])}
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_load_generator_refuses_a_setting_its_servers_could_not_start_with(capsys):
    from bench import loadgen
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--cpu-affinity", "0-"])
    assert "--cpu-affinity 0-: '0-' is not a CPU number" in capsys.readouterr().err
    assert loadgen.parse_args([]).cpu_affinity == "off"


def test_the_bench_measures_both_settings_for_both_profiles_in_one_run(tmp_path):
    out = tmp_path / "affinity.json"
    r = subprocess.run([sys.executable, "-m", "bench.affinity", "--rounds", "1", "--calls", "30",
                        "--customers", "40", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(row["servers"], row["profile"]) for row in rows] == [
        ("free", "inline"), ("free", "by id"), ("pinned (auto)", "inline"), ("pinned (auto)", "by id")]
    for row in rows:
        assert 0 < row["echo_p50_us"] <= row["echo_p99_us"]
        assert 0 < row["decide_p50_us"] <= row["decide_p99_us"]
        assert row["echo_cpu_us"] >= 0 and row["decide_cpu_us"] >= 0
        assert row["server_p50_le_us"] is not None and row["server_p50_le_us"] <= row["server_p99_le_us"]
    assert "pinned ÷ free" in r.stdout


def test_the_bench_refuses_off_for_its_pinned_servers():
    r = subprocess.run([sys.executable, "-m", "bench.affinity", "--cpus", "off"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "--cpus off: the pinned servers need CPUs" in r.stderr
