"""``maple serve --cpu-latency-us N``: the kernel's CPU wake-up latency limit
held while serving (PM QoS, /dev/cpu_dma_latency), dropped when it exits;
refused with a message naming the flag when the limit cannot be set."""
from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys

import pytest

from engine.server import cpu_latency
from engine.server.config import ConfigError

from .conftest import ROOT
from .test_config import config

REAL = cpu_latency.DEVICE
writable = os.path.exists(REAL) and os.access(REAL, os.W_OK)
needs_device = pytest.mark.skipif(not writable, reason=f"{REAL} is not writable here (needs root)")


def test_the_request_is_the_value_as_the_kernels_32_bit_integer(tmp_path):
    dev = tmp_path / "qos"
    dev.write_bytes(b"")
    with cpu_latency.CpuLatency(5, device=str(dev)) as held:
        assert held.held
        assert dev.read_bytes() == struct.pack("=i", 5)
        assert cpu_latency.current(str(dev)) == 5
    assert not held.held
    held.close()                                    # twice is fine


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0", 2 ** 31])
def test_a_limit_that_is_not_a_whole_non_negative_32_bit_number_is_refused(bad):
    with pytest.raises(ValueError, match="microseconds"):
        cpu_latency.CpuLatency(bad)


def test_a_missing_device_says_so(tmp_path):
    with pytest.raises(cpu_latency.CpuLatencyError, match="no PM QoS device"):
        cpu_latency.CpuLatency(0, device=str(tmp_path / "none")).open()
    assert cpu_latency.current(str(tmp_path / "none")) is None


def test_no_permission_says_root_is_needed(monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(cpu_latency.os, "open", denied)
    with pytest.raises(cpu_latency.CpuLatencyError, match="needs root"):
        cpu_latency.CpuLatency(0).open()


def test_the_flag_and_its_variable():
    assert config().cpu_latency_us is None
    assert config(cpu_latency_us=0).cpu_latency_us == 0
    assert config(environ={"MAPLE_CPU_LATENCY_US": "20"}).cpu_latency_us == 20
    with pytest.raises(ConfigError, match=r"--cpu-latency-us -1: must be a whole number of microseconds"):
        config(cpu_latency_us=-1)
    with pytest.raises(ConfigError, match=r"MAPLE_CPU_LATENCY_US='fast' is not a whole number"):
        config(environ={"MAPLE_CPU_LATENCY_US": "fast"})


def test_serve_stops_at_start_naming_the_flag_when_the_limit_cannot_be_set(monkeypatch, tmp_path, capsys):
    from engine.server import app
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "none"))
    assert app.serve(config(cpu_latency_us=0)) == 1
    err = capsys.readouterr().err
    assert "maple serve: --cpu-latency-us 0 (MAPLE_CPU_LATENCY_US): cannot open" in err
    assert "no PM QoS device" in err


def test_loadgen_refuses_a_negative_limit():
    r = subprocess.run([sys.executable, "-m", "bench.loadgen", "--cpu-latency-us", "-1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--cpu-latency-us" in r.stderr


@needs_device
def test_the_kernel_holds_the_limit_while_open_and_drops_it_on_close():
    before = cpu_latency.current()
    if before is not None and before <= 3:
        pytest.skip(f"another process holds a limit of {before} µs")
    with cpu_latency.CpuLatency(3):
        assert cpu_latency.current() == 3
    assert cpu_latency.current() == before


@needs_device
@pytest.mark.parametrize("workers", ["1", "2"])
def test_maple_serve_holds_the_limit_while_serving_and_drops_it_when_it_exits(module_pack, start_server, workers):
    before = cpu_latency.current()
    if before is not None and before <= 7:
        pytest.skip(f"another process holds a limit of {before} µs")
    s = start_server(module_pack, "--cpu-latency-us", "7", "--log-level", "info", "--workers", workers)
    s.wait_health()
    assert cpu_latency.current() == 7
    assert s.terminate() == 0
    assert "holding the CPU wake-up latency limit at 7 µs" in s.stderr()
    assert cpu_latency.current() == before


@needs_device
def test_a_killed_server_leaves_no_limit_behind(module_pack, start_server):
    before = cpu_latency.current()
    if before is not None and before <= 9:
        pytest.skip(f"another process holds a limit of {before} µs")
    s = start_server(module_pack, "--cpu-latency-us", "9")
    s.wait_health()
    assert cpu_latency.current() == 9
    s.proc.kill()                                   # SIGKILL: no cleanup of its own runs
    s.proc.wait(30)
    assert cpu_latency.current() == before
