"""Counting instructions with callgrind, for bench.decide_cost and
bench.ingest_cost: a child ``python -m ...`` does its setup uncounted and
runs the measured calls inside ``functools.reduce``; only those are counted
(``--toggle-collect``), so the count is the calls', whatever else runs on
the machine."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def require_valgrind(prog: str) -> None:
    if not shutil.which("valgrind"):
        raise SystemExit(f"{prog}: needs valgrind (apt-get install valgrind)")


def instructions(module_args: list[str], out_dir: str, what: str) -> int:
    """The instructions ``python -m MODULE_ARGS`` runs inside functools.reduce
    (callgrind's output goes to ``out_dir``); SystemExit naming ``what`` if
    the run fails."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
         f"--callgrind-out-file={out_dir}/cg.out", sys.executable, "-m", *module_args],
        cwd=ROOT, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not m:
        raise SystemExit(f"callgrind failed on {what}:\n{out.stderr[-2000:]}")
    return int(m.group(1))
