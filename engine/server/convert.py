"""Protobuf <-> domain: the only place that knows both.

Wire-only checks live here (unknown enum numbers, Timestamp nanos); every
other check is the domain's (engine.service.validate).  Both raise
InvalidArgument naming the field.
"""
from __future__ import annotations

import json
import math

from google.protobuf import struct_pb2

from ..diagnostics import Diagnostic, render
from ..eval.values import render_value
from ..service.errors import FieldViolation, InvalidArgument
from ..service.model import (Common, DecideQuery, DecideResult, GenericDecision, OfferResult,
                             ProfileStatus, RequestContext)
from ..service.rules import LoadError, RulesetState, Validation
from ..service.validate import snapshot_from_json
from .pb.maple.v1 import admin_pb2 as apb
from .pb.maple.v1 import decision_pb2 as pb

CHANNELS = {pb.CHANNEL_WEB: "web", pb.CHANNEL_APP: "app", pb.CHANNEL_EMAIL: "email", pb.CHANNEL_POS: "pos",
            pb.CHANNEL_KIOSK: "kiosk", pb.CHANNEL_CALL_CENTRE: "call_centre"}
DEVICES = {pb.DEVICE_DESKTOP: "desktop", pb.DEVICE_MOBILE: "mobile", pb.DEVICE_TABLET: "tablet",
           pb.DEVICE_KIOSK: "kiosk", pb.DEVICE_TILL: "till"}
SOURCES = {"rule": pb.SOURCE_RULE, "default": pb.SOURCE_DEFAULT, "holdout": pb.SOURCE_HOLDOUT,
           "capped": pb.SOURCE_CAPPED}
PROFILE_STATUS = {ProfileStatus.STORED: pb.PROFILE_STATUS_STORED,
                  ProfileStatus.SNAPSHOT: pb.PROFILE_STATUS_SNAPSHOT,
                  ProfileStatus.UNKNOWN_CUSTOMER: pb.PROFILE_STATUS_UNKNOWN_CUSTOMER,
                  ProfileStatus.ANONYMOUS: pb.PROFILE_STATUS_ANONYMOUS,
                  ProfileStatus.UNAVAILABLE: pb.PROFILE_STATUS_UNAVAILABLE}

# ---------------------------------------------------------------- Struct
def _value(v):
    k = v.WhichOneof("kind")
    if k == "string_value":
        return v.string_value
    if k == "number_value":
        return v.number_value
    if k == "bool_value":
        return v.bool_value
    if k == "struct_value":
        f = v.struct_value.fields
        return {key: _value(f[key]) for key in f}
    if k == "list_value":
        return [_value(x) for x in v.list_value.values]
    return None


def struct_to_dict(s: struct_pb2.Struct) -> dict:
    """A Struct as plain Python values (numbers are floats); about twice as
    fast as json_format.MessageToDict, which matters on the hot path."""
    f = s.fields
    return {key: _value(f[key]) for key in f}


def dict_to_struct(d: dict, out: struct_pb2.Struct) -> None:
    out.update(_plain(d))


def _plain(v):
    """JSON-like values Struct accepts (no tuples or sets, string keys)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)


# ---------------------------------------------------------------- requests
def context_from_pb(c: pb.RequestContext) -> RequestContext:
    # on every request's path: the common case inline, no helper calls
    bad: list[FieldViolation] = []
    channel = CHANNELS.get(c.channel) if c.channel else None
    if channel is None and c.channel:
        bad.append(FieldViolation("context.channel", f"unknown enum value {c.channel}"))
    device = DEVICES.get(c.device) if c.device else None
    if device is None and c.device:
        bad.append(FieldViolation("context.device", f"unknown enum value {c.device}"))
    has = c.HasField
    location = None
    if has("location"):
        where = c.location
        location = (where.lat, where.lon)
    timestamp = None
    if has("timestamp"):
        ts = c.timestamp
        nanos = ts.nanos
        if not 0 <= nanos < 1_000_000_000:
            bad.append(FieldViolation("context.timestamp.nanos", f"must be from 0 to 999999999, got {nanos}"))
        else:
            timestamp = ts.seconds + nanos / 1e9
    attributes = struct_to_dict(c.attributes) if has("attributes") else None
    if bad:
        raise InvalidArgument(bad)
    return RequestContext(channel, device, c.locale or None, c.page or None, c.sku or None, c.category or None,
                          location, c.store or None, timestamp, attributes)


def _profile(r: pb.DecideRequest) -> tuple[dict | None, int, bool]:
    """The snapshot (from profile_json or the profile Struct), its wire size,
    and whether it came as profile_json."""
    raw = r.profile_json
    if raw:
        if r.HasField("profile"):
            raise InvalidArgument([FieldViolation("profile_json", "give profile or profile_json, not both")])
        return snapshot_from_json(raw), len(raw), True
    if r.HasField("profile"):
        return struct_to_dict(r.profile), r.profile.ByteSize(), False
    return None, 0, False


def query_from_pb(r: pb.DecideRequest) -> DecideQuery:
    profile, size, from_json = _profile(r)
    return DecideQuery(
        customer_id=r.customer_id or None,
        profile=profile,
        snapshot_bytes=size,
        context=context_from_pb(r.context) if r.HasField("context") else RequestContext(),
        decisions=tuple(r.decisions),
        explain=r.explain,
        snapshot_json=from_json,
        aliases=tuple((kind, value) for kind, value in (("loyalty_card", r.loyalty_card),
                                                        ("email_hash", r.email_hash),
                                                        ("device_id", r.device_id)) if value))


# ---------------------------------------------------------------- results
def _common(c: Common, msg, with_reason: bool = True) -> None:
    msg.source = SOURCES.get(c.source, pb.SOURCE_UNSPECIFIED)
    if with_reason and c.reason is not None:
        r = msg.reason
        r.rule = c.reason.rule
        r.location = c.reason.location
        if c.reason.because:
            r.because = c.reason.because
    for e, v in c.experiments:
        msg.experiments.add(experiment=e, variant=v)


def _offers(offers: tuple[OfferResult, ...], repeated) -> None:
    for o in offers:
        m = repeated.add(id=o.id, message=o.message, score=o.score)
        if o.experiment:
            m.experiment = o.experiment
            m.variant = o.variant or ""
        if o.reason is not None:
            m.reason.rule = o.reason.rule
            m.reason.location = o.reason.location
            if o.reason.because:
                m.reason.because = o.reason.because
        if o.fields:
            m.fields.update({k: render_value(v) for k, v in o.fields.items()})


def _generic(g: GenericDecision, msg: pb.DecisionResult) -> None:
    msg.kind = g.kind
    _common(g.common, msg)
    if g.kind == "offer":
        _offers(g.offers, msg.offers)
    elif g.value is None:
        msg.value.null_value = struct_pb2.NULL_VALUE
    else:
        holder = struct_pb2.Struct()
        holder.update({"v": _plain(g.value)})
        msg.value.CopyFrom(holder.fields["v"])


def result_to_pb(r: DecideResult, out: pb.DecideResponse | None = None) -> pb.DecideResponse:
    out = out if out is not None else pb.DecideResponse()
    out.ruleset_version = r.ruleset_version
    out.profile_status = PROFILE_STATUS[r.profile_status]
    if r.decided_at is not None and math.isfinite(r.decided_at):
        secs = math.floor(r.decided_at)
        out.decided_at.seconds = secs
        out.decided_at.nanos = int((r.decided_at - secs) * 1e9)
    if r.homepage_category is not None:
        out.homepage_category.category = r.homepage_category.category or ""
        _common(r.homepage_category.common, out.homepage_category)
    if r.prefill_size is not None:
        out.prefill_size.size = r.prefill_size.size or ""
        _common(r.prefill_size.common, out.prefill_size)
    if r.nearby_stores is not None:
        n, m = r.nearby_stores, out.nearby_stores
        p = n.policy
        m.policy.radius_km = p.radius_km
        m.policy.max_stores = p.max_stores
        m.policy.min_quantity = p.min_quantity
        m.policy.low_stock_below = p.low_stock_below
        m.policy.preferred_first = p.preferred_first
        m.policy.open_now = p.open_now
        for s in n.stores:
            line = m.stores.add(store_id=s.store_id, name=s.name, distance_km=s.distance_km, quantity=s.quantity,
                                low_stock=s.low_stock, preferred=s.preferred)
            if s.open_now is not None:
                line.open_now = s.open_now
        m.located_by = n.located_by or ""
        m.empty_reason = n.empty_reason or ""
        _common(n.common, m)
    if r.next_best_offer is not None:
        _offers(r.next_best_offer.offers, out.next_best_offer.offers)
        _common(r.next_best_offer.common, out.next_best_offer, with_reason=False)  # each offer has its own
    for name, g in r.decisions.items():
        _generic(g, out.decisions[name])
    if r.degraded:
        out.degraded = True
        out.degraded_reason = r.degraded_reason
    out.customer_id = r.customer_id
    if r.explanation is not None:
        # explanations hold only JSON values; the round trip drops anything else
        dict_to_struct(json.loads(json.dumps(r.explanation, default=str)), out.explanation)
    return out


def violations_to_pb(violations, repeated) -> None:
    for v in violations:
        repeated.add(field=v.field, description=v.description)


# ---------------------------------------------------------------- admin
SEVERITY = {"error": apb.SEVERITY_ERROR, "warning": apb.SEVERITY_WARNING}


def diagnostic_to_pb(d: Diagnostic, out) -> None:
    info = d.to_dict()
    out.code = d.code
    out.severity = SEVERITY[info["severity"]]
    out.message = d.message
    if d.span is not None:
        out.path = info["path"]
        out.line, out.column = info["line"], info["col"]
        out.end_line, out.end_column = info["end_line"], info["end_col"]
    if d.help:
        out.help = d.help
    out.notes.extend(d.notes)
    out.rendered = render(d)


def validation_to_pb(v: Validation) -> apb.ValidateRulesResponse:
    out = apb.ValidateRulesResponse(ok=v.ok, version=v.version, counts=v.counts)
    for d in v.diagnostics:
        diagnostic_to_pb(d, out.diagnostics.add())
    return out


def ruleset_info_to_pb(state: RulesetState, out: apb.RulesetInfo) -> None:
    out.rules_dir = state.rules_dir
    out.origin, out.state_dir, out.watch = state.origin, state.state_dir, state.watch
    for pid, version in state.workers:
        out.workers.add(pid=pid, version=version)
    rs = state.ruleset
    if rs is None:
        return
    out.version = rs.version
    out.loaded_at.FromNanoseconds(int(rs.loaded_at * 1e9))
    for k, n in rs.counts.items():
        out.counts[k] = n
    out.decisions.extend(rs.decision_names)
    out.warnings = len(rs.warnings)
    out.compile_seconds = rs.compile_seconds


FAILURES = {"compile": apb.RELOAD_FAILURE_COMPILE, "tests": apb.RELOAD_FAILURE_TESTS,
            "read": apb.RELOAD_FAILURE_READ}


def load_error_to_pb(err: LoadError, out: apb.ReloadError) -> None:
    out.at.FromNanoseconds(int(err.at * 1e9))
    out.message = err.message
    for d in err.diagnostics:
        diagnostic_to_pb(d, out.diagnostics.add())
    out.failure = FAILURES.get(err.failure, apb.RELOAD_FAILURE_UNSPECIFIED)
    for f in err.test_failures:
        out.test_failures.add(location=f.location, name=f.name, message=f.message)
    out.trigger = err.trigger
    out.rejected_version = err.rejected_version
