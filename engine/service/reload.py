"""Live reload: compile a changed pack away from the decision path, gate it
on its rule tests, swap it in atomically, keep every version for rollback.

::

    rules dir ─ read ─▶ sources ─ same fingerprint as last time? ─▶ nothing to do
                            │
                            │ the live version's rules (only the tests changed, or an
                            │ edit was reverted)? ─▶ its rule tests run in the compiler;
                            │   a failure is kept and logged as a refused edit's is
                            │   (rejected_version: the live one), nothing is swapped
                            ▼ compiler: another process, so that no decision
                              thread waits on the GIL while a pack compiles
                          build + rule tests (RULES/tests/*.yaml), and the version's
                          files written to the state dir (VersionStore.keep)
                            │ errors or failing tests ─▶ LoadError kept and logged;
                            │                            the last good version serves on
                            ▼
                          Bundle (version, sources, Program) ─▶ target.install
                            (LocalTarget: this process's RulesetHolder;
                             engine.server.workers.FanoutRules: every worker)
                            ▼
                          VersionStore.save   (the history line: live)

:class:`RulesManager` is the rules controller the admin service calls
(validate, reload, rollback, sources, state) and the one the watcher pokes
(:meth:`RulesManager.request_reload`).  Every change of the live version goes
through it under one lock, so compare-and-swap on the version holds for
ReloadRules, watcher reloads and rollbacks alike.

What the watcher does after a rollback: nothing, until the rules directory
changes.  The manager remembers the fingerprint of the directory (pack
version + rule test files) it last acted on; a rollback records the
directory as it was then, so the rolled-back version stays live until a file
changes (or ReloadRules, which always reads the directory).  The same holds
across a restart: the history line of a rollback carries that fingerprint.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import ruletest
from ..compile import compile_sources
from ..diagnostics import Diagnostic, PackError, render_one_line
from ..ir.program import Program
from ..ruleset import Ruleset, assemble, build, content_hash
from ..source import SourceFile
from ..versions import VersionStore, relative_names
from .errors import Aborted, FailedPrecondition, NotFound
from .rules import LoadError, ReloadResult, RulesetHolder, RulesetState, TestFailure, Validation, read_pack

log = logging.getLogger("maple.reload")

Payload = list[tuple[str, str]]          # (path, text) per file: what crosses a process boundary


def payload_of(sources) -> Payload:
    return [(s.path, s.text) for s in sources]


def sources_of(payload: Payload) -> list[SourceFile]:
    return [SourceFile(p, t) for p, t in payload]


# ---------------------------------------------------------------- a compiled pack
class LazyChecked:
    """A ruleset's checked model, built on first use.

    Only explanations read it (engine.eval.explain).  A pack compiled in the
    compiler process ships its Program (0.5 MB and 5 ms to pickle for 1,000
    rules) but not its checked model (2.8 MB, 0.4 s, unpickled under the
    GIL), so a serving process checks the sources again the first time an
    explanation is asked of a version, once per version."""

    def __init__(self, sources):
        self._sources = list(sources)
        self._lock = threading.Lock()
        self._value = None

    def resolve(self):
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = compile_sources(self._sources).checked
        return self._value

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


@dataclass(frozen=True)
class Bundle:
    """A pack compiled (and tested) somewhere: what a serving process needs
    to load it without compiling.  Picklable; sent to every worker."""
    version: str
    sources: tuple[SourceFile, ...]
    program: Program
    warnings: tuple[Diagnostic, ...]
    compile_seconds: float
    counts: dict
    tests_passed: int = 0

    def ruleset(self) -> Ruleset:
        return assemble(self.version, self.program, LazyChecked(self.sources), self.sources, self.warnings,
                        self.compile_seconds)


@dataclass(frozen=True)
class Compiled:
    """A compile's outcome, as a value (a PackError does not survive pickling)."""
    bundle: Bundle | None
    error: LoadError | None


def compile_pack(payload: Payload, rules_dir: str | None, run_tests: bool, keep_in: str | None = None) -> Compiled:
    """Compile one pack and, with ``run_tests``, run the rule tests of
    ``rules_dir`` on it; a pack that passes is written to the version store
    ``keep_in`` (its files, not yet its history line).  Runs in the compiler
    process."""
    try:
        rs = build(sources_of(payload))
    except PackError as err:
        return Compiled(None, LoadError.of(err, "compile"))
    passed = 0
    if run_tests and rules_dir is not None:
        report = ruletest.run(rs, rules_dir)
        if not report.ok:
            return Compiled(None, tests_error(report, rs.version))
        passed = report.passed
    if keep_in is not None:
        try:
            VersionStore(keep_in).keep(rs, os.path.abspath(rules_dir) if rules_dir else "")
        except OSError as err:                      # the serving process tries again when it records it
            log.warning("could not keep version %s in %s: %s", rs.version, keep_in, err)
    return Compiled(Bundle(rs.version, rs.sources, rs.program, rs.warnings, rs.compile_seconds, rs.counts,
                           passed), None)


def tests_error(report: ruletest.Report, version: str) -> LoadError:
    failures = []
    for text in report.errors:                       # "path:line: what" of a test file that does not load
        where, _, what = text.partition(": ")
        failures.append(TestFailure(where, "(test file)", what or text))
    for r in report.results:
        if not r.passed:
            failures.append(TestFailure(r.where, r.name, r.error.replace("\n", "; ") if r.error
                                        else "; ".join(_mismatch(m) for m in r.mismatches)))
    message = f"version {version} compiles but its rule tests fail: {_first_failure(failures)}"
    return LoadError(time.time(), message, (), "tests", tuple(failures), "", version)


def live_tests_error(err: LoadError) -> LoadError:
    """``err`` (failing tests) when the tested version is the live one: only
    the tests changed, so nothing is refused but the tests themselves.  The
    version is the rules' (a hash of the .rules files, not of the tests), so
    ``rejected_version`` is the live version."""
    message = (f"the rule tests fail against the live version {err.rejected_version} (its rules are unchanged): "
               f"{_first_failure(err.test_failures)}")
    return dataclasses.replace(err, message=message)


def _first_failure(failures) -> str:
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{first.location}: {first.name}: {first.message}{more}"


def _mismatch(m) -> str:
    label = {"value": "", "rule": " (deciding rule)", "source": " (source)"}[m.what]
    return (f"{m.decision}{label}: expected {json.dumps(m.expected, default=str)}, "
            f"actual {json.dumps(m.actual, default=str)}")


# ---------------------------------------------------------------- compilers
class InlineCompiler:
    """Compile in the calling thread: at startup (nothing is served yet), in
    the supervisor of ``--workers N`` (which serves no decisions), in tests."""

    def compile(self, payload: Payload, rules_dir: str | None, run_tests: bool, keep_in: str | None = None
                ) -> Compiled:
        return compile_pack(payload, rules_dir, run_tests, keep_in)

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


#: the compiler process's niceness: decisions come first, a reload waits for spare CPU
COMPILER_NICE = 10
#: MAPLE_COMPILER_SCHED's values: ``idle`` (the default; on Linux SCHED_IDLE as
#: well as the nice value) or ``nice`` (the nice value alone)
COMPILER_SCHEDS = ("idle", "nice")


def compiler_sched_from_env() -> str:
    """MAPLE_COMPILER_SCHED: ``idle`` (the default) runs the compiler process
    at SCHED_IDLE too, so it gets only CPU no other thread wants and a host
    whose decisions keep every core busy reloads only as fast as idle time
    comes; ``nice`` leaves it at the nice value alone, a small but steady
    share under full load. SystemExit naming the variable on anything else."""
    name = os.environ.get("MAPLE_COMPILER_SCHED", "idle") or "idle"
    if name not in COMPILER_SCHEDS:
        raise SystemExit(f"maple serve: MAPLE_COMPILER_SCHED={name!r}: use one of {', '.join(COMPILER_SCHEDS)}")
    return name


def _child_init(cpus: tuple[int, ...] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the server's to handle
    if cpus:        # the server kept itself on one CPU (--cpu-affinity): compile on any of these instead
        os.sched_setaffinity(0, set(cpus))
    # A server killed outright (kill -9, OOM) cannot shut its pool down, and a
    # pool worker waiting for work never notices: leave with the parent.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="maple-parent-watch",
                         daemon=True).start()
    try:
        os.nice(COMPILER_NICE)
    except OSError:                                  # not allowed here: compile at normal priority
        pass
    # SCHED_IDLE (Linux): the compiler runs only on a core nothing else wants,
    # and a waking decision thread preempts it at once; a nice value alone
    # still lets it hold a core for a few ms against the server's threads.
    if compiler_sched_from_env() == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _warm() -> bool:
    return True


class ProcessCompiler:
    """Compile in one long-lived child process (spawned, never forked: gRPC
    does not survive a fork), at a lower CPU priority (:data:`COMPILER_NICE`).
    A single-process server answers decisions in this process; compiling here
    would hold its GIL for the whole compile (tens of ms for the reference
    pack, about a second for 1,000 rules); the supervisor of ``--workers N``
    keeps its admin and health threads responsive the same way.

    ``cpus``: the CPUs the child may run on, for a server that keeps itself
    on one (``maple serve --cpu-affinity``; the child would inherit that
    one CPU and compete with the decisions on it); None: as this process."""

    def __init__(self, cpus: tuple[int, ...] | None = None):
        self._cpus = cpus
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=_child_init,
                    initargs=(self._cpus,))
            return self._pool

    def start(self) -> None:
        """Start the child now rather than on the first edit."""
        self._executor().submit(_warm)

    def compile(self, payload: Payload, rules_dir: str | None, run_tests: bool, keep_in: str | None = None
                ) -> Compiled:
        for _attempt in range(2):
            pool = self._executor()
            try:
                return pool.submit(compile_pack, payload, rules_dir, run_tests, keep_in).result()
            except concurrent.futures.process.BrokenProcessPool:
                log.error("the compiler process died; starting another")
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
        raise RuntimeError("the compiler process died twice in a row")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- where a version goes
class Target(Protocol):
    def install(self, bundle: Bundle, ruleset: Ruleset, expected_version: str | None) -> str:
        """Serve ``bundle`` (``ruleset`` is it, loaded here); return the
        version served before."""

    def serving(self) -> tuple[tuple[int, str], ...]:
        """(pid, version) of every process serving decisions."""


class LocalTarget:
    """This process's holder: the decision threads read ``holder.current``."""

    def __init__(self, holder: RulesetHolder):
        self.holder = holder

    def install(self, bundle: Bundle, ruleset: Ruleset, expected_version: str | None) -> str:
        return self.holder.swap(ruleset, expected_version)

    def serving(self) -> tuple[tuple[int, str], ...]:
        rs = self.holder.current
        return ((os.getpid(), rs.version if rs is not None else ""),)


class ReloadListener(Protocol):
    def reloaded(self, result: str, failure: str | None, seconds: float) -> None:
        """result: ok | error | aborted; failure: compile | tests | read."""

    def rolled_back(self, seconds: float) -> None: ...


class _NoListener:
    def reloaded(self, result, failure, seconds) -> None:
        pass

    def rolled_back(self, seconds) -> None:
        pass


def fingerprint(version: str, rules_dir: str) -> str:
    """What the watcher compares: the pack's version and its rule test files."""
    h = hashlib.sha256(version.encode())
    root = Path(rules_dir)
    for p in ruletest.find_files(root):
        h.update(b"\0" + str(p.relative_to(root)).encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"\0unreadable")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the manager
class RulesManager:
    """Loads, reloads, rolls back and reports the rules of one server."""

    def __init__(self, rules_dir: str, target: Target, *, store: VersionStore | None = None,
                 compiler=None, run_tests: bool = True, listener: ReloadListener | None = None,
                 watch: str = "off"):
        self.rules_dir = rules_dir
        self.target = target
        self.store = store
        self.compiler = compiler or InlineCompiler()
        self.run_tests = run_tests
        self.listener = listener or _NoListener()
        self.watch = watch
        self.current: Ruleset | None = None
        self.origin = ""
        self.last_error: LoadError | None = None
        self._seen: str | None = None          # the directory fingerprint last acted on
        self._lock = threading.RLock()
        self._wake = threading.Condition()
        self._dirty = False
        self._closed = False
        self._loop: threading.Thread | None = None

    # ------------------------------------------------------------ startup
    def load_initial(self) -> Ruleset | None:
        """Load the directory (compiled in this thread: nothing is served
        yet).  Keep a rollback the directory has not changed since.  When
        the directory does not load, start from the last good version kept
        in the state directory, and say so (``origin = "state"``, the
        directory's error stays in ``last_error``)."""
        t0 = time.perf_counter()
        with self._lock:
            try:
                sources = read_pack(self.rules_dir)
            except PackError as err:
                self._seen = _unreadable_key(err)
                error = LoadError.of(err, "read", "startup")
            else:
                key = fingerprint(content_hash(sources), self.rules_dir)
                self._seen = key
                kept = self._kept_rollback(key)
                if kept is not None:
                    log.info("keeping the rolled-back version %s: %s has not changed since the rollback",
                             kept, self.rules_dir)
                    rs = self._install_kept(kept, "kept", t0)
                    if rs is not None:
                        self.listener.reloaded("ok", None, time.perf_counter() - t0)
                        return rs
                compiled = InlineCompiler().compile(payload_of(sources), self.rules_dir, self.run_tests)
                if compiled.bundle is not None:
                    return self._install(compiled.bundle, None, "startup", key, t0).ruleset
                error = dataclasses.replace(compiled.error, trigger="startup")
            fallback = self.store.current() if self.store is not None and self._owns_state() else None
            self._refuse(error, t0, None if fallback is None else
                         f"falling back to the last good version {fallback}, kept in {self.store.root}")
            return self._fall_back(error, t0)

    def _kept_rollback(self, key: str) -> str | None:
        if self.store is None:
            return None
        last = self.store.last_live()
        if last and last.get("trigger") == "rollback" and last.get("fingerprint") == key and self._owns_state():
            return last["version"]
        return None

    def _fall_back(self, error: LoadError, t0: float) -> Ruleset | None:
        if self.store is None:
            return None
        version = self.store.current()
        if version is None:
            log.error("no earlier version is kept in %s to fall back to: NOT_SERVING until the rules load",
                      self.store.root)
            return None
        if not self._owns_state():
            log.error("%s was last used for another rules directory; not falling back to its version %s",
                      self.store.root, version)
            return None
        rs = self._install_kept(version, "state", t0)
        if rs is not None:
            self.last_error = error                # the directory is still broken: say so
            log.warning("the rules in %s did not load; serving the last good version %s kept in %s "
                        "(it was live before this restart)", self.rules_dir, version, self.store.root)
        return rs

    def _install_kept(self, version: str, origin: str, t0: float) -> Ruleset | None:
        try:
            payload = payload_of(self.store.sources(version))
        except (KeyError, OSError) as err:
            log.error("cannot read the kept version %s: %s", version, err)
            return None
        compiled = InlineCompiler().compile(payload, None, False)
        if compiled.bundle is None:
            log.error("the kept version %s does not compile any more: %s", version, compiled.error.message)
            return None
        rs = compiled.bundle.ruleset()
        previous = self._swap(compiled.bundle, rs, None, origin)
        log.info("serving %s (%s; was %s) in %.0f ms", rs.version, origin, previous or "nothing",
                 (time.perf_counter() - t0) * 1000)
        return rs

    def _owns_state(self) -> bool:
        """Whether the state directory's history was written for this rules
        directory (a state directory shared by two packs must not hand one
        the other's version)."""
        mine = os.path.abspath(self.rules_dir)
        for e in reversed(self.store.history()):
            if e.get("event") == "live" and "rules_dir" in e:
                return e["rules_dir"] == mine
        return True

    # ------------------------------------------------------------ reload
    def reload(self, expected_version: str | None = None, trigger: str = "reload") -> ReloadResult:
        """Read the directory and make it live if it compiles and its rule
        tests pass.  Raises Aborted (``expected_version`` is not current) or
        FailedPrecondition (diagnostics or test failures; nothing changes)."""
        return self._reload(expected_version, trigger, force=True)

    def reload_if_changed(self) -> ReloadResult | None:
        """The watcher's reload: None when the directory (pack and rule
        tests) is what was last acted on, a rejected edit included."""
        return self._reload(None, "watch", force=False)

    def _reload(self, expected_version: str | None, trigger: str, force: bool) -> ReloadResult | None:
        t0 = time.perf_counter()
        with self._lock:
            self._check_expected(expected_version)
            try:
                sources = read_pack(self.rules_dir)
            except PackError as err:
                key = _unreadable_key(err)
                if not force and key == self._seen:
                    return None
                self._seen = key
                raise self._refuse(LoadError.of(err, "read", trigger), t0)
            version = content_hash(sources)
            key = fingerprint(version, self.rules_dir)
            if not force and key == self._seen:
                return None                        # nothing changed since we last looked
            self._seen = key
            current = self.current
            if current is not None and version == current.version:
                self._test_live(sources, trigger, t0)
                self._consistent(t0)
                return ReloadResult(version, current, False)
            compiled = self.compiler.compile(payload_of(sources), self.rules_dir, self.run_tests,
                                             str(self.store.root) if self.store is not None else None)
            if compiled.error is not None:
                raise self._refuse(dataclasses.replace(compiled.error, trigger=trigger), t0)
            return self._install(compiled.bundle, expected_version, trigger, key, t0)

    def _test_live(self, sources: list[SourceFile], trigger: str, t0: float) -> None:
        """The directory holds the live rules, but its rule tests may not be
        the ones they last passed (a test file changed, or a refused edit was
        reverted): run them against the live rules, in the compiler as any
        reload's tests.  Raises (through :meth:`_refuse`) when one fails; the
        live version serves on, as it would after a refused edit."""
        if not self.run_tests or not ruletest.find_files(Path(self.rules_dir)):
            return
        compiled = self.compiler.compile(payload_of(sources), self.rules_dir, True)
        if compiled.error is not None:
            error = compiled.error
            if error.failure == "tests":
                error = live_tests_error(error)
            raise self._refuse(dataclasses.replace(error, trigger=trigger), t0)
        log.info("%s: the rules in %s are the live version %s; its %d rule tests pass", trigger, self.rules_dir,
                 compiled.bundle.version, compiled.bundle.tests_passed)

    def _check_expected(self, expected_version: str | None) -> None:
        if not expected_version:
            return
        current = self.current.version if self.current is not None else ""
        if expected_version != current:
            self.listener.reloaded("aborted", None, 0.0)
            raise Aborted(f"expected version {expected_version} but {current or 'none'} is current")

    def _install(self, bundle: Bundle, expected_version: str | None, trigger: str, key: str | None,
                 t0: float) -> ReloadResult:
        rs = bundle.ruleset()
        t_swap = time.perf_counter()
        previous = self._swap(bundle, rs, expected_version, trigger)
        swap_ms = (time.perf_counter() - t_swap) * 1000
        seconds = time.perf_counter() - t0
        if trigger == "rollback":
            self.listener.rolled_back(seconds)
        else:
            self.listener.reloaded("ok", None, seconds)
        self.last_error = None                       # after the metrics: GetRuleset never runs ahead of them
        self._save(rs, trigger, key)
        tested = ("a kept version, not tested again" if trigger == "rollback"
                  else f"{bundle.tests_passed} rule tests passed")
        log.info("%s: serving %s (was %s): compiled in %.0f ms, %s, swapped in %.1f ms, %.0f ms in all",
                 trigger, rs.version, previous or "nothing", bundle.compile_seconds * 1000, tested, swap_ms,
                 seconds * 1000)
        return ReloadResult(previous, rs, previous != rs.version)

    def _swap(self, bundle: Bundle, rs: Ruleset, expected_version: str | None, origin: str) -> str:
        """Install; ``current`` is set first, so that GetRuleset never lags
        behind what the decision threads (and health) already see."""
        before = self.current, self.origin
        self.current, self.origin = rs, origin
        try:
            return self.target.install(bundle, rs, expected_version)
        except BaseException:
            self.current, self.origin = before
            raise

    def _save(self, rs: Ruleset, trigger: str, key: str | None) -> None:
        if self.store is None:
            return
        origin = "rollback" if trigger == "rollback" else os.path.abspath(self.rules_dir)
        try:
            self.store.save(rs, origin, trigger=trigger, rules_dir=os.path.abspath(self.rules_dir),
                            fingerprint=key)
        except OSError as err:                       # keep serving; rollback to it is what is lost
            log.error("could not keep version %s in %s: %s", rs.version, self.store.root, err)

    def _consistent(self, t0: float) -> None:
        """The directory holds the live version (again)."""
        self.listener.reloaded("ok", None, time.perf_counter() - t0)
        if self.last_error is not None:
            log.info("%s holds the live version %s again; the last reload error is cleared",
                     self.rules_dir, self.current.version)
            self.last_error = None

    def _refuse(self, err: LoadError, t0: float, serving: str | None = None) -> FailedPrecondition:
        """Remember and report a pack that was not loaded; the caller raises
        the returned status (ReloadRules) or swallows it (watcher).
        ``serving``: what serves instead, when it is not the live version
        (at startup: the kept version about to be installed)."""
        if err.diagnostics:
            lines = [render_one_line(d) for d in err.diagnostics if d.is_error]
        else:
            lines = [f"{f.location}: {f.name}: {f.message}" for f in err.test_failures]
        lines = lines or [err.message]
        shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        if serving is None:
            serving = f"still serving {self.current.version}" if self.current is not None else "nothing is served"
        if err.failure == "tests" and self.current is not None and err.rejected_version == self.current.version:
            log.error("%s: the rule tests in %s fail against the live version %s (its rules are unchanged; it "
                      "keeps serving):\n  %s", err.trigger or "reload", self.rules_dir, self.current.version, shown)
        else:
            log.error("%s: the rules in %s were not loaded (%s); %s:\n  %s", err.trigger or "reload", self.rules_dir,
                      {"compile": "errors", "tests": "rule tests fail", "read": "cannot read them"}[err.failure],
                      serving, shown)
        if self.store is not None:
            try:
                self.store.record_rejected(lines, err.trigger or "reload")
            except OSError:
                pass
        self.listener.reloaded("error", err.failure, time.perf_counter() - t0)
        self.last_error = err                        # after the metrics: GetRuleset never runs ahead of them
        return refusal(err, self.current is not None)

    # ------------------------------------------------------------ the watcher's side
    def request_reload(self) -> None:
        """The directory changed (the watcher): reload in the background.
        Non-blocking; requests that arrive during a reload coalesce into one
        more reload, of the directory as it is then."""
        with self._wake:
            self._dirty = True
            if self._loop is None:
                self._loop = threading.Thread(target=self._background, name="maple-reload", daemon=True)
                self._loop.start()
            self._wake.notify()

    def _background(self) -> None:
        while True:
            with self._wake:
                while not self._dirty and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                self._dirty = False
            try:
                self.reload_if_changed()
            except (FailedPrecondition, Aborted):
                pass                                   # logged, and kept in last_error
            except Exception:
                log.exception("reloading %s failed", self.rules_dir)

    # ------------------------------------------------------------ rollback
    def rollback(self, to_version: str | None = None, expected_version: str | None = None) -> ReloadResult:
        """Make an earlier kept version live: the one before the current
        one, or ``to_version`` (a unique prefix will do).  Not re-tested."""
        t0 = time.perf_counter()
        with self._lock:
            self._check_expected(expected_version)
            store = self._need_store()
            current = self.current.version if self.current is not None else None
            if to_version:
                try:
                    target = store.resolve(to_version)
                except KeyError as err:
                    raise NotFound(f"{err.args[0]} in {store.root}") from None
            else:
                target = store.previous(current) if current else store.current()
                if target is None:
                    raise NotFound(f"no version before {current or 'none'} is kept in {store.root}")
            if target == current:
                return ReloadResult(current, self.current, False)
            compiled = self.compiler.compile(payload_of(store.sources(target)), None, False)
            if compiled.error is not None:
                raise FailedPrecondition(f"the kept version {target} does not compile any more: "
                                         f"{compiled.error.message}", compiled.error.diagnostics)
            self._seen = self._directory_key()       # the watcher leaves it alone until the directory changes
            return self._install(compiled.bundle, expected_version, "rollback", self._seen, t0)

    def _directory_key(self) -> str:
        try:
            return fingerprint(content_hash(read_pack(self.rules_dir)), self.rules_dir)
        except PackError as err:
            return _unreadable_key(err)

    def _need_store(self) -> VersionStore:
        if self.store is None:
            raise FailedPrecondition("this server keeps no versions (no state directory)")
        return self.store

    # ------------------------------------------------------------ reading
    def sources(self, version: str | None = None) -> tuple[str, Payload]:
        """The live version's sources (or a kept version's), with paths
        relative to the pack's root."""
        current = self.current
        if current is not None and (not version or current.version.startswith(version)):
            return current.version, list(zip(relative_names(current.sources), (s.text for s in current.sources)))
        if not version:
            raise FailedPrecondition("no ruleset is loaded")
        store = self._need_store()
        try:
            full = store.resolve(version)
        except KeyError as err:
            raise NotFound(f"{err.args[0]} in {store.root}") from None
        kept = store.sources(full)
        return full, list(zip(relative_names(kept), (s.text for s in kept)))

    def validate(self, sources: list[SourceFile]) -> Validation:
        compiled = self.compiler.compile(payload_of(sources), None, False)
        if compiled.error is not None:
            return Validation(False, compiled.error.diagnostics)
        b = compiled.bundle
        return Validation(True, b.warnings, b.version, b.counts)

    def state(self) -> RulesetState:
        return RulesetState(self.current, self.rules_dir, self.last_error, self.target.serving(), self.origin,
                            str(self.store.root) if self.store is not None else "", self.watch)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self.compiler.close()


def _unreadable_key(err: PackError) -> str:
    return "unreadable:" + hashlib.sha256(str(err).encode()).hexdigest()[:16]


def refusal(err: LoadError, serving: bool) -> FailedPrecondition:
    """The status a refused reload answers: FAILED_PRECONDITION naming the
    first problem (path:line:col, or the failing rule test)."""
    keep = "still serving the last good version" if serving else "nothing is served until a pack loads"
    if err.failure == "tests":
        return FailedPrecondition(
            f"{err.message}; {keep}", (),
            tuple(("RULE_TEST", f.location, f"{f.name}: {f.message}") for f in err.test_failures))
    errors = [d for d in err.diagnostics if d.is_error]
    what = "the rules directory cannot be read" if err.failure == "read" else "the rules do not compile"
    msg = f"{what}; {keep}: " + (render_one_line(errors[0]) if errors else err.message)
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more)"
    return FailedPrecondition(msg, err.diagnostics)


class LocalRules(RulesManager):
    """The rules controller of one process and nothing more: compiles in the
    calling thread, keeps no versions, no watcher (unit tests, embedding)."""

    def __init__(self, rules_dir: str, holder: RulesetHolder):
        super().__init__(rules_dir, LocalTarget(holder))
        self.holder = holder
