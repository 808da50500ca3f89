"""Check: resolve names and types against the pack's schema."""
from .checker import check
from .model import CheckedPack

__all__ = ["check", "CheckedPack"]
