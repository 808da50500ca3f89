"""The compiler as an ordered list of named stages.

``parse`` every file, ``check`` names and types, ``lower`` to the IR (with
folding and sharing), ``index`` every decision, ``link`` the program.  Each
stage hands the next an explicit value and adds to one diagnostics
collector; the pipeline stops before lowering when there are errors (a pack
with any error is rejected whole), but never inside a stage, so every error in
every file is reported.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations, count

from ..check import check
from ..check.model import CheckedPack
from ..diagnostics import Diagnostics, q
from ..ir.opcodes import Op
from ..ir.program import FORMAT_VERSION, DecisionIR, Program
from ..source import SourceFile
from ..syntax import parse
from . import index as indexer
from . import templates as scoring
from .builder import Builder, TooLarge
from .lower import Lowerer, decision_ir, make_candidate


@dataclass
class CompileResult:
    program: Program | None
    checked: CheckedPack | None
    diagnostics: Diagnostics
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.program is not None and not self.diagnostics.has_errors


def compile_sources(sources: list[SourceFile], diags: Diagnostics | None = None) -> CompileResult:
    diags = diags if diags is not None else Diagnostics()
    result = CompileResult(None, None, diags)
    ids = count()
    t = time.perf_counter()

    def stage(name):
        nonlocal t
        now = time.perf_counter()
        result.timings[name] = now - t
        t = now

    modules = [parse(src, diags, ids) for src in sorted(sources, key=lambda s: s.path)]
    stage("parse")
    checked = check(modules, diags, ids)
    result.checked = checked
    stage("check")
    if diags.has_errors:
        return result
    try:
        result.program = link(checked, diags, stage)
    except TooLarge as err:
        from .. import limits
        diags.add("E503", None, count=f"more than {err.args[0]}", limit=limits.MAX_PACK_NODES)
        return result
    stage("link")
    return result


def link(pack: CheckedPack, diags: Diagnostics, stage=lambda name: None) -> Program:
    b = Builder()
    low = Lowerer(pack, b, diags)
    experiments = low.experiments()
    shells, lowered_all = [], []
    for di, info in enumerate(pack.decisions.values()):
        ranked = info.ranked()
        shells.append((info, low.decision_shell(info, di), ranked))
        lowered_all.append([low.candidate(c, info) for c in ranked])
    segments = {name: low.value(seg.expr) for name, seg in pack.segments.items()}
    stage("lower")
    decisions: list[DecisionIR] = []
    templates: list = []
    exact_total = 0
    for (info, shell, ranked), lowered in zip(shells, lowered_all):
        conj = [b.conjuncts(lw["cond"]) for lw in lowered]
        idx = indexer.build(b, conj, [bool(lw["required"]) for lw in lowered])
        tpls, per_cand = scoring.build(b, [lw["score"] for lw in lowered])
        base = len(templates)
        templates.extend(tpls)
        per_cand = [(t + base if t >= 0 else -1, params) for t, params in per_cand]
        cands = [make_candidate(r, c, lw, idx.residual[r], idx.exact[r], conj[r], *per_cand[r])
                 for r, (c, lw) in enumerate(zip(ranked, lowered))]
        exact_total += sum(idx.exact)
        _warn_unreachable(b, info, ranked, lowered, conj, diags)
        decisions.append(decision_ir(shell, cands, idx.index))
    stage("index")
    stats = {"nodes": len(b.op), "slots": len(b.slots), "strings": len(b.strings),
             "candidates": sum(len(d.candidates) for d in decisions), "exact": exact_total,
             "index_words": sum(len(d.index.bits) for d in decisions if d.index is not None),
             "templates": len(templates)}
    return Program(FORMAT_VERSION, tuple(b.strings), tuple(b.slots), tuple(b.lists), tuple(b.list_kinds),
                   tuple(b.geos), b.op, b.a, b.b, b.c, b.k, b.kind, b.args, tuple(decisions),
                   tuple(experiments), segments, stats, dict(b.string_ids), tuple(templates))


def _warn_unreachable(b: Builder, info, ranked, lowered, conj, diags: Diagnostics) -> None:
    """W103: a candidate whose condition is always false or whose value is
    never set; for pick-first decisions also one that an earlier candidate
    always beats (the earlier one's tests are a subset of its own)."""
    firsts: dict[frozenset, object] = {}
    for cand, lw, cs in zip(ranked, lowered, conj):
        verb = "fire" if cand.kind == "rule" else "be chosen"
        if lw["cond"] >= 0 and b.is_false(lw["cond"]):
            diags.add("W103", cand.name_span, kind=cand.kind, name=q(cand.name), verb=verb,
                      reason="its condition is always false")
            continue
        if any(b.op[n] == Op.MISSING for n in lw["required"]):
            diags.add("W103", cand.name_span, kind=cand.kind, name=q(cand.name), verb=verb,
                      reason="the value it assigns is never set")
            continue
        if info.policy != "first":
            continue
        key = frozenset(cs)
        if len(key) <= 10:
            shadow = None
            for size in range(len(key) + 1):
                for sub in combinations(sorted(key), size):
                    shadow = firsts.get(frozenset(sub))
                    if shadow is not None:
                        break
                if shadow is not None:
                    break
            if shadow is not None:
                diags.add("W103", cand.name_span, kind=cand.kind, name=q(cand.name), verb=verb,
                          reason=f"{shadow.kind} {q(shadow.name)} ({shadow.name_span.location()}) comes "
                                 "first and matches whenever it does")
                continue
        if not lw["required"]:
            firsts.setdefault(key, cand)
