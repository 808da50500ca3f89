"""Explanations: for each decision, who won and why the others did not.

Built on the reference interpreter, so it costs nothing unless asked for.
For every rule or offer it reports the first part of the condition that was
false (following segments inside), where that part is written, and the values
it read; for offers also the channel and cap checks; for best-score decisions
the scores of the eligible offers that lost.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..check.model import AttrRef, SegmentRef
from ..syntax import ast
from .reference import Context, Reference
from .values import iso_time

MAX_TEXT = 120


def _text(span) -> str:
    text = " ".join(span.text.split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _show(value, type_=None):
    if value is None:
        return None
    if type_ is not None and type_.kind == "timestamp" and isinstance(value, float):
        return iso_time(value)
    if type_ is not None and type_.kind == "timeline" and isinstance(value, list):
        return [iso_time(t) for t in value]
    if type_ is not None and type_.kind == "map" and type_.elem is not None and isinstance(value, dict):
        return {k: _show(v, type_.elem) for k, v in value.items()}     # times in a map read as ISO too
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return {"lat": value[0], "lon": value[1]}
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return int(value)
    return value


def _when(t: float) -> str:
    """The time of a decision for a person; one out of datetime's range
    (the callers reject those, but a library caller may not) as its number."""
    try:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{t!r} seconds since the epoch (not a date)"


def _values_seen(ctx: Context, e: ast.Expr) -> dict:
    """The attributes (and map lookups) an expression reads, with their values."""
    seen = {}
    for node in ast.walk(e):
        ref = ctx.pack.refs.get(node.nid)
        if isinstance(ref, AttrRef) and ref.type.kind != "record":
            seen[ref.dotted] = _show(ctx.attribute(ref), ref.type)
        elif isinstance(node, ast.Index):
            seen[_text(node.span)] = _show(ctx.eval(node), ctx.pack.types.get(node.nid))
        elif isinstance(node, ast.Now):
            seen["now"] = _show(ctx.now, ctx.pack.types.get(node.nid))
    return seen


def _conjuncts(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.Logic) and e.op == "and":
        return [c for x in e.operands for c in _conjuncts(x)]
    return [e]


def first_failure(ctx: Context, e: ast.Expr) -> dict | None:
    """The first conjunct of a condition that is not true, described."""
    for part in _conjuncts(e):
        if ctx.truth(part):
            continue
        failure = {"condition": _text(part.span), "at": part.span.location(),
                   "values": _values_seen(ctx, part)}
        ref = ctx.pack.refs.get(part.nid) if isinstance(part, ast.Name) else None
        if isinstance(ref, SegmentRef):
            inner = first_failure(ctx, ctx.pack.segments[ref.name].expr)
            if inner is not None:
                failure["segment"] = ref.name
                failure["inside"] = inner
        return failure
    return None


def why_not(ctx: Context, cand, info) -> dict:
    """Why a candidate did not qualify (or {} when it did)."""
    if cand.when is not None:
        failure = first_failure(ctx, cand.when)
        if failure is not None:
            return {"failed": "condition", **failure}
    if cand.channels is not None:
        ch = ctx.channel()
        if ch is None or ch not in cand.channels:
            return {"failed": "channel", "condition": "channels " + ", ".join(cand.channels),
                    "values": {"request.channel": ch}}
    for count_, window, span in cand.caps:
        n = ctx.impressions(cand.name, ctx.eval(window))
        if n is None or not n < count_:
            return {"failed": "cap", "condition": _text(span), "at": span.location(),
                    "values": {f"profile.offer_impressions[{cand.name!r}] in the window": _show(n)}}
    for field, value in cand.assignments:
        if cand.kind == "rule" and ctx.eval(value) is None:
            return {"failed": "value", "condition": _text(value.span), "at": value.span.location(),
                    "values": _values_seen(ctx, value),
                    "note": "a rule fires only when every value it assigns is set"}
    if info.policy == "best" and ctx.eval(cand.score) is None:
        return {"failed": "score", "condition": _text(cand.score.span), "at": cand.score.span.location(),
                "values": _values_seen(ctx, cand.score), "note": "an offer whose score is missing does not compete"}
    return {}


def explain_decision(ctx: Context, ref: Reference, info) -> dict:
    winners, _outputs, scores, variants, status = ref.decide(info, ctx)
    won = dict(zip(winners, scores))
    entries = []
    for rank, cand in enumerate(info.ranked()):
        entry = {"name": cand.name, "kind": cand.kind, "at": cand.name_span.location(), "priority": cand.priority}
        if status:
            entry["status"] = "not evaluated"
        elif rank in won:
            entry["status"] = "chosen" if info.policy != "all" else "collected"
            if won[rank] is not None:
                entry["score"] = won[rank]
            if cand.because:
                entry["because"] = cand.because
        else:
            reason = why_not(ctx, cand, info)
            if reason:
                entry["status"] = "not eligible" if cand.kind == "offer" else "did not fire"
                entry["why"] = reason
            elif info.policy == "best":
                entry["status"] = "outscored"
                entry["score"] = ctx.eval(cand.score)
            else:
                entry["status"] = "matched, but an earlier rule won"
        entries.append(entry)
    out = {"policy": info.policy, "candidates": entries}
    if status:
        out["status"] = status
    if variants:
        out["experiments"] = [{"experiment": x, "variant": v} for x, v in variants]
    return out


def explain(ruleset, profile, request, now, customer_id=None, wanted=None) -> dict:
    pack = ruleset.checked
    ctx = Context(pack, profile, request, now, customer_id)
    ref = Reference(pack)
    out = {}
    for i, info in enumerate(pack.decisions.values()):
        if wanted is None or i in wanted:
            out[info.name] = explain_decision(ctx, ref, info)
    return out


# ---------------------------------------------------------------- text
def _plain(v):
    """A decided value as a person reads it: the language's numbers are
    floats, and a whole one (a store count, a radius of 3 km) is shown
    without ``.0``, inside a record too (``_show`` does the same for the
    values beside a failed condition)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _value_text(v) -> str:
    return json.dumps(v, ensure_ascii=False) if v is not None else "missing"


def _failure_lines(f: dict, indent: str) -> list[str]:
    lines = []
    values = ", ".join(f"{k} = {_value_text(v)}" for k, v in f.get("values", {}).items())
    at = f" ({f['at']})" if f.get("at") else ""
    lines.append(f"{indent}false: {f['condition']}{at}" + (f"  [{values}]" if values else ""))
    if "inside" in f:
        lines += _failure_lines(f["inside"], indent + "  in segment " + f["segment"] + ": ")
    if f.get("note"):
        lines.append(f"{indent}({f['note']})")
    return lines


def render_text(result) -> str:
    """A DecisionSet, with explanations, for a person to read."""
    when = "no clock" if result.now is None else _when(result.now)
    lines = [f"ruleset {result.version}, decided at {when}", ""]
    for name, o in result.outcomes.items():
        value = o.value
        if o.kind == "offer":
            shown = "; ".join(f"{c.id} ({c.score:g}): {c.message!r}" for c in value) or "no offer"
        else:
            shown = json.dumps(_plain(value), ensure_ascii=False, default=str)
        lines.append(f"{name} = {shown}")
        if o.reasons:
            r = o.reasons[0]
            lines.append(f"  chosen by {r.kind} {r.name} ({r.location})" + (f": {r.because}" if r.because else ""))
        else:
            lines.append(f"  {o.source}: no rule fired" if o.source == "default" else f"  {o.source}")
        for x, v in o.experiments:
            lines.append(f"  experiment {x}: variant {v}")
        ex = o.explanation or {}
        for c in ex.get("candidates", []):
            status = c.get("status", "")
            if status in ("chosen", "collected"):
                continue
            score = f" score {c['score']:g}" if isinstance(c.get("score"), (int, float)) else ""
            lines.append(f"  - {c['kind']} {c['name']} ({c['at']}): {status}{score}")
            if "why" in c:
                lines += _failure_lines(c["why"], "      ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
