"""bench.idle_cores: the two idle settings take turns in one run against
real servers, and every row is measured (end to end and server-side)."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT
from .test_cpu_latency import needs_device


@needs_device
def test_both_settings_both_kinds_measured_in_one_run(tmp_path):
    out = tmp_path / "idle.json"
    r = subprocess.run([sys.executable, "-m", "bench.idle_cores", "--rounds", "1", "--calls", "30",
                        "--customers", "40", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(row["idle cores"], row["profile"]) for row in rows] == [
        ("halt", "inline"), ("halt", "by id"), ("poll (0 µs)", "inline"), ("poll (0 µs)", "by id")]
    for row in rows:
        assert 0 < row["echo_p50_us"] <= row["echo_p99_us"]
        assert 0 < row["decide_p50_us"] <= row["decide_p99_us"]
        assert row["server_p50_le_us"] is not None and row["server_p50_le_us"] <= row["server_p99_le_us"]
    assert "Decide÷echo" in r.stdout


def test_a_limit_that_cannot_be_held_is_refused_before_anything_starts():
    r = subprocess.run([sys.executable, "-m", "bench.idle_cores", "--limit-us", "-1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "idle_cores: --limit-us -1" in r.stderr
