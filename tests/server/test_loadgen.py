"""bench.loadgen: which server each phase measures, without starting one.

The batch phase runs against ``maple serve`` with --batch-workers processes
(default: one per core, as ``maple serve`` defaults to); the other phases
against --server-workers (default 1) beside an echo of as many.
"""
from __future__ import annotations

import json

import pytest

from bench import loadgen


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)


def test_batch_workers_default_to_maple_serves_default(four_cores):
    args = loadgen.parse_args([])
    assert (args.server_workers, args.batch_workers) == (1, 4)
    assert loadgen.batch_server(args) == "own"


@pytest.mark.parametrize("argv, plan", [
    (["--batch-workers", "1"], "shared"),
    (["--server-workers", "4"], "shared"),
    (["--server-workers", "0"], "shared"),            # 0 is one per core for both
    (["--batch-workers", "2"], "own"),
    (["--target", "10.0.0.1:50051"], "target"),
    (["--target", "10.0.0.1:50051", "--batch-workers", "1"], "target"),
])
def test_which_server_the_batch_phase_uses(four_cores, argv, plan):
    assert loadgen.batch_server(loadgen.parse_args(argv)) == plan


def test_negative_workers_are_refused():
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--batch-workers", "-1"])


class _Proc:
    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return 0


def _fake(monkeypatch, tmp_path):
    """start_maple/start_echo/run_phase recorded, not run; returns the records."""
    started, phases = [], []

    def start_maple(rules, workers, store, env=None, code=None):
        started.append(("maple", workers))
        return _Proc(), {"decisions": f"maple-{workers}:1", "metrics": None}

    def start_echo(workers):
        started.append(("echo", workers))
        return _Proc(), f"echo-{workers}:1"

    def run_phase(phase, name, target, method, payloads, **kw):
        phases.append((phase, name, target, kw["server_workers"]))
        hist = loadgen._hist()
        hist.record_value(100)
        return loadgen.Result(phase, name, 1, 1.0, {}, hist, kw.get("items_per_request", 1), kw["server_workers"])

    monkeypatch.setattr(loadgen, "start_maple", start_maple)
    monkeypatch.setattr(loadgen, "start_echo", start_echo)
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    monkeypatch.setattr(loadgen, "plot", lambda results, path: None)
    monkeypatch.setattr(loadgen, "default_pack", lambda: str(tmp_path))
    return started, phases


def _report(tmp_path) -> dict:
    [path] = tmp_path.glob("loadgen-*.json")
    return json.loads(path.read_text())


def test_batch_alone_starts_only_its_own_server(four_cores, monkeypatch, tmp_path, capsys):
    started, phases = _fake(monkeypatch, tmp_path)
    assert loadgen.main(["--phases", "batch", "--customers", "20", "--out", str(tmp_path)]) == 0
    assert started == [("maple", 4)]
    assert phases == [("batch", "batch", "maple-4:1", 4)]
    report = _report(tmp_path)
    assert (report["batch_server_workers"], report["batch_target"]) == (4, "maple-4:1")
    assert report["results"][0]["server_workers"] == 4
    assert "workers" in capsys.readouterr().out.splitlines()[0]


def test_every_phase_a_second_server_for_batch(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1,batch", "--customers", "20", "--out", str(tmp_path)])
    assert started == [("maple", 1), ("echo", 1), ("maple", 4)]
    assert phases == [("c1", "echo", "echo-1:1", 1), ("c1", "decide", "maple-1:1", 1),
                      ("batch", "batch", "maple-4:1", 4)]


def test_equal_workers_share_one_server(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1,batch", "--batch-workers", "1", "--customers", "20", "--out", str(tmp_path)])
    assert started == [("maple", 1), ("echo", 1)]
    assert phases[-1] == ("batch", "batch", "maple-1:1", 1)


def test_a_target_elsewhere_serves_the_batch_phase(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "batch", "--target", "far:1", "--customers", "20", "--out", str(tmp_path)])
    assert started == []
    assert phases == [("batch", "batch", "far:1", None)]
    assert _report(tmp_path)["batch_server_workers"] is None
