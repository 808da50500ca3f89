"""The compiled kernel is what production loads: never a silent fallback."""
from __future__ import annotations

import importlib.machinery

import pytest

import engine.eval._kernel as compiled_module
from engine import ruleset
from engine.eval import KernelNotBuilt, kernel_class
from engine.eval.pykernel import PyKernel
from engine.source import SourceFile
from tests.conftest import TEST_SCHEMA


def test_the_kernel_module_is_a_compiled_extension():
    assert compiled_module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert compiled_module.compiled is True


def test_a_loaded_ruleset_runs_on_the_compiled_kernel(monkeypatch):
    monkeypatch.delenv("MAPLE_KERNEL", raising=False)
    rs = ruleset.build([SourceFile("s.rules", TEST_SCHEMA), SourceFile("r.rules", "decision d: number\nrule r then d = 1\n")])
    assert type(rs.kernel) is compiled_module.Kernel
    assert type(rs.kernel).__module__ == "engine.eval._kernel"


def test_the_python_twin_is_chosen_only_on_purpose(monkeypatch):
    monkeypatch.setenv("MAPLE_KERNEL", "python")
    assert kernel_class() is PyKernel
    monkeypatch.setenv("MAPLE_KERNEL", "fast")
    with pytest.raises(ValueError):
        kernel_class()


def test_a_missing_build_is_an_error_not_a_fallback(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_kernel(name, *args, **kwargs):
        if name.endswith("_kernel") or (args and args[2] and "_kernel" in args[2]):
            raise ImportError("simulated: extension not built")
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv("MAPLE_KERNEL", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_kernel)
    with pytest.raises(KernelNotBuilt, match="not built"):
        kernel_class()
