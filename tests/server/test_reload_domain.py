"""The rules manager in process: the watcher's no-op, the rule-test gate,
rollback against the watcher, the state-directory fallback, and rulesets
assembled from a bundle compiled elsewhere."""
from __future__ import annotations

import os
import shutil
import threading

import pytest

from engine.ruleset import build, load
from engine.service.errors import FailedPrecondition, NotFound
from engine.service.reload import (COMPILER_NICE, InlineCompiler, LocalTarget, ProcessCompiler, RulesManager,
                                  compile_pack, compiler_sched_from_env, payload_of)
from engine.service.rules import RulesetHolder
from engine.versions import VersionStore

from .conftest import NOW, RUNNER, write_pack
from .test_reload import BANNER_TEST


def manager(pack, state, **kw) -> RulesManager:
    return RulesManager(str(pack), LocalTarget(RulesetHolder()), store=VersionStore(state), **kw)


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_watcher_does_nothing_until_the_pack_or_its_tests_change(pack, tmp_path):
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    assert m.reload_if_changed() is None
    (pack / "notes.txt").write_text("not a rule file")
    assert m.reload_if_changed() is None
    edit(pack / "decisions.rules", 'default "none"', 'default "x"')
    r = m.reload_if_changed()
    assert r.changed and r.previous_version == v1 and m.current.version == r.ruleset.version
    assert m.reload_if_changed() is None
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    r = m.reload_if_changed()                     # the tests changed: looked at again, nothing to swap
    assert r is not None and not r.changed


def test_a_broken_edit_is_refused_once_and_not_retried_until_it_changes(pack, tmp_path):
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    (pack / "broken.rules").write_text("rule r when\n")
    with pytest.raises(FailedPrecondition) as info:
        m.reload_if_changed()
    assert "broken.rules:1:11: error[E102]" in info.value.message and m.current.version == v1
    assert m.last_error.failure == "compile" and m.last_error.trigger == "watch"
    assert m.reload_if_changed() is None           # the same broken edit: refused already
    (pack / "broken.rules").unlink()               # reverted: the directory holds the live version again
    r = m.reload_if_changed()
    assert r is not None and not r.changed and m.last_error is None
    assert [e["event"] for e in m.store.history()] == ["live", "rejected"]


def test_failing_rule_tests_keep_the_last_good_version(pack, tmp_path):
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    edit(pack / "decisions.rules", 'then banner = "vip"', 'then banner = "gold"')
    with pytest.raises(FailedPrecondition) as info:
        m.reload()
    assert info.value.violations[0][0] == "RULE_TEST"
    assert m.current.version == v1 and m.target.holder.current.version == v1
    assert m.last_error.failure == "tests" and m.last_error.test_failures[0].location.endswith("banner.yaml:2")


def test_a_change_to_the_rule_tests_alone_runs_them_against_the_live_rules(pack, tmp_path):
    """The rules' version is a hash of the .rules files: a test edit leaves it
    as it is, but the tests must still gate the live rules.  A failing test
    is reported as a refused edit is (last_error, FAILED_PRECONDITION with a
    RULE_TEST violation, a rejected history line) with the live version as
    rejected_version; the live rules keep serving; fixing the test clears it."""
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST.replace("banner: vip", "banner: gold"))
    with pytest.raises(FailedPrecondition) as info:
        m.reload_if_changed()
    assert info.value.violations[0][0] == "RULE_TEST" and info.value.violations[0][1].endswith("banner.yaml:2")
    assert "the rule tests fail against the live version" in info.value.message
    assert 'expected "gold", actual "vip"' in info.value.message
    err = m.last_error
    assert (err.failure, err.trigger, err.rejected_version) == ("tests", "watch", v1)
    assert err.test_failures[0].name == "a VIP sees the VIP banner"
    assert m.current.version == v1 == m.target.holder.current.version and m.origin == "startup"
    assert m.reload_if_changed() is None               # the same failing test: reported already
    with pytest.raises(FailedPrecondition):            # ReloadRules always looks, and says so again
        m.reload()
    assert m.last_error.trigger == "reload"
    assert [e["event"] for e in m.store.history()] == ["live", "rejected", "rejected"]
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)        # the test fixed: the error clears
    r = m.reload_if_changed()
    assert r is not None and not r.changed and r.ruleset.version == v1 and m.last_error is None


def test_reverting_a_refused_edit_runs_the_tests_again(pack, tmp_path):
    """A refused rule edit, then the rules put back while the test edited with
    them still fails: the live rules fail it, so the error stays."""
    (pack / "tests").mkdir()
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST)
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    (pack / "tests" / "banner.yaml").write_text(BANNER_TEST.replace("banner: vip", "banner: gold"))
    edit(pack / "decisions.rules", 'then banner = "vip"', 'then banner = "golden"')
    with pytest.raises(FailedPrecondition):
        m.reload_if_changed()
    assert m.last_error.rejected_version != v1
    edit(pack / "decisions.rules", 'then banner = "golden"', 'then banner = "vip"')
    with pytest.raises(FailedPrecondition):
        m.reload_if_changed()
    assert m.last_error.rejected_version == v1 and m.current.version == v1


def test_a_rollback_holds_until_the_directory_changes(pack, tmp_path):
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    edit(pack / "decisions.rules", 'default "none"', 'default "v2"')
    v2 = m.reload().ruleset.version
    r = m.rollback()
    assert (r.previous_version, r.ruleset.version, m.origin) == (v2, v1, "rollback")
    assert m.reload_if_changed() is None and m.current.version == v1      # the watcher leaves it alone
    edit(pack / "decisions.rules", 'default "v2"', 'default "v3"')
    assert m.reload_if_changed().ruleset.version not in (v1, v2)
    with pytest.raises(NotFound):
        m.rollback("0000000000000")


def test_a_restart_falls_back_only_to_its_own_rules_dirs_versions(tmp_path, caplog):
    state = tmp_path / "state"
    a, b = write_pack(tmp_path / "a"), write_pack(tmp_path / "b", "\nconst other = 1\n")
    va = manager(a, state).load_initial().version
    (a / "decisions.rules").write_text("rule oops when\n")
    m = manager(a, state)
    caplog.clear()
    assert m.load_initial().version == va and m.origin == "state" and m.last_error.failure == "compile"
    refused = next(r.getMessage() for r in caplog.records if "were not loaded" in r.getMessage())
    assert f"falling back to the last good version {va}" in refused and "nothing is served" not in refused
    manager(b, state).load_initial()              # the state directory now belongs to b
    m = manager(a, state)
    caplog.clear()
    assert m.load_initial() is None and m.current is None
    assert any("nothing is served" in r.getMessage() for r in caplog.records)


def test_a_ruleset_from_a_bundle_decides_and_explains_like_a_built_one(pack):
    built = load(pack)
    bundle = compile_pack(payload_of(built.sources), None, False).bundle
    rs = bundle.ruleset()
    assert rs.version == built.version and rs.counts == built.counts
    request = {"channel": "web", "category": "shoes"}
    a = built.decide(RUNNER, request, NOW, explain=True).to_dict()
    b = rs.decide(RUNNER, request, NOW, explain=True).to_dict()
    assert a == b and b["decisions"]["prefill_size"]["explanation"]


def test_the_compiler_process_gives_the_same_version(pack):
    compiler = ProcessCompiler()
    try:
        sources = load(pack).sources
        out = compiler.compile(payload_of(sources), str(pack), True)
        assert out.bundle.version == build(list(sources)).version
        bad = compiler.compile([("x.rules", "decision d: string default 1\n")], None, False)
        assert bad.bundle is None and bad.error.diagnostics[0].span.path == "x.rules"
    finally:
        compiler.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("setting, policy", [(None, "SCHED_IDLE"), ("idle", "SCHED_IDLE"), ("nice", "SCHED_OTHER")])
def test_the_compiler_process_runs_below_decisions_as_maple_compiler_sched_says(monkeypatch, setting, policy):
    """Nice 10 above this process's niceness either way; SCHED_IDLE too
    unless MAPLE_COMPILER_SCHED=nice (a host whose decisions keep every
    core busy, where a reload must still get a steady share)."""
    if setting is None:
        monkeypatch.delenv("MAPLE_COMPILER_SCHED", raising=False)
    else:
        monkeypatch.setenv("MAPLE_COMPILER_SCHED", setting)
    compiler = ProcessCompiler()
    try:
        compiler.compile([("x.rules", 'decision d: string default "a"\n')], None, False)
        [child] = compiler._pool._processes
        assert os.sched_getscheduler(child) == getattr(os, policy)
        assert os.getpriority(os.PRIO_PROCESS, child) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + COMPILER_NICE)
    finally:
        compiler.close()


@pytest.mark.parametrize("value", ["Idle", "batch", "0"])
def test_an_unknown_maple_compiler_sched_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("MAPLE_COMPILER_SCHED", value)
    with pytest.raises(SystemExit, match=f"MAPLE_COMPILER_SCHED='{value}': use one of idle, nice"):
        compiler_sched_from_env()
    monkeypatch.setenv("MAPLE_COMPILER_SCHED", "")
    assert compiler_sched_from_env() == "idle"          # set but empty: the default


KILLED_PARENT = """
import os, signal, sys
from engine.service.reload import ProcessCompiler
c = ProcessCompiler()
c.start()
c.compile([("x.rules", "decision d: string default \\"a\\"\\n")], None, False)
print(next(iter(c._pool._processes)), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_compiler_process_leaves_when_its_server_is_killed():
    """kill -9 of a server must not leave its compiler process behind."""
    import subprocess
    import sys
    import time
    out = subprocess.run([sys.executable, "-c", KILLED_PARENT], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    child = int(out.stdout.strip())
    deadline = time.monotonic() + 30
    while _alive(child):
        assert time.monotonic() < deadline, f"compiler process {child} outlived its killed parent"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_request_reload_swaps_in_the_background(pack, tmp_path):
    m = manager(pack, tmp_path / "state", compiler=InlineCompiler())
    v1 = m.load_initial().version
    swapped = threading.Event()
    m.target.holder.on_swap(lambda rs: swapped.set())
    edit(pack / "decisions.rules", 'default "none"', 'default "bg"')
    for _ in range(5):                            # a burst of pokes: one reload (or more), never an error
        m.request_reload()
    assert swapped.wait(30)
    assert m.current.version != v1
    m.close()


def test_the_live_sources_come_back_relative_to_the_pack(pack, tmp_path):
    m = manager(pack, tmp_path / "state")
    v1 = m.load_initial().version
    version, files = m.sources()
    assert version == v1 and dict(files).keys() == {"schema.rules", "decisions.rules"}
    shutil.rmtree(pack)
    assert m.sources(v1[:8])[0] == v1


def test_a_state_directory_inside_the_rules_directory_is_refused(pack):
    from engine.server.app import open_state
    from engine.server.config import ServeConfig
    with pytest.raises(SystemExit, match="inside the rules directory"):
        open_state(ServeConfig(rules=str(pack), state=str(pack / ".maple" / "state")))
    assert open_state(ServeConfig(rules=str(pack), state="off")) is None
