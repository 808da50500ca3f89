"""Counting instructions with callgrind, for bench.decide_cost and
bench.ingest_cost: a child ``python -m ...`` does its setup uncounted and
runs the measured calls inside ``functools.reduce``; only those are counted
(``--toggle-collect``), so the count is the calls', whatever else runs on
the machine.  ``counts`` returns every event callgrind collected (with
``--cache-sim=yes``: cache misses as well as instructions)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def require_valgrind(prog: str) -> None:
    if not shutil.which("valgrind"):
        raise SystemExit(f"{prog}: needs valgrind (apt-get install valgrind)")


def _zip_events(names: str, values: str) -> dict[str, int]:
    names_, values_ = names.split(), values.split()
    if not names_ or len(values_) > len(names_):
        raise ValueError(f"events {names!r} do not name the counts {values!r}")
    # callgrind leaves out trailing zero counts
    return {n: int(v) for n, v in zip(names_, values_ + ["0"] * (len(names_) - len(values_)))}


def parse_collected(stderr: str) -> dict[str, int] | None:
    """The counts of valgrind's ``Events : ...`` / ``Collected : ...`` lines
    on stderr (``==PID== `` prefixed), by event name; None if absent."""
    ev = re.search(r"^(?:==\d+== )?Events\s*:(.*)$", stderr, re.M)
    col = re.search(r"^(?:==\d+== )?Collected\s*:(.*)$", stderr, re.M)
    return _zip_events(ev.group(1), col.group(1)) if ev and col else None


def parse_out_file(text: str) -> dict[str, int] | None:
    """The counts of a callgrind output file: its ``events:`` header and its
    ``totals:`` (or, failing that, ``summary:``) line; None if absent."""
    ev = re.search(r"^events:(.*)$", text, re.M)
    tot = re.search(r"^totals:(.*)$", text, re.M) or re.search(r"^summary:(.*)$", text, re.M)
    return _zip_events(ev.group(1), tot.group(1)) if ev and tot else None


def counts(module_args: list[str], out_dir: str, what: str, valgrind_args: list[str] = (),
           env: dict[str, str] | None = None) -> dict[str, int]:
    """Every event callgrind collects while ``python -m MODULE_ARGS`` runs
    inside functools.reduce, by name (``Ir``; with ``--cache-sim=yes`` also
    ``I1mr`` ... ``DLmw``); callgrind's output file is ``out_dir/cg.out``;
    ``env`` is added to the child's environment.  SystemExit naming ``what``
    if the run fails."""
    out_file = Path(out_dir) / "cg.out"
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", *valgrind_args, "--collect-atstart=no",
         "--toggle-collect=functools_reduce", f"--callgrind-out-file={out_file}",
         sys.executable, "-m", *module_args],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env} if env else None)
    found = parse_collected(out.stderr)
    if found is None and out_file.exists():
        found = parse_out_file(out_file.read_text(errors="replace"))
    if out.returncode != 0 or not found:
        raise SystemExit(f"callgrind failed on {what}:\n{out.stderr[-2000:]}")
    return found


def instructions(module_args: list[str], out_dir: str, what: str) -> int:
    """The instructions ``python -m MODULE_ARGS`` runs inside functools.reduce
    (callgrind's output goes to ``out_dir``); SystemExit naming ``what`` if
    the run fails."""
    return counts(module_args, out_dir, what)["Ir"]
