"""A loaded rule pack: compiled once, immutable, versioned by content hash.

:func:`load` reads every ``*.rules`` file of a directory (recursively, in
path order), compiles it, and returns a :class:`Ruleset`; a pack with any
error raises :class:`~engine.diagnostics.PackError` carrying every
diagnostic.  :meth:`Ruleset.decide` evaluates one customer with the compiled
kernel and returns typed outcomes that say which rule decided and why.
Servers swap whole Ruleset objects, so a response is computed entirely by one
version.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import limits
from .compile import compile_sources
from .diagnostics import Diagnostic, Diagnostics, PackError
from .eval import load_kernel
from .eval.values import render_value
from .ir.program import CandidateIR, DecisionIR, Program
from .source import SourceFile, Span


# ---------------------------------------------------------------- outcomes
@dataclass(slots=True)
class Reason:
    """Why a candidate (rule or offer) decided: its name, text and place.
    (Not frozen, like Outcome: a scored offer's reason is built on every
    call, and a frozen class costs three times as much to build; the
    ruleset shares one per rule, so treat them as read-only.)"""
    name: str
    kind: str                      # "rule" | "offer"
    because: str | None
    location: str                  # path:line:col
    score: float | None = None


@dataclass(slots=True)
class OfferChoice:
    id: str
    message: str
    fields: dict
    score: float
    reason: Reason


@dataclass(slots=True)
class Outcome:
    """One decision's answer.

    ``value``: a value decision's value (a list for ``pick all``); a record
    decision's fields (defaults overridden by the winning rule); an offer
    decision's offers, best first.  ``source`` is "rule" when a rule or offer
    decided, "default" when none did, "holdout" when an experiment held the
    customer out, "capped" when a decision-level cap was reached.  (Plain
    slotted classes, not frozen ones: they are built on every call; treat
    them as read-only.)
    """
    decision: str
    kind: str
    value: Any
    source: str
    reasons: tuple[Reason, ...] = ()
    experiments: tuple[tuple[str, str], ...] = ()
    explanation: Any = None

    @property
    def reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None


@dataclass(slots=True)
class DecisionSet:
    version: str
    now: float | None
    outcomes: dict[str, Outcome]

    def __getitem__(self, name: str) -> Outcome:
        return self.outcomes[name]

    def to_dict(self) -> dict:
        return {"version": self.version, "now": self.now,
                "decisions": {n: outcome_to_dict(o) for n, o in self.outcomes.items()}}


def outcome_to_dict(o: Outcome) -> dict:
    value = o.value
    if o.kind == "offer":
        value = [{"id": c.id, "message": c.message, "fields": c.fields, "score": c.score,
                  "because": c.reason.because, "location": c.reason.location} for c in value]
    d = {"value": _jsonable(value), "source": o.source,
         "reasons": [{"name": r.name, "kind": r.kind, "because": r.because, "location": r.location,
                      **({"score": r.score} if r.score is not None else {})} for r in o.reasons]}
    if o.experiments:
        d["experiments"] = [{"experiment": e, "variant": v} for e, v in o.experiments]
    if o.explanation is not None:
        d["explanation"] = o.explanation
    return d


def _jsonable(v):
    if isinstance(v, float) and v == int(v) and abs(v) < 2 ** 53:
        return int(v)
    if isinstance(v, tuple):
        return {"lat": v[0], "lon": v[1]}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------- the ruleset
@dataclass(frozen=True, eq=False)
class Ruleset:
    version: str
    program: Program
    checked: Any                          # engine.check.model.CheckedPack
    sources: tuple[SourceFile, ...]
    warnings: tuple[Diagnostic, ...]
    loaded_at: float
    compile_seconds: float
    kernel: Any = field(repr=False)
    _by_name: dict = field(repr=False, default_factory=dict)
    #: per decision, per candidate rank: its Reason (score-less), built once
    _reasons: tuple = field(repr=False, default=())
    #: per decision, per candidate rank: (output field names, an offer's static message or None)
    _shapes: tuple = field(repr=False, default=())
    #: per decision: a record decision's field defaults (copied per call), else None
    _defaults: tuple = field(repr=False, default=())

    # -- facts
    @functools.cached_property
    def decision_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.program.decisions)

    @property
    def counts(self) -> dict[str, int]:
        cands = [c for d in self.program.decisions for c in d.candidates]
        return {"files": len(self.sources), "decisions": len(self.program.decisions),
                "rules": sum(c.kind == "rule" for c in cands),
                "offers": sum(c.kind == "offer" for c in cands),
                "segments": len(self.program.segments), "experiments": len(self.program.experiments)}

    # -- evaluation
    def decide(self, profile: dict | None, request: dict | None, now: float | None = None,
               customer_id: str | None = None, decisions: Iterable[str] | None = None,
               explain: bool = False) -> DecisionSet:
        """Evaluate the wanted decisions (all by default) for one customer.

        ``now`` defaults to the current time; ``customer_id`` (for experiment
        assignment) defaults to the profile's ``customer_id``.  Unknown
        decision names raise KeyError.
        """
        if now is None:
            now = time.time()
        raw = self.run(profile, request, now, customer_id, decisions)
        explanations = self.explain(profile, request, now, customer_id, decisions) if explain else None
        return self.decision_set(raw, now, explanations)

    def run(self, profile: dict | None, request: dict | None, now: float, customer_id: str | None = None,
            decisions: Iterable[str] | None = None) -> list:
        """The kernel's raw answers, one per decision (None for one not
        wanted): what :meth:`decide` makes its outcomes of, and what
        ``engine.service.assemble`` maps to typed results directly."""
        profile, request, customer_id, wanted = self._inputs(profile, request, customer_id, decisions)
        return self.kernel.run(profile, request, now, customer_id, wanted)

    def explain(self, profile: dict | None, request: dict | None, now: float, customer_id: str | None = None,
                decisions: Iterable[str] | None = None) -> dict:
        """Per wanted decision name: the winner and why the others lost."""
        from .eval.explain import explain as explain_all
        profile, request, customer_id, wanted = self._inputs(profile, request, customer_id, decisions)
        return explain_all(self, profile, request, now, customer_id, wanted)

    def _inputs(self, profile, request, customer_id, decisions):
        """What the evaluators take: dicts for profile and request, the
        customer id (the profile's by default), the wanted positions."""
        if type(profile) is not dict:
            profile = {}
        if customer_id is None:
            cid = profile.get("customer_id")
            customer_id = cid if type(cid) is str and cid else None
        wanted = None if decisions is None else {self._by_name[name].position for name in decisions}
        return profile, request if type(request) is dict else {}, customer_id, wanted

    def decision_set(self, raw: list, now: float, explanations: dict | None = None) -> DecisionSet:
        """The outcomes of :meth:`run`'s raw answers."""
        outcomes = {}
        for d, r in zip(self.program.decisions, raw):
            if r is not None:
                outcomes[d.name] = self._outcome(d, r, explanations.get(d.name) if explanations else None)
        return DecisionSet(self.version, now, outcomes)

    def values(self, profile: dict, request: dict | None = None, now: float | None = None,
               customer_id: str | None = None) -> dict[str, Any]:
        """The main value of every decision, fast (see Kernel.run_primary)."""
        if customer_id is None:
            cid = profile.get("customer_id") if isinstance(profile, dict) else None
            customer_id = cid if isinstance(cid, str) and cid else None
        vals = self.kernel.run_primary(profile, request or {}, time.time() if now is None else now, customer_id)
        return dict(zip(self.decision_names, vals))

    def _outcome(self, d: DecisionIR, raw, explanation) -> Outcome:
        ranks, outputs, scores, variants, status = raw
        if not ranks:
            reasons = ()
        elif d.policy == "best":
            reasons = tuple(_reason(d.candidates[r], s) for r, s in zip(ranks, scores))
        elif len(ranks) == 1:
            reasons = (self._reasons[d.position][ranks[0]],)
        else:
            cached = self._reasons[d.position]
            reasons = tuple(cached[r] for r in ranks)
        if d.kind == "offer":
            shapes = self._shapes[d.position]
            offers = [self._offer(d.candidates[r], shapes[r], out, s, reason)
                      for r, out, s, reason in zip(ranks, outputs, scores, reasons)]
            source = "rule" if offers else (status or "default")
            return Outcome(d.name, d.kind, offers, source, reasons, variants, explanation)
        if d.kind == "record":
            value = self._defaults[d.position].copy()
            if ranks:
                value.update(zip(self._shapes[d.position][ranks[0]][0], outputs[0]))
            return Outcome(d.name, d.kind, value, "rule" if ranks else (status or "default"),
                           reasons, variants, explanation)
        if d.policy == "all":
            value = [out[0] for out in outputs] if ranks else (list(d.default) if d.default is not None else [])
        else:
            value = outputs[0][0] if ranks else d.default
        return Outcome(d.name, d.kind, value, "rule" if ranks else (status or "default"),
                       reasons, variants, explanation)

    @staticmethod
    def _offer(cand: CandidateIR, shape: tuple, out: tuple, score, reason: Reason) -> OfferChoice:
        names, static = shape
        fields = {name: v for name, v in zip(names, out) if v is not None}
        if static is not None:
            message = static
        else:
            values = iter(out[len(names):])
            message = "".join(p if isinstance(p, str) else render_value(next(values)) for p in cand.message)
        return OfferChoice(cand.name, message, fields, score, reason)


def _offer_shape(cand: CandidateIR) -> tuple[tuple[str, ...], str | None]:
    """A candidate's output field names, and an offer's message when it
    interpolates nothing (most do not): worked out once, not per call."""
    names = tuple(name for name, _ in cand.outputs)
    static = "".join(cand.message) if all(isinstance(p, str) for p in cand.message) else None
    return names, static


def _reason(c: CandidateIR, score) -> Reason:
    return Reason(c.name, c.kind, c.because, c.location, score)


# ---------------------------------------------------------------- loading
def read_sources(path: str | os.PathLike, diags: Diagnostics) -> list[SourceFile]:
    """Every ``*.rules`` file under ``path`` (or ``path`` itself), paths shown
    relative to the current directory when possible."""
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*.rules") if p.is_file())
    else:
        diags.add("E002", None, path=str(path), reason="no such file or directory")
        return []
    if not files:
        diags.add("E001", None, path=str(path))
        return []
    if len(files) > limits.MAX_FILES:
        diags.add("E504", None, what=f"rule files in {path}", count=len(files), limit=limits.MAX_FILES)
        return []
    sources = []
    for f in files:
        shown = _display_path(f)
        try:
            size = f.stat().st_size
            if size > limits.MAX_FILE_BYTES:
                diags.add("E501", Span(SourceFile(shown, ""), 0, 0), path=shown, size=size,
                          limit=limits.MAX_FILE_BYTES)
                continue
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            diags.add("E002", None, path=shown, reason=f"not UTF-8 text ({err.reason} at byte {err.start})")
            continue
        except OSError as err:
            diags.add("E002", None, path=shown, reason=err.strerror or str(err))
            continue
        sources.append(SourceFile(shown, text))
    return sources


def _display_path(p: Path) -> str:
    """Relative to the current directory when below it, else absolute."""
    try:
        rel = os.path.relpath(p)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(p.resolve())
    return str(p.resolve()) if rel.startswith("..") else rel


def content_hash(sources: Iterable[SourceFile]) -> str:
    """The version of a pack: sha256 over its files (relative path and text),
    in path order; the same sources give the same version on every replica."""
    h = hashlib.sha256()
    srcs = sorted(sources, key=lambda s: s.path)
    base = os.path.commonpath([s.path for s in srcs]) if len(srcs) > 1 else ""
    for s in srcs:
        rel = os.path.relpath(s.path, base) if base else os.path.basename(s.path)
        h.update(rel.replace(os.sep, "/").encode("utf-8") + b"\0")
        h.update(s.text.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def build(sources: list[SourceFile], kernel: str | None = None) -> Ruleset:
    """Compile sources into a Ruleset, or raise PackError."""
    t0 = time.perf_counter()
    with _collector_paused():
        result = compile_sources(sources)
    if not result.ok:
        raise PackError(result.diagnostics.sorted())
    return assemble(content_hash(sources), result.program, result.checked, sources,
                    result.diagnostics.warnings, time.perf_counter() - t0, kernel)


@contextlib.contextmanager
def _collector_paused():
    """A compile builds a large, acyclic, short-lived object graph (tokens,
    AST, types, IR); the cyclic collector walking it again and again as it
    grows was ~20% of compiling 1,000 rules.  Nothing a compile makes needs
    the collector: pause it, and leave it as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def assemble(version: str, program: Program, checked: Any, sources: Iterable[SourceFile],
             warnings: Iterable[Diagnostic], compile_seconds: float, kernel: str | None = None) -> Ruleset:
    """A Ruleset from a program compiled elsewhere (live reload compiles in
    another process and ships the Program): loads the kernel, nothing more."""
    k = load_kernel(program, kernel)
    by_name = {d.name: d for d in program.decisions}
    reasons = tuple(tuple(_reason(c, None) for c in d.candidates) for d in program.decisions)
    shapes = tuple(tuple(_offer_shape(c) for c in d.candidates) for d in program.decisions)
    defaults = tuple({f.name: f.default for f in d.fields} if d.kind == "record" else None
                     for d in program.decisions)
    return Ruleset(version, program, checked, tuple(sources), tuple(warnings), time.time(), compile_seconds,
                   k, by_name, reasons, shapes, defaults)


def load(path: str | os.PathLike, kernel: str | None = None) -> Ruleset:
    """Load a rules directory (or one file): the whole pack or a PackError."""
    diags = Diagnostics()
    sources = read_sources(path, diags)
    if diags.has_errors:
        raise PackError(diags.sorted())
    return build(sources, kernel)
