"""DecideResponse straight to protobuf wire bytes: the hot path's encoder.

``convert.result_to_pb`` builds a ``DecideResponse`` field by field through
the protobuf runtime, and gRPC then serializes it: some 60 attribute stores
and a dozen message objects per answer, a fifth of Decide's instructions in
the server.  ``encode_result`` (C, from ``_wire.pyx``) writes the same
message as bytes in one pass: the protobuf encoding is stable and simple (a
tag, then a varint, eight bytes, or a length and that many bytes).

It is the fast twin of ``result_to_pb``, not a second contract:
``tests/server/test_wire.py`` checks, over generated results and the
reference pack's answers, that the bytes parse to exactly the message
``result_to_pb`` builds.  The field numbers it writes and reads (and the
types of those it reads) are checked here against the generated
descriptors at import, so a renumbered or retyped field in
``decision.proto`` stops the server at start-up instead of garbling
answers or misreading requests.

An answer with an explanation (``explain``, a debugging aid) goes through
``result_to_pb``.

The requests come the other way the same way: ``decide_request`` reads a
DecideRequest's bytes straight into the ``DecideQuery`` that
``convert.query_from_pb`` would make of the parsed message (the runtime
parse, the message's attribute reads and the context's translation were a
sixth of a Decide's instructions).  What the C decoder does not read as the
runtime would (a Struct profile or attributes, an unknown field or enum
number, a repeated sub-message, bad UTF-8, JSON that does not parse) it
hands back, and the request takes the runtime's path, with the runtime's
errors.  ``tests/server/test_wire_read.py`` holds the two equal on
generated requests and on garbage.
"""
from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from ..eval.values import render_value
from . import _wire
from ..service.model import DecideQuery, ItemError, PendingJson, RequestContext
from ..service.validate import decode_json
from .convert import CHANNELS, DEVICES, PROFILE_STATUS, SOURCES, _plain, result_to_pb
from .pb.maple.v1 import decision_pb2 as pb
from .pb.maple.v1 import events_pb2 as epb

#: message -> {field: number} as _wire.pyx writes (answers) or reads (requests) them
LAYOUT = {
    pb.DecideRequest: dict(customer_id=1, profile=2, context=3, decisions=4, explain=5, email_hash=6, device_id=7,
                           loyalty_card=8, profile_json=10),
    pb.RequestContext: dict(channel=1, device=2, locale=3, page=4, sku=5, category=6, location=7, store=8,
                            timestamp=9, attributes=10),
    pb.GeoPoint: dict(lat=1, lon=2),
    pb.DecideResponse: dict(ruleset_version=1, homepage_category=2, prefill_size=3, nearby_stores=4,
                            next_best_offer=5, decisions=6, degraded=7, degraded_reason=8, profile_status=9,
                            explanation=10, decided_at=11, customer_id=12),
    pb.Reason: dict(rule=1, because=2, location=3),
    pb.ExperimentAssignment: dict(experiment=1, variant=2),
    pb.HomepageCategory: dict(category=1, source=2, reason=3, experiments=4),
    pb.PrefilledSize: dict(size=1, source=2, reason=3, experiments=4),
    pb.NearbyStoresPolicy: dict(radius_km=1, max_stores=2, min_quantity=3, low_stock_below=4, preferred_first=5,
                                open_now=6),
    pb.StoreAvailability: dict(store_id=1, name=2, distance_km=3, quantity=4, low_stock=5, preferred=6,
                               open_now=7),
    pb.NearbyStores: dict(stores=1, policy=2, source=3, reason=4, experiments=5, located_by=6, empty_reason=7),
    pb.Offer: dict(id=1, message=2, score=3, experiment=4, variant=5, reason=6, fields=7),
    pb.NextBestOffers: dict(offers=1, source=2, experiments=3),
    pb.DecisionResult: dict(value=1, source=2, reason=3, experiments=4, offers=5, kind=6),
    pb.DecideBatchItem: dict(response=1, error=2),
    pb.DecideBatchResponse: dict(results=1, ruleset_version=2),
    epb.RecordEventsRequest: dict(events=1),
    epb.Event: dict(event_id=1, type=2, channel=3, timestamp=4, customer_id=5, email_hash=6, device_id=7,
                    loyalty_card=8, items=10, sku=11, category=12, price=13, size=14, query=15, page=16, url=17,
                    store_id=18, order_id=19, total=20, campaign_id=21, offer_id=22, placement=23, consent=24,
                    home=25, loyalty_points=26, meta=30),
    epb.EventItem: dict(sku=1, category=2, size=3, price=4, qty=5),
    epb.Consent: dict(email=1, push=2, sms=3),
    epb.EventLocation: dict(lat=1, lon=2),
}


_F = FieldDescriptor
#: message -> {field: type} of what _wire.pyx reads (a string is checked as
#: UTF-8, bytes are not; a repeated field's items are appended)
READ_TYPES = {
    pb.DecideRequest: dict(customer_id=(_F.TYPE_STRING, False), profile=(_F.TYPE_MESSAGE, False),
                           context=(_F.TYPE_MESSAGE, False), decisions=(_F.TYPE_STRING, True),
                           explain=(_F.TYPE_BOOL, False), profile_json=(_F.TYPE_BYTES, False),
                           email_hash=(_F.TYPE_STRING, False), device_id=(_F.TYPE_STRING, False),
                           loyalty_card=(_F.TYPE_STRING, False)),
    pb.RequestContext: dict(channel=(_F.TYPE_ENUM, False), device=(_F.TYPE_ENUM, False),
                            locale=(_F.TYPE_STRING, False), page=(_F.TYPE_STRING, False),
                            sku=(_F.TYPE_STRING, False), category=(_F.TYPE_STRING, False),
                            location=(_F.TYPE_MESSAGE, False), store=(_F.TYPE_STRING, False),
                            timestamp=(_F.TYPE_MESSAGE, False), attributes=(_F.TYPE_MESSAGE, False)),
    pb.GeoPoint: dict(lat=(_F.TYPE_DOUBLE, False), lon=(_F.TYPE_DOUBLE, False)),
    epb.RecordEventsRequest: dict(events=(_F.TYPE_MESSAGE, True)),
    epb.Event: dict(event_id=(_F.TYPE_STRING, False), type=(_F.TYPE_ENUM, False), channel=(_F.TYPE_ENUM, False),
                    timestamp=(_F.TYPE_MESSAGE, False), customer_id=(_F.TYPE_STRING, False),
                    email_hash=(_F.TYPE_STRING, False), device_id=(_F.TYPE_STRING, False),
                    loyalty_card=(_F.TYPE_STRING, False), items=(_F.TYPE_MESSAGE, True),
                    sku=(_F.TYPE_STRING, False), category=(_F.TYPE_STRING, False), price=(_F.TYPE_DOUBLE, False),
                    size=(_F.TYPE_STRING, False), query=(_F.TYPE_STRING, False), page=(_F.TYPE_STRING, False),
                    url=(_F.TYPE_STRING, False), store_id=(_F.TYPE_STRING, False),
                    order_id=(_F.TYPE_STRING, False), total=(_F.TYPE_DOUBLE, False),
                    campaign_id=(_F.TYPE_STRING, False), offer_id=(_F.TYPE_STRING, False),
                    placement=(_F.TYPE_STRING, False), consent=(_F.TYPE_MESSAGE, False),
                    home=(_F.TYPE_MESSAGE, False), loyalty_points=(_F.TYPE_DOUBLE, False),
                    meta=(_F.TYPE_MESSAGE, False)),
    epb.EventItem: dict(sku=(_F.TYPE_STRING, False), category=(_F.TYPE_STRING, False),
                        size=(_F.TYPE_STRING, False), price=(_F.TYPE_DOUBLE, False), qty=(_F.TYPE_INT32, False)),
    epb.Consent: dict(email=(_F.TYPE_BOOL, False), push=(_F.TYPE_BOOL, False), sms=(_F.TYPE_BOOL, False)),
    epb.EventLocation: dict(lat=(_F.TYPE_DOUBLE, False), lon=(_F.TYPE_DOUBLE, False)),
}


def check_layout() -> None:
    """Raise ImportError when decision.proto numbers a field differently
    from what the encoder writes or the reader reads (or dropped it), or
    gives a field the reader reads another type."""
    for cls, fields in LAYOUT.items():
        numbers = {f.name: f.number for f in cls.DESCRIPTOR.fields}
        for name, number in fields.items():
            if numbers.get(name) != number:
                raise ImportError(f"engine.server.wire: {cls.DESCRIPTOR.full_name}.{name} is field "
                                  f"{numbers.get(name)} in decision.proto but _wire.pyx uses {number}")
    for cls, fields in READ_TYPES.items():
        by_name = cls.DESCRIPTOR.fields_by_name
        for name, (kind, repeated) in fields.items():
            f = by_name[name]
            is_repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == _F.LABEL_REPEATED
            if f.type != kind or is_repeated != repeated:
                raise ImportError(f"engine.server.wire: {cls.DESCRIPTOR.full_name}.{name} changed type in "
                                  "decision.proto; _wire.pyx reads it as it was")
    context = pb.RequestContext.DESCRIPTOR.fields_by_name
    if (context["timestamp"].message_type.full_name != "google.protobuf.Timestamp"
            or context["location"].message_type is not pb.GeoPoint.DESCRIPTOR):
        raise ImportError("engine.server.wire: RequestContext.timestamp or .location changed type in "
                          "decision.proto; _wire.pyx reads them as they were")
    event = epb.Event.DESCRIPTOR.fields_by_name
    if (event["timestamp"].message_type.full_name != "google.protobuf.Timestamp"
            or event["items"].message_type is not epb.EventItem.DESCRIPTOR
            or event["consent"].message_type is not epb.Consent.DESCRIPTOR
            or event["home"].message_type is not epb.EventLocation.DESCRIPTOR
            or epb.RecordEventsRequest.DESCRIPTOR.fields_by_name["events"].message_type is not epb.Event.DESCRIPTOR):
        raise ImportError("engine.server.wire: an Event field changed its message type in events.proto; "
                          "_wire.pyx reads them as they were")
    if [f.name for f in epb.Event.DESCRIPTOR.fields if f.name not in LAYOUT[epb.Event]]:
        raise ImportError("engine.server.wire: events.proto's Event has fields _wire.pyx does not know; "
                          "record_events would hand every such event to the runtime path")


check_layout()
_wire.configure(SOURCES, PROFILE_STATUS, render_value, _plain, lambda r: result_to_pb(r).SerializeToString())

_parse_request = pb.DecideRequest.FromString
_parse_batch = pb.DecideBatchRequest.FromString
_batch_queries = _wire.batch_queries
_wire.configure_decoding(CHANNELS, DEVICES, decode_json, DecideQuery, RequestContext, _parse_request,
                         PendingJson)

encode_result = _wire.encode_result
#: the same bytes written from the kernel's raw answers, with no DecideResult between (_decide.answer)
encode_raw = _wire.encode_raw

_parse_events = epb.RecordEventsRequest.FromString
_record_events = _wire.record_events          # its enum tables: engine.server.events configures them


def record_events_request(raw: bytes):
    """A RecordEventsRequest's bytes as the list of raw events that
    ``events.events_from_pb`` makes of the parsed message (C:
    ``_wire.record_events``), or, for what only the runtime reads (``meta``,
    a timestamp it rejects, an unknown field...), the parsed message (raises
    as ``RecordEventsRequest.FromString`` does)."""
    events = _record_events(raw)
    return events if events is not None else _parse_events(raw)

#: A DecideRequest's bytes as the DecideQuery ``convert.query_from_pb``
#: makes of them, or, for what only the runtime reads, the parsed message
#: (raises as ``DecideRequest.FromString`` does).  C: ``_wire.decide_query``'s
#: reader, then ``_parse_request`` when it hands the request back.
decide_request = _wire.decide_request


def batch_request(raw: bytes):
    """A DecideBatchRequest's bytes as a list of DecideQuery, or the parsed
    message (as ``decide_request``).  An item's profile_json is not decoded
    yet (a PendingJson): ``Decider.decide_batch`` decodes it at the item's
    turn, and ``engine.service.validate.decoded_snapshot`` gives the query
    ``convert.query_from_pb`` would have made (or its InvalidArgument)."""
    items = _batch_queries(raw)
    return items if items is not None else _parse_batch(raw)


def encode_batch(version: str, results: list, error_bytes) -> bytes:
    """A DecideBatchResponse's bytes, in C: each DecideResult's answer as
    :func:`encode_result` writes it, each EncodedAnswer's bytes as they are
    (:func:`encode_raw` wrote them), each ItemError as ``error_bytes(it)``
    (its ItemError message's bytes), then the ruleset version."""
    return _wire.encode_batch(version, results, ItemError, error_bytes)


__all__ = ["encode_result", "encode_raw", "encode_batch", "check_layout", "decide_request", "batch_request",
           "record_events_request"]
