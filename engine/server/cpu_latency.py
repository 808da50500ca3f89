"""Hold the kernel's CPU wake-up latency limit while serving.

    maple serve --cpu-latency-us 0        (or MAPLE_CPU_LATENCY_US=0)

Linux lets a process ask, through ``/dev/cpu_dma_latency`` (PM QoS), that
no core enter an idle state slower to leave than N microseconds; the request
lasts while the file stays open, and the kernel drops it when the process
exits, however it exits.  With 0, an idle core polls instead of halting.

Why a decision service wants it: between two requests a core that halts
gives its caches, and on a virtual machine the physical core itself, to
something else; the next request then pays the wake-up and runs with cold
caches.  On this project's 2-core VM (cpuidle ``haltpoll``, which halts at
once) holding 0 took one caller's echo from 546 to 256 µs at p50, Decide
from 700 to 399, and Decide's own server time about a third less, the two
settings alternated in one run (``python -m bench.idle_cores``;
docs/service.md, "Idle cores").  The
cost: an idle core spins at full power, so it is a setting for dedicated
serving machines, off by default.  It is what tuned's
``latency-performance`` profile does machine-wide.
"""
from __future__ import annotations

import errno
import os
import struct

DEVICE = "/dev/cpu_dma_latency"


class CpuLatencyError(OSError):
    """The limit could not be set; the message says why and what to do."""


class CpuLatency:
    """The limit, held while open: ``with CpuLatency(0): ...`` or
    ``open()`` / ``close()``.  ``device``: another path (tests; default
    :data:`DEVICE`)."""

    def __init__(self, microseconds: int, device: str | None = None):
        if not isinstance(microseconds, int) or isinstance(microseconds, bool) or microseconds < 0:
            raise ValueError(f"the CPU latency limit is a whole number of microseconds >= 0, not {microseconds!r}")
        if microseconds > 0x7FFFFFFF:
            raise ValueError(f"the CPU latency limit {microseconds} microseconds does not fit the kernel's "
                             "32-bit value")
        self.microseconds = microseconds
        self.device = device or DEVICE
        self._fd: int | None = None

    def open(self) -> "CpuLatency":
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            hint = {errno.EACCES: "it needs root (or write access to the device)",
                    errno.EPERM: "it needs root (or write access to the device)",
                    errno.ENOENT: "this kernel or container has no PM QoS device"}.get(
                        err.errno, "the kernel refused it")
            raise CpuLatencyError(err.errno, f"cannot open {self.device} ({err.strerror}): {hint}") from None
        try:
            os.write(fd, struct.pack("=i", self.microseconds))
        except OSError as err:
            os.close(fd)
            raise CpuLatencyError(err.errno, f"cannot write {self.device} ({err.strerror})") from None
        self._fd = fd
        return self

    def close(self) -> None:
        """Drop the request (the kernel drops it too when the process exits)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "CpuLatency":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def current(device: str | None = None) -> int | None:
    """The limit in force now, machine-wide (the smallest request held by
    any process), in µs; None when the device cannot be read."""
    try:
        with open(device or DEVICE, "rb") as f:
            raw = f.read(4)
    except OSError:
        return None
    return struct.unpack("=i", raw)[0] if len(raw) == 4 else None
