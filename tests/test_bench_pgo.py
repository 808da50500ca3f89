"""bench.pgo: the three steps in order, and a plain build whenever one fails.

The real build runs at every ``make`` install (and so in CI, before the
suite runs against the modules it built); here the steps are stubbed, since
rebuilding the modules in place under a running suite would swap the
shared objects it has loaded."""
import os
import subprocess
import sys

import pytest

from bench import pgo


class Steps:
    """What the stubbed steps did, and how they are to go."""
    def __init__(self):
        self.done = []
        self.fail = set()           # the build modes that fail
        self.counts = True          # the training run writes counts
        self.train_exit = 0


@pytest.fixture
def steps(monkeypatch, tmp_path):
    """Record the builds and the training run instead of doing them."""
    st = Steps()
    temp = tmp_path / "pgo"
    monkeypatch.setattr(pgo, "BUILD_TEMP", temp)
    monkeypatch.setattr(pgo, "gcc_major", lambda: 12)

    def build(mode, jobs):
        st.done.append(("build", mode))
        if mode in st.fail:
            raise pgo.PgoError(f"{mode} failed")

    def run(cmd, **kw):
        st.done.append(("train", cmd[-1]))
        if st.counts:
            (temp / "engine").mkdir(parents=True, exist_ok=True)
            (temp / "engine" / "_kernel.gcda").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, st.train_exit, "", "Traceback: boom")
    monkeypatch.setattr(pgo, "build", build)
    monkeypatch.setattr(pgo.subprocess, "run", run)
    return st


def test_generate_train_use(steps, capsys):
    assert pgo.main([]) == 0
    assert steps.done == [("build", "generate"), ("train", "--train"), ("build", "use")]
    assert "profile-guided" in capsys.readouterr().out


@pytest.mark.parametrize("broken", ["generate", "use", "train", "no counts"])
def test_any_failing_step_leaves_a_plain_build(steps, broken, capsys):
    if broken == "train":
        steps.train_exit = 1
    elif broken == "no counts":
        steps.counts = False
    else:
        steps.fail = {broken}
    assert pgo.main([]) == 0
    assert steps.done[-1] == ("build", None)
    assert "without a profile" in capsys.readouterr().err
    steps.done.clear()
    assert pgo.main(["--strict"]) == 1 and steps.done[-1] == ("build", None)


def test_without_gcc_10_nothing_is_rebuilt(steps, monkeypatch, capsys):
    monkeypatch.setattr(pgo, "gcc_major", lambda: None)
    assert pgo.main([]) == 0 and steps.done == []
    assert "not GCC 10 or later" in capsys.readouterr().err
    assert pgo.main(["--strict"]) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CI machine's compiler: GCC on Linux")
def test_this_machines_compiler_is_recognised():
    """The CI machine builds with GCC (Debian's): the profile is used there,
    not skipped because its version went unread."""
    assert (pgo.gcc_major() or 0) >= 10


def test_setup_refuses_an_unknown_mode():
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=pgo.ROOT, capture_output=True, text=True,
                          env={**os.environ, "MAPLE_PGO": "sometimes"})
    assert done.returncode != 0 and "MAPLE_PGO=sometimes" in done.stderr + done.stdout


@pytest.mark.parametrize("version, major", [
    ("gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.", 12),
    ("cc (GCC) 4.8.5 20150623 (Red Hat 4.8.5-44)\nCopyright (C) 2015 Free Software Foundation, Inc.", 4),
    ("Apple clang version 15.0.0 (clang-1500.1.0.2.5)\nTarget: arm64-apple-darwin23.2.0", None),
    ("Debian clang version 14.0.6\nTarget: x86_64-pc-linux-gnu", None),
])
def test_the_compilers_version_is_read(monkeypatch, version, major):
    monkeypatch.setenv("CC", "cc -pthread")
    seen = []

    def run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, version, "")
    monkeypatch.setattr(pgo.subprocess, "run", run)
    assert pgo.gcc_major() == major and seen == [["cc", "--version"]]


def test_the_training_workload_runs(monkeypatch):
    """What the instrumented child runs (smaller here): a training that
    raised would leave every install with a plain build and only a warning."""
    from engine.server import events
    monkeypatch.setattr(pgo, "TRAIN_CUSTOMERS", 20)
    monkeypatch.setattr(pgo, "TRAIN_PASSES", 1)
    monkeypatch.setattr(pgo, "TRAIN_EVENTS", 300)
    answers = []
    real = events.EventsServicer.record_events_bytes

    def record(self, request, context):
        answers.append(real(self, request, context))
        return answers[-1]
    monkeypatch.setattr(events.EventsServicer, "record_events_bytes", record)
    pgo.train()
    from engine.server.pb.maple.v1 import events_pb2 as epb
    assert len(answers) == 3
    stored = [r.status for a in answers for r in epb.RecordEventsResponse.FromString(a).results]
    assert len(stored) == 300 and set(stored) == {epb.EVENT_STATUS_STORED}
