"""IR: opcodes, the Program data structure and its disassembler."""
from .opcodes import Op
from .program import FORMAT_VERSION, Program

__all__ = ["Op", "FORMAT_VERSION", "Program"]
