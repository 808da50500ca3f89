"""Validation of decision requests: every bad field named, all at once.

Field paths are the wire contract's (``context.location.lat``,
``decisions[2]``), so a client can find what it sent.  Limits are generous
for real traffic and keep a hostile request from costing more than a normal
one.
"""
from __future__ import annotations

import msgspec

from .errors import FieldViolation, InvalidArgument, ResourceExhausted
from .model import DecideQuery, PendingJson

MAX_ID = 256                 # customer_id and the other identifiers (loyalty_card, email_hash, device_id)
MAX_TEXT = 1024              # each string of the request context
MAX_DECISIONS = 256          # names in DecideRequest.decisions
MAX_BATCH = 1000             # items in one DecideBatch
MAX_DEPTH = 32               # nesting of the profile snapshot and attributes
MAX_NODES = 100_000          # values in the profile snapshot
#: snapshots smaller than this on the wire cannot break the depth or size
#: limits in a way that matters, so they are not walked (this runs on
#: every request); bigger ones, and snapshots of unknown size, are
SHAPE_CHECK_BYTES = 16_384
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
MIN_TIME = -62_135_596_800
MAX_TIME = 253_402_300_799

_TEXT_FIELDS = ("locale", "page", "sku", "category", "store")

# profile_json is on every request's path: msgspec parses a profile's JSON
# (~900 bytes, mostly timestamps) about 3.5x faster than json.loads, with the
# same dicts and lists out and ValueError/RecursionError on bad input.
decode_json = msgspec.json.Decoder().decode


def snapshot_from_json(raw: bytes) -> dict:
    """A request's ``profile_json`` decoded: a JSON object, or
    InvalidArgument naming ``profile_json``."""
    try:
        value = decode_json(raw)
    except (ValueError, RecursionError) as err:
        raise InvalidArgument([FieldViolation("profile_json", f"not valid JSON: {str(err)[:200]}")])
    if type(value) is not dict:
        raise InvalidArgument([FieldViolation("profile_json", "must be a JSON object")])
    return value


def decoded_snapshot(q: DecideQuery) -> DecideQuery:
    """``q`` itself, or if its snapshot is still a DecideBatch item's
    ``profile_json`` as it came (:class:`PendingJson`), a copy of ``q`` with
    it decoded (InvalidArgument naming ``profile_json`` if it is no JSON
    object).  ``q`` is not changed."""
    pending = q.profile
    if type(pending) is not PendingJson:
        return q
    return msgspec.structs.replace(q, profile=snapshot_from_json(pending.raw))


def validate_query(q: DecideQuery, decision_names) -> None:
    """Raise InvalidArgument naming every bad field of ``q``."""
    if common_case(q):
        return
    bad = violations(q, decision_names)
    if bad:
        raise InvalidArgument(bad)


def common_case(q: DecideQuery) -> bool:
    """Whether ``q`` is the common request that passes in one expression:
    short texts, a valid point, no names, a small snapshot, no attributes.
    On every request's path; ``engine.service._decide`` runs the same
    expression compiled (tests/server/test_validate.py holds the two equal)."""
    ctx = q.context
    cid, loc, ts = q.customer_id, ctx.location, ctx.timestamp
    return bool((cid is None or len(cid) <= MAX_ID)
                and (ctx.sku is None or len(ctx.sku) <= MAX_TEXT) and (ctx.page is None or len(ctx.page) <= MAX_TEXT)
                and (ctx.category is None or len(ctx.category) <= MAX_TEXT)
                and (ctx.locale is None or len(ctx.locale) <= MAX_TEXT)
                and (ctx.store is None or len(ctx.store) <= MAX_TEXT)
                and (loc is None or (-90.0 <= loc[0] <= 90.0 and -180.0 <= loc[1] <= 180.0))
                and (ts is None or MIN_TIME <= ts <= MAX_TIME) and not q.decisions
                and (q.profile is None or 0 < q.snapshot_bytes < SHAPE_CHECK_BYTES) and ctx.attributes is None
                and (not q.aliases or all(len(v) <= MAX_ID for _, v in q.aliases)))


def violations(q: DecideQuery, decision_names) -> list[FieldViolation]:
    """Every bad field of ``q``, one by one (validate_query's reference)."""
    ctx = q.context
    cid = q.customer_id
    bad: list[FieldViolation] = []
    if cid is not None and len(cid) > MAX_ID:
        bad.append(FieldViolation("customer_id", f"at most {MAX_ID} characters, got {len(cid)}"))
    for kind, value in q.aliases:
        if len(value) > MAX_ID:
            bad.append(FieldViolation(kind, f"at most {MAX_ID} characters, got {len(value)}"))
    for name in _TEXT_FIELDS:
        v = getattr(ctx, name)
        if v is not None and len(v) > MAX_TEXT:
            bad.append(FieldViolation(f"context.{name}", f"at most {MAX_TEXT} characters, got {len(v)}"))
    if ctx.location is not None:
        lat, lon = ctx.location
        if not -90.0 <= lat <= 90.0:                 # NaN fails it too
            bad.append(FieldViolation("context.location.lat", f"must be a number from -90 to 90, got {lat!r}"))
        if not -180.0 <= lon <= 180.0:
            bad.append(FieldViolation("context.location.lon", f"must be a number from -180 to 180, got {lon!r}"))
    if ctx.timestamp is not None and not (MIN_TIME <= ctx.timestamp <= MAX_TIME):
        bad.append(FieldViolation("context.timestamp", "must be between 0001-01-01 and 9999-12-31"))
    if len(q.decisions) > MAX_DECISIONS:
        bad.append(FieldViolation("decisions", f"at most {MAX_DECISIONS} names, got {len(q.decisions)}"))
    elif q.decisions:
        known = set(decision_names)
        for i, name in enumerate(q.decisions):
            if name not in known:
                bad.append(FieldViolation(f"decisions[{i}]", f"unknown decision {name[:64]!r}; the pack decides: "
                                          + ", ".join(sorted(known))))
    if q.profile is not None and not 0 < q.snapshot_bytes < SHAPE_CHECK_BYTES:
        problem = _shape_problem(q.profile)
        if problem:                                  # named as the client sent it
            bad.append(FieldViolation("profile_json" if q.snapshot_json else "profile", problem))
    if ctx.attributes is not None:
        problem = _shape_problem(ctx.attributes)
        if problem:
            bad.append(FieldViolation("context.attributes", problem))
    return bad


def validate_batch_size(n: int) -> None:
    if n > MAX_BATCH:
        raise ResourceExhausted(f"requests: at most {MAX_BATCH} items in one DecideBatch, got {n}")


def _shape_problem(value) -> str | None:
    """Depth and size limits of a JSON-like value.  Only containers are
    visited one by one (leaves are counted in bulk): this runs on every
    request with a snapshot."""
    nodes = 0
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        items = v.values() if type(v) is dict else v
        nodes += len(items)
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES} values"
        for x in items:
            if type(x) is dict or type(x) is list:
                stack.append((x, depth + 1))
    return None
