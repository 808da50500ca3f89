"""Replay: preview how a rules change would change decisions, before release.

``maple replay --rules NEW --against OLD --profiles customers.jsonl`` runs
both rulesets over the same customers and reports, per decision, how many
answers change, the transitions (before → after, counted), the customers
affected, a few examples with the rule that decided on each side, and the
latency of each version measured in the same run.

Each line of the profiles file is either a profile (a JSON object) or
``{"profile": {...}, "request": {...}, "now": ..., "customer_id": ...}`` —
the format ``bench/synth.py`` writes and the server's sampled decision log
keeps (docs/marketers.md).
"""
from __future__ import annotations

import json
import time
from argparse import ArgumentTypeError
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .cli import parse_time


class ReplayInputError(Exception):
    pass


@dataclass
class Sample:
    line: int
    profile: dict
    request: dict
    now: float | None
    customer_id: str | None


def read_samples(path: str | Path, limit: int | None = None, default_now: float | None = None) -> Iterator[Sample]:
    with open(path, encoding="utf-8") as f:
        for i, raw in enumerate(f, 1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ReplayInputError(f"{path}:{i}: not valid JSON ({err.msg} at column {err.colno})")
            if not isinstance(doc, dict):
                raise ReplayInputError(f"{path}:{i}: each line must be a JSON object")
            if "profile" in doc and isinstance(doc["profile"], dict):
                profile, request = doc["profile"], doc.get("request") or {}
                now = doc.get("now")
                if isinstance(now, str):
                    try:
                        now = parse_time(now)
                    except ArgumentTypeError as err:
                        raise ReplayInputError(f"{path}:{i}: now: {err}")
                cid = doc.get("customer_id")
            else:
                profile, request, now, cid = doc, {}, None, None
            if not isinstance(request, dict):
                raise ReplayInputError(f"{path}:{i}: request must be a JSON object")
            if cid is None and isinstance(profile.get("customer_id"), str):
                cid = profile["customer_id"]
            yield Sample(i, profile, request, now if now is not None else default_now, cid)
            if limit is not None and i >= limit:
                return


def _key(outcome) -> Any:
    """A decision's answer as a comparable, printable value."""
    if outcome.kind == "offer":
        return [c.id for c in outcome.value] or None
    return outcome.value


def _rule(outcome) -> str:
    return outcome.reason.name if outcome.reason else f"({outcome.source})"


@dataclass
class DecisionChange:
    decision: str
    total: int = 0
    changed: int = 0
    transitions: Counter = field(default_factory=Counter)
    customers: list = field(default_factory=list)
    examples: list = field(default_factory=list)


@dataclass
class ReplayReport:
    old_version: str
    new_version: str
    samples: int
    decisions: dict[str, DecisionChange]
    affected: list[str]
    latency: dict[str, dict]
    only_old: list[str]
    only_new: list[str]

    def to_dict(self) -> dict:
        return {
            "old_version": self.old_version, "new_version": self.new_version, "samples": self.samples,
            "customers_affected": len(self.affected), "affected_ids": self.affected[:100],
            "decisions": {n: {"total": c.total, "changed": c.changed,
                              "transitions": [{"before": json.loads(b), "after": json.loads(a), "count": k}
                                              for (b, a), k in c.transitions.most_common()],
                              "customers": c.customers[:100], "examples": c.examples}
                          for n, c in self.decisions.items()},
            "latency_us": self.latency, "decisions_only_in_old": self.only_old,
            "decisions_only_in_new": self.only_new,
        }


def replay(old, new, samples, examples: int = 3, progress=None) -> ReplayReport:
    """Run both rulesets over the samples; ``old``/``new`` are Rulesets."""
    shared = [n for n in new.decision_names if n in old.decision_names]
    changes = {n: DecisionChange(n) for n in shared}
    affected: list[str] = []
    times = {"old": [], "new": []}
    pc = time.perf_counter_ns
    count = 0
    for i, s in enumerate(samples):
        now = s.now if s.now is not None else time.time()
        order = (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old))
        results = {}
        for label, rs in order:
            t0 = pc()
            results[label] = rs.decide(s.profile, s.request, now, s.customer_id)
            times[label].append(pc() - t0)
        count += 1
        who = s.customer_id or f"line {s.line}"
        any_change = False
        for name in shared:
            before, after = results["old"][name], results["new"][name]
            c = changes[name]
            c.total += 1
            kb, ka = _key(before), _key(after)
            if kb == ka:
                continue
            any_change = True
            c.changed += 1
            c.transitions[(json.dumps(kb, default=str), json.dumps(ka, default=str))] += 1
            c.customers.append(who)
            if len(c.examples) < examples:
                c.examples.append({"customer": who, "line": s.line, "before": kb, "after": ka,
                                   "before_rule": _rule(before), "after_rule": _rule(after),
                                   "explanation": _explain(new, s, now, name)})
        if any_change:
            affected.append(who)
        if progress is not None:
            progress.update(1)
    latency = {label: _stats(v) for label, v in times.items() if v}
    return ReplayReport(old.version, new.version, count, changes, affected, latency,
                        [n for n in old.decision_names if n not in new.decision_names],
                        [n for n in new.decision_names if n not in old.decision_names])


def _explain(rs, s: Sample, now: float, decision: str) -> dict:
    out = rs.decide(s.profile, s.request, now, s.customer_id, decisions=[decision], explain=True)
    return out[decision].explanation


def _stats(ns: list[int]) -> dict:
    v = sorted(ns)
    k = lambda q: v[min(len(v) - 1, max(0, int(q * len(v) + 0.5) - 1))]  # noqa: E731
    return {"p50": k(0.5) / 1e3, "p99": k(0.99) / 1e3, "mean": sum(v) / len(v) / 1e3}


def render(r: ReplayReport) -> str:
    lines = [f"replay: {r.samples} customers, ruleset {r.old_version} -> {r.new_version}",
             f"customers affected: {len(r.affected)} ({_pct(len(r.affected), r.samples)})", ""]
    for name, c in r.decisions.items():
        lines.append(f"{name}: {c.changed} of {c.total} change ({_pct(c.changed, c.total)})")
        for (b, a), k in c.transitions.most_common(10):
            lines.append(f"  {k:>6}  {b} -> {a}")
        if len(c.transitions) > 10:
            lines.append(f"  ... and {len(c.transitions) - 10} more transitions")
        for ex in c.examples:
            lines.append(f"  e.g. {ex['customer']}: {json.dumps(ex['before'], default=str)} "
                         f"({ex['before_rule']}) -> {json.dumps(ex['after'], default=str)} ({ex['after_rule']})")
        lines.append("")
    if r.only_old:
        lines.append("decisions the new rules no longer make: " + ", ".join(r.only_old))
    if r.only_new:
        lines.append("new decisions (not compared): " + ", ".join(r.only_new))
    for label in ("old", "new"):
        s = r.latency.get(label)
        if s:
            lines.append(f"latency {label}: p50 {s['p50']:.1f} µs, p99 {s['p99']:.1f} µs, mean {s['mean']:.1f} µs")
    if "old" in r.latency and "new" in r.latency:
        lines.append(f"new / old (p50): {r.latency['new']['p50'] / r.latency['old']['p50']:.2f}x")
    return "\n".join(lines).rstrip() + "\n"


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "0%"
