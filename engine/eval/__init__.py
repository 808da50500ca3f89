"""Evaluators: the compiled Cython kernel (production) and its pure-Python twin.

:func:`load_kernel` is the selector.  ``MAPLE_KERNEL=python`` picks the twin
explicitly (for debugging); otherwise the compiled kernel is required and a
missing build is an error, never a silent fall back to Python.
"""
from __future__ import annotations

import os

from ..ir.program import Program


class KernelNotBuilt(RuntimeError):
    pass


def kernel_class(kind: str | None = None):
    kind = kind or os.environ.get("MAPLE_KERNEL", "compiled")
    if kind == "python":
        from .pykernel import PyKernel
        return PyKernel
    if kind != "compiled":
        raise ValueError(f"MAPLE_KERNEL must be 'compiled' or 'python', not {kind!r}")
    try:
        from ._kernel import Kernel
    except ImportError as err:  # pragma: no cover - exercised only on a broken install
        raise KernelNotBuilt(
            "the compiled kernel (engine/eval/_kernel) is not built: install Maple with "
            "`pip install -e .` (needs a C compiler at install time), or set MAPLE_KERNEL=python "
            "to use the slow pure-Python twin on purpose") from err
    return Kernel


def load_kernel(program: Program, kind: str | None = None, use_index: bool = True):
    return kernel_class(kind)(program, use_index=use_index)
