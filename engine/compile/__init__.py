"""Compile: lower a checked pack to the IR and index every decision."""
from .pipeline import CompileResult, compile_sources, link

__all__ = ["CompileResult", "compile_sources", "link"]
