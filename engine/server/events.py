"""RecordEvents on the wire: protobuf events <-> the profile store's raw
events, and the thin servicer.

An :class:`~.pb.maple.v1.events_pb2.Event` becomes the JSON-like object of
docs/profiles.md with only the fields that are set (an empty string, an
absent message or an unset ``optional`` is "not given"), so one validator,
the profile store's, judges every event, and its field paths are the wire's
(``events[3].items[0].price``).  Two differences are mapped here: enums
become their names (an unknown number stays a number and is rejected by
the validator), and the consent flags, nested under ``consent`` on the
wire, are flat in the event model.  Two problems only the wire can have
make an event :class:`Rejected` before the store sees it: a Timestamp with
out-of-range nanos, and a ``meta`` Struct nested more than 32 levels deep
(or holding more than 100,000 values, the limits of Decide's Structs; one
nested past the protobuf runtime's own limit fails the batch's parse, and
engine.server.nesting reads such a batch event by event).
"""
from __future__ import annotations

from ..service.events import EventOutcome, EventRecorder, EventStatus, RecordResult, Rejected
from ..service.validate import _shape_problem
from . import _wire
from .convert import struct_to_dict
from .pb.maple.v1 import events_pb2 as epb
from .servicers import deadline_of
from .status import translated

#: wire enum number -> the event model's name (EVENT_TYPE_PAGE_VIEW -> page_view)
TYPES = {v.number: v.name[len("EVENT_TYPE_"):].lower()
         for v in epb.EventType.DESCRIPTOR.values if v.number}
CHANNELS = {v.number: v.name[len("EVENT_CHANNEL_"):].lower()
            for v in epb.EventChannel.DESCRIPTOR.values if v.number}
STATUS = {EventStatus.STORED: epb.EVENT_STATUS_STORED, EventStatus.DUPLICATE: epb.EVENT_STATUS_DUPLICATE,
          EventStatus.REJECTED: epb.EVENT_STATUS_REJECTED}
_wire.configure_events(TYPES, CHANNELS, STATUS)   # the C reader and writer (engine.server.wire) alike

_IDS = ("event_id", "customer_id", "email_hash", "device_id", "loyalty_card")
_TEXT = ("sku", "category", "size", "query", "page", "url", "store_id", "order_id", "campaign_id",
         "offer_id", "placement")
_OPTIONAL = ("price", "total", "loyalty_points")
_CONSENT = ("email", "push", "sms")


# ---------------------------------------------------------------- request
def _item(it: epb.EventItem) -> dict:
    out = {}
    for name in ("sku", "category", "size"):
        v = getattr(it, name)
        if v:
            out[name] = v
    if it.HasField("price"):
        out["price"] = it.price
    if it.HasField("qty"):
        out["qty"] = it.qty
    return out


def event_from_pb(e: epb.Event) -> dict | Rejected:
    """One wire event as the event model's raw object."""
    raw: dict = {}
    for name in _IDS:
        v = getattr(e, name)
        if v:
            raw[name] = v
    if e.type:
        raw["type"] = TYPES.get(e.type, e.type)
    if e.channel:
        raw["channel"] = CHANNELS.get(e.channel, e.channel)
    if e.HasField("timestamp"):
        ts = e.timestamp
        if not 0 <= ts.nanos < 1_000_000_000:
            return Rejected((("timestamp.nanos", "V103", f"must be from 0 to 999999999, got {ts.nanos}"),),
                            e.event_id or None)
        raw["timestamp"] = ts.seconds + ts.nanos / 1e9
    if e.items:
        raw["items"] = [_item(it) for it in e.items]
    for name in _TEXT:
        v = getattr(e, name)
        if v:
            raw[name] = v
    for name in _OPTIONAL:
        if e.HasField(name):
            raw[name] = getattr(e, name)
    if e.HasField("consent"):
        for name in _CONSENT:
            if e.consent.HasField(name):
                raw[name] = getattr(e.consent, name)
    if e.HasField("home"):
        raw["home"] = {"lat": e.home.lat, "lon": e.home.lon}
    if e.HasField("meta"):
        meta = struct_to_dict(e.meta)
        problem = _shape_problem(meta)             # as Decide's context.attributes: 32 levels, 100,000 values
        if problem is not None:
            return Rejected((("meta", "V103", problem),), e.event_id or None)
        raw["meta"] = meta
    return raw


def events_from_pb(request: epb.RecordEventsRequest) -> list[dict | Rejected]:
    return [event_from_pb(e) for e in request.events]


# ---------------------------------------------------------------- response
def wire_field(field: str, code: str) -> str:
    """The event model's field path as the wire names it: the consent flags
    live under ``consent`` ("give at least one of email, push, sms" is about
    ``consent`` itself)."""
    head, dot, rest = field.partition(".")
    if head in _CONSENT:
        return "consent" if code == "V111" else f"consent.{field}"
    return field


def _outcome(o: EventOutcome, out: epb.EventResult) -> None:
    out.status = STATUS[o.status]
    if o.event_id:
        out.event_id = o.event_id
    if o.customer_id:
        out.customer_id = o.customer_id
    for p in o.problems:
        f = wire_field(p.field, p.code)
        out.violations.add(field=f"events[{p.index}]" + (f".{f}" if f else ""), description=p.message,
                           code=p.code)


def encode_result(r: RecordResult) -> bytes:
    """The bytes of :func:`result_to_pb`, written in C (``_wire.encode_events``)
    unless an event was rejected (its violations go through result_to_pb)."""
    raw = _wire.encode_events(r.outcomes)
    return raw if raw is not None else result_to_pb(r).SerializeToString()


def result_to_pb(r: RecordResult) -> epb.RecordEventsResponse:
    out = epb.RecordEventsResponse(stored=r.count(EventStatus.STORED), duplicates=r.count(EventStatus.DUPLICATE),
                                   rejected=r.count(EventStatus.REJECTED))
    for o in r.outcomes:
        _outcome(o, out.results.add())
    return out


# ---------------------------------------------------------------- servicer
class EventsServicer:
    """DecisionService.RecordEvents (registered beside DecisionServicer's
    methods under the same service name)."""

    def __init__(self, recorder: EventRecorder):
        self.recorder = recorder

    def _record(self, request: epb.RecordEventsRequest | list, context) -> RecordResult:
        deadline = deadline_of(context)
        events = request if isinstance(request, list) else events_from_pb(request)
        return self.recorder.record(events, deadline)

    @translated
    def RecordEvents(self, request: epb.RecordEventsRequest | list, context) -> epb.RecordEventsResponse:
        """``request``: the message, or its events already read (in C by
        engine.server.wire, or one by one by engine.server.nesting for a
        batch the runtime could not parse for an event's ``meta`` nested
        too deeply)."""
        return result_to_pb(self._record(request, context))

    @translated
    def record_events_bytes(self, request: epb.RecordEventsRequest | list, context) -> bytes:
        """RecordEvents answering with the response's bytes (:func:`encode_result`)."""
        return encode_result(self._record(request, context))
