"""``maple serve --cpu-affinity``: each decision process kept on one CPU.

A Decide's server time is mostly cache misses (docs/performance.md): the
code and data it touches, fetched again when the call runs on a core whose
caches hold something else.  Left to the scheduler, a server's threads (the
gRPC poller, the handler threads, gRPC's own) wake on either core, and each
wake-up of an idle vCPU from the other is an inter-processor interrupt the
hypervisor handles.  Kept on one CPU, a process's threads hand each call
over on that core and find its caches as the last call left them
(``python -m bench.affinity``: the echo floor and Decide both ~0.75x the
time per call at one caller, docs/service.md "CPU affinity").

``--cpu-affinity off`` (the default) leaves the scheduler alone; ``auto``
uses the CPUs this process may run on (``taskset``, a container's cpuset);
a list (``0,2-3``) names them.  With ``--workers N``, worker *i* runs on the
*i*-th CPU of the list (round robin when there are more workers than CPUs);
the supervisor (admin, metrics, the rules watcher) and the rules compiler
stay free.  One ``maple serve`` a host: two instances given the same CPUs
would share them while other cores idle.  Linux only.
"""
from __future__ import annotations

import os

SPEC_HELP = "off, auto (the CPUs this process may run on) or a list such as 0,2-3"


def allowed() -> tuple[int, ...]:
    """The CPUs this process may run on, in order."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse(spec: str, may_use: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    """``--cpu-affinity``'s value as the CPUs to pin to, in order (None for
    ``off``); ValueError saying what is wrong.  ``may_use``: the CPUs this
    process may run on (default: :func:`allowed`); each CPU named must be
    one of them."""
    spec = spec.strip()
    if spec == "off":
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("CPU affinity needs Linux (os.sched_setaffinity); use off")
    if may_use is None:
        may_use = allowed()
    if spec == "auto":
        return tuple(may_use)
    cpus: list[int] = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isascii() and first.isdigit() and (not dash or (last.isascii() and last.isdigit()))):
            raise ValueError(f"{part.strip()!r} is not a CPU number or a range such as 2-3; use {SPEC_HELP}")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise ValueError(f"the range {lo}-{hi} is empty (write the lower CPU first)")
        for cpu in range(lo, hi + 1):
            if cpu not in cpus:
                cpus.append(cpu)
    outside = [c for c in cpus if c not in may_use]
    if outside:
        raise ValueError(f"CPU {', '.join(map(str, outside))} is not one this process may run on "
                         f"(it may use {', '.join(map(str, may_use))})")
    return tuple(cpus)


def cpu_for(cpus: tuple[int, ...], index: int) -> int:
    """The CPU of worker ``index`` (0-based): round robin over ``cpus``."""
    return cpus[index % len(cpus)]


def pin(cpu: int) -> None:
    """Keep this process on ``cpu``: every thread it runs now (gRPC may
    have started some) and, through them, every thread it starts later."""
    os.sched_setaffinity(0, {cpu})
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except (OSError, ValueError):       # a thread that exited meanwhile
            pass
