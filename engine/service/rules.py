"""The current ruleset of a serving process, swapped atomically.

:class:`RulesetHolder` holds one immutable :class:`~engine.ruleset.Ruleset`;
a request reads ``holder.current`` once and is computed entirely by that
version, so a reload never mixes two versions in one response.  A failed
load leaves the last good ruleset in place and is remembered as
``last_error``.  :class:`LocalRules` is the admin side for a single process:
validate sources, reload the rules directory with compare-and-swap on the
version.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..diagnostics import Diagnostic, Diagnostics, PackError, render_one_line
from ..ruleset import Ruleset, build, read_sources
from ..source import SourceFile
from .errors import Aborted, FailedPrecondition


@dataclass(frozen=True)
class LoadError:
    at: float
    message: str
    diagnostics: tuple[Diagnostic, ...]

    @classmethod
    def of(cls, err: PackError) -> "LoadError":
        return cls(time.time(), str(err), tuple(err.diagnostics))


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


@dataclass(frozen=True)
class ReloadResult:
    previous_version: str
    ruleset: Ruleset
    changed: bool


class RulesetHolder:
    """One process's current ruleset.  Reads are a plain attribute load."""

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


def validate_sources(sources: list[SourceFile]) -> Validation:
    """Compile without installing: diagnostics, and the version when ok."""
    try:
        rs = build(sources)
    except PackError as err:
        return Validation(False, tuple(err.diagnostics))
    return Validation(True, tuple(rs.warnings), rs.version, rs.counts)


def precondition_from(err: LoadError) -> FailedPrecondition:
    errors = [d for d in err.diagnostics if d.is_error]
    msg = "the rules do not compile; still serving the last good version: " + (
        render_one_line(errors[0]) if errors else err.message)
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more)"
    return FailedPrecondition(msg, err.diagnostics)


class LocalRules:
    """Admin operations on the rules of this process (``--workers 1``)."""

    def __init__(self, rules_dir: str, holder: RulesetHolder):
        self.rules_dir = rules_dir
        self.holder = holder
        self._reload_lock = threading.Lock()

    def load_initial(self) -> Ruleset | None:
        try:
            rs = build(read_pack(self.rules_dir))
        except PackError as err:
            self.holder.fail(err)
            return None
        self.holder.swap(rs)
        return rs

    def validate(self, sources: list[SourceFile]) -> Validation:
        return validate_sources(sources)

    def reload(self, expected_version: str | None = None) -> ReloadResult:
        with self._reload_lock:     # one compile at a time; the swap itself is atomic
            current = self.holder.current
            if expected_version and (current is None or current.version != expected_version):
                raise Aborted(f"expected version {expected_version} but "
                              f"{current.version if current else 'none'} is current")
            try:
                rs = build(read_pack(self.rules_dir))
            except PackError as err:
                raise precondition_from(self.holder.fail(err)) from None
            previous = self.holder.swap(rs, expected_version)
            return ReloadResult(previous, rs, previous != rs.version)

    def state(self) -> RulesetState:
        import os
        rs = self.holder.current
        return RulesetState(rs, self.rules_dir, self.holder.last_error,
                            ((os.getpid(), rs.version if rs else ""),))
