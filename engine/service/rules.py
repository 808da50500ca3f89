"""The current ruleset of a serving process, swapped atomically.

:class:`RulesetHolder` holds one immutable :class:`~engine.ruleset.Ruleset`;
a request reads ``holder.current`` once and is computed entirely by that
version, so a reload never mixes two versions in one response.  A failed
load leaves the last good ruleset in place and is remembered as
``last_error``.  The admin side (validate, reload with compare-and-swap,
rollback, the live-reload gate) is :mod:`engine.service.reload`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..diagnostics import Diagnostic, Diagnostics, PackError
from ..ruleset import Ruleset, read_sources
from ..source import SourceFile
from .errors import Aborted


@dataclass(frozen=True)
class TestFailure:
    """One rule test case that failed (live reload refuses the pack)."""
    location: str        # rules/tests/offers.yaml:12
    name: str
    message: str


@dataclass(frozen=True)
class LoadError:
    at: float
    message: str
    diagnostics: tuple[Diagnostic, ...]
    failure: str = "compile"                      # "compile" | "tests" | "read"
    test_failures: tuple[TestFailure, ...] = ()
    trigger: str = ""                             # "startup" | "watch" | "reload"
    rejected_version: str = ""                    # the refused version, when it compiled

    @classmethod
    def of(cls, err: PackError, failure: str = "compile", trigger: str = "") -> "LoadError":
        return cls(time.time(), str(err), tuple(err.diagnostics), failure, (), trigger)


@dataclass(frozen=True)
class Validation:
    ok: bool
    diagnostics: tuple[Diagnostic, ...]
    version: str = ""
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RulesetState:
    """What GetRuleset reports."""
    ruleset: Ruleset | None
    rules_dir: str
    last_error: LoadError | None
    workers: tuple[tuple[int, str], ...] = ()     # (pid, version) of each serving process
    origin: str = ""                              # how the version became live (RulesetInfo.origin)
    state_dir: str = ""
    watch: str = ""


@dataclass(frozen=True)
class ReloadResult:
    previous_version: str
    ruleset: Ruleset
    changed: bool


class RulesetHolder:
    """One process's current ruleset.  Reads are a plain attribute load
    (a slot: the compiled Decide reads it there)."""

    __slots__ = ("current", "last_error", "_lock", "_listeners", "__dict__", "__weakref__")

    def __init__(self, ruleset: Ruleset | None = None):
        self.current: Ruleset | None = ruleset
        self.last_error: LoadError | None = None
        self._lock = threading.Lock()
        self._listeners: list = []

    def on_swap(self, listener) -> None:
        """Call ``listener(ruleset)`` after every successful swap."""
        self._listeners.append(listener)

    def swap(self, new: Ruleset, expected_version: str | None = None) -> str:
        """Install ``new``; with ``expected_version``, only if it is current.
        Returns the previous version ("" when there was none)."""
        with self._lock:
            previous = self.current.version if self.current is not None else ""
            if expected_version and expected_version != previous:
                raise Aborted(f"expected version {expected_version} but {previous or 'none'} is current")
            self.current = new
            self.last_error = None
        for listener in self._listeners:
            listener(new)
        return previous

    def fail(self, err: PackError) -> LoadError:
        self.last_error = LoadError.of(err)
        return self.last_error


def read_pack(rules_dir: str) -> list[SourceFile]:
    diags = Diagnostics()
    sources = read_sources(rules_dir, diags)
    if diags.has_errors:
        raise PackError(diags.sorted())
    return sources
