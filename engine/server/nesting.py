"""Decide and RecordEvents requests the protobuf runtime refused for their
nesting: which field, and, in a batch, which item.

A ``google.protobuf.Struct`` (``profile``, ``context.attributes``) costs the
runtime three message levels per level of its JSON, and the runtime stops at
100: a Struct nested some 34 levels deep fails the whole parse before
``engine.service.validate`` could say "nested more than 32 levels" about
it.  ``engine.server.app.raw_unary`` calls these only when the parse has
failed, so the request's hot path costs what it did:

* :func:`decide_parse_error` answers such a DecideRequest INVALID_ARGUMENT
  with a BadRequest violation naming the field (``profile``,
  ``context.attributes``; the request itself when neither can be told);
* :func:`batch_parse_error` reads a DecideBatchRequest item by item, so only
  the items nested too deeply fail (``requests[i].profile``) and the others
  are decided.

* :func:`events_parse_error` reads a RecordEventsRequest event by event:
  an event whose ``meta`` Struct is nested too deeply is rejected alone
  (``events[i].meta``, V103, as any bad event), and the others are recorded.

Anything else wrong with the bytes (a parse error that is not about depth,
bytes that are not protobuf at all) is left to the caller's generic
"not a valid" answer.
"""
from __future__ import annotations

import re

from google.protobuf import struct_pb2

from ..service.errors import FieldViolation, InvalidArgument
from ..service.events import Rejected
from ..service.validate import MAX_DEPTH, _shape_problem, validate_batch_size
from . import convert
from .events import event_from_pb
from .pb.maple.v1 import decision_pb2 as pb
from .pb.maple.v1 import events_pb2 as epb

#: the runtimes' words for it: upb "Exceeded upb_DecodeOptions_MaxDepth",
#: pure Python "too many levels of nesting", C++ "too deep"/"recursion"
_DEPTH = re.compile(r"depth|nesting|too deep|recursion", re.IGNORECASE)
NESTED = f"nested more than {MAX_DEPTH} levels deep"

LEN = 2


def is_depth_error(err: BaseException) -> bool:
    """Whether a parse error is the runtime's recursion limit."""
    return isinstance(err, RecursionError) or bool(_DEPTH.search(str(err)))


def decide_parse_error(raw: bytes, err: BaseException):
    """``raw_unary``'s ``on_parse_error`` for Decide: a DecideRequest nested
    past the runtime's limit raises InvalidArgument naming the field; None
    (the generic answer) for any other bad bytes."""
    if not is_depth_error(err):
        return None
    try:
        bad = depth_violations(raw)
    except ValueError:                               # past the depth, bytes that are no message
        return None
    raise InvalidArgument(bad)


def _items_failed_for_depth(raw: bytes, err: BaseException) -> list[bytes] | None:
    """The bodies of field 1 (a batch's items) of a message the runtime
    refused for its recursion limit; None when it failed otherwise, or the
    bytes do not split into fields."""
    if not is_depth_error(err):
        return None
    try:
        return [body for number, wire_type, body in _fields(raw) if number == 1 and wire_type == LEN]
    except ValueError:
        return None


def batch_parse_error(raw: bytes, err: BaseException):
    """``raw_unary``'s ``on_parse_error`` for DecideBatch: when the batch
    failed for the runtime's recursion limit, its items parsed one by one, as
    ``DecisionServicer.decide_batch_bytes`` takes them: a DecideQuery per
    good item, an InvalidArgument per bad one (the decider prefixes it with
    ``requests[i]``).  None (the generic answer) when the bytes are bad
    otherwise."""
    bodies = _items_failed_for_depth(raw, err)
    if bodies is None:
        return None
    validate_batch_size(len(bodies))                # RESOURCE_EXHAUSTED, as it would have been
    items = []
    for body in bodies:
        try:
            message = pb.DecideRequest.FromString(body)
        except Exception as item_err:
            if not is_depth_error(item_err):
                return None                          # the batch is not a valid message
            try:
                items.append(InvalidArgument(depth_violations(body)))
            except ValueError:
                return None
            continue
        try:
            items.append(convert.query_from_pb(message))
        except InvalidArgument as bad:
            items.append(bad)
    return items


_EVENT_ID = epb.Event.DESCRIPTOR.fields_by_name["event_id"].number
_META = epb.Event.DESCRIPTOR.fields_by_name["meta"].number


def events_parse_error(raw: bytes, err: BaseException):
    """``raw_unary``'s ``on_parse_error`` for RecordEvents: when the batch
    failed for the runtime's recursion limit, its events read one by one, as
    ``EventsServicer.RecordEvents`` takes them: the raw event of each good
    one, a :class:`Rejected` (``meta``, V103) for each whose ``meta`` is
    nested too deeply, so the rest of the batch is stored as when any other
    event is bad.  None (the generic answer) when the bytes are bad
    otherwise.  (The batch's size is checked by the recorder, as always.)"""
    bodies = _items_failed_for_depth(raw, err)
    if bodies is None:
        return None
    events = []
    for body in bodies:
        try:
            events.append(event_from_pb(epb.Event.FromString(body)))
            continue
        except Exception as event_err:
            if not is_depth_error(event_err):
                return None                          # the batch is not a valid message
        try:
            fields = list(_fields(body))
        except ValueError:
            return None
        meta = b"".join(b for number, wire_type, b in fields if number == _META and wire_type == LEN)
        problem = _struct_problem(meta) if meta else None
        if problem is None:
            return None                              # too deep, but not for its meta: no other field can be
        ids = [b for number, wire_type, b in fields if number == _EVENT_ID and wire_type == LEN]
        try:
            event_id = ids[-1].decode() if ids else None    # the last occurrence wins, as in the runtime
        except UnicodeDecodeError:
            return None
        events.append(Rejected((("meta", "V103", problem),), event_id or None))
    return events


def depth_violations(raw: bytes) -> list[FieldViolation]:
    """The fields of a DecideRequest's bytes nested too deeply: ``profile``
    and/or ``context.attributes``, or the request itself ("") when neither
    is found to be."""
    top = list(_fields(raw))
    profile = b"".join(body for number, wire_type, body in top if number == 2 and wire_type == LEN)
    context = b"".join(body for number, wire_type, body in top if number == 3 and wire_type == LEN)
    attributes = b"".join(body for number, wire_type, body in _fields(context)
                          if number == 10 and wire_type == LEN)
    bad = [FieldViolation(path, problem) for path, body in (("profile", profile), ("context.attributes", attributes))
           if body and (problem := _struct_problem(body))]
    return bad or [FieldViolation("", NESTED)]


def _struct_problem(body: bytes) -> str | None:
    """What is wrong with a Struct's bytes for its nesting, if anything.
    (Occurrences of a message field concatenated are what the runtime merges,
    so ``body`` may be several.)"""
    try:
        s = struct_pb2.Struct.FromString(body)
    except Exception as err:
        return NESTED if is_depth_error(err) else None
    # parsed alone: it had one or two message levels more to spare than in the request
    return _shape_problem(convert.struct_to_dict(s))


def _fields(buf: bytes):
    """(number, wire type, body) of each field of a message's bytes; body is
    the bytes of a length-delimited field, else None.  Raises ValueError on
    bytes that are not a message."""
    view = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        body = None
        if wire_type == 0:
            _, pos = _varint(buf, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == LEN:
            n, pos = _varint(buf, pos)
            body = bytes(view[pos:pos + n])
            pos += n
        else:                                        # groups: nothing of ours has them
            raise ValueError(f"wire type {wire_type}")
        if pos > end or number == 0:
            raise ValueError("truncated")
        yield number, wire_type, body


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise ValueError("varint too long")
