# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Decide's protobuf wire format, in C: see engine/server/wire.py.

Encoding: every function mirrors a part of ``convert.result_to_pb``; the
field numbers are the ones wire.py checks against the generated descriptors
at import.  Strings are written from CPython's cached UTF-8 (no copy for
ASCII text), sub-messages in place: a one-byte length is reserved and the
body moved when its length needs more.

Decoding (``decide_query``, ``batch_queries``): the common DecideRequest
straight to a DecideQuery, as ``convert.query_from_pb`` makes it from the
parsed message; ``record_events``: a RecordEventsRequest's events straight
to the raw event objects ``engine.server.events.events_from_pb`` makes.  Anything it does not read exactly as the protobuf runtime
would (a Struct, an unknown field or enum number, a repeated sub-message,
bad UTF-8, a truncated field, JSON that does not parse) makes it answer
None, and the caller takes the runtime's path, errors included.  (A
DecideBatch item's profile_json is not parsed here but at the item's
turn, with the runtime path's errors: ``_query``.)
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.math cimport floor, isfinite, signbit
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

from ..service._fields cimport Slot, field as _f, field_slot
from ..service._assemble cimport (DecisionMap, OFFERS, RECORD, TEXT, common_of, generic_of, offer_message,
                                  offer_score, record_of, text_value)
from ..service.results import HOMEPAGE as _HOMEPAGE, jsonable as _jsonable
from ..service.model import (Common, DecideResult, EncodedAnswer, GenericDecision, HomepageCategory, NearbyStores,
                             NearbyStoresPolicy, NextBestOffers, OfferResult, PrefilledSize, Reason,
                             StoreAvailability)

import math

cdef enum:
    VARINT = 0
    I64 = 1
    LEN = 2


cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _start(Buf *b, Py_ssize_t cap) except -1:
    """An empty buffer of ``cap`` bytes (the caller frees ``b.data``)."""
    b.data = <char *> malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.len = 0
    b.cap = cap
    return 0


cdef int _reserve(Buf *b, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef char *p
    if b.len + n <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < b.len + n + 256:
        cap = b.len + n + 256
    p = <char *> realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef inline int _raw(Buf *b, const char *p, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.len, p, n)
    b.len += n
    return 0


cdef inline int _varint_size(uint64_t v) noexcept:
    cdef int n = 1
    while v > 0x7F:
        v >>= 7
        n += 1
    return n


cdef int _varint(Buf *b, uint64_t v) except -1:
    _reserve(b, 10)
    while v > 0x7F:
        b.data[b.len] = <char> ((v & 0x7F) | 0x80)
        b.len += 1
        v >>= 7
    b.data[b.len] = <char> v
    b.len += 1
    return 0


cdef inline int _tag(Buf *b, int field, int wire_type) except -1:
    return _varint(b, <uint64_t> ((field << 3) | wire_type))


cdef int _str(Buf *b, int field, object s) except -1:
    """A string field; nothing for "" (proto3 leaves defaults out).  Not a
    str: TypeError, as the protobuf runtime would refuse it."""
    cdef Py_ssize_t n
    cdef const char *p
    if type(s) is not str:
        raise TypeError(f"expected str for field {field}, got {type(s).__name__}")
    p = PyUnicode_AsUTF8AndSize(s, &n)
    if n == 0:
        return 0
    _tag(b, field, LEN)
    _varint(b, <uint64_t> n)
    return _raw(b, p, n)


cdef int _str_always(Buf *b, int field, object s) except -1:
    """A string member of a oneof: written even when empty."""
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    _tag(b, field, LEN)
    _varint(b, <uint64_t> n)
    return _raw(b, p, n)


cdef int _double_always(Buf *b, int field, double v) except -1:
    _tag(b, field, I64)
    _reserve(b, 8)
    memcpy(b.data + b.len, &v, 8)           # little-endian on every platform CPython wheels target
    b.len += 8
    return 0


cdef inline int _double(Buf *b, int field, double v) except -1:
    """A double field; proto3 leaves +0.0 out (and writes -0.0)."""
    if v == 0.0 and not signbit(v):
        return 0
    return _double_always(b, field, v)


cdef int _int32(Buf *b, int field, object v) except -1:
    cdef int64_t x = v
    if x == 0:
        return 0
    if x < -2147483648 or x > 2147483647:
        raise ValueError(f"Value out of range: {x}")
    _tag(b, field, VARINT)
    return _varint(b, <uint64_t> x)          # negative: ten bytes, two's complement


cdef inline int _bool(Buf *b, int field, object v) except -1:
    if v:
        _tag(b, field, VARINT)
        _varint(b, 1)
    return 0


cdef inline int _optional_bool(Buf *b, int field, object v) except -1:
    """An ``optional bool``: written when not None, False included (presence)."""
    if v is not None:
        _tag(b, field, VARINT)
        _varint(b, 1 if v else 0)
    return 0


cdef inline int _enum(Buf *b, int field, long v) except -1:
    if v:
        _tag(b, field, VARINT)
        _varint(b, <uint64_t> v)
    return 0


cdef Py_ssize_t _open(Buf *b, int field) except -1:
    """Start a sub-message: its tag and one byte for its length; returns
    where its body starts."""
    _tag(b, field, LEN)
    _reserve(b, 1)
    b.len += 1
    return b.len


cdef int _close(Buf *b, Py_ssize_t start) except -1:
    """End the sub-message begun at ``start``: write its length, moving the
    body when the length needs more than the byte reserved."""
    cdef Py_ssize_t n = b.len - start
    cdef int size = _varint_size(<uint64_t> n)
    cdef Py_ssize_t at = start - 1
    cdef uint64_t v = <uint64_t> n
    if size > 1:
        _reserve(b, size - 1)
        memmove(b.data + start + size - 1, b.data + start, n)
        b.len += size - 1
    while v > 0x7F:
        b.data[at] = <char> ((v & 0x7F) | 0x80)
        at += 1
        v >>= 7
    b.data[at] = <char> v
    return 0


# ---------------------------------------------------------------- the parts
cdef dict SOURCES = None             # source name -> enum number (convert.SOURCES)
cdef object PROFILE_STATUS = None    # ProfileStatus -> enum number (convert.PROFILE_STATUS)
cdef object RENDER = None            # engine.eval.values.render_value
cdef object PLAIN = None             # convert._plain
cdef object FALLBACK = None          # convert.result_to_pb(r).SerializeToString


# the answer's fields, read from their slots (engine/service/_fields.pxd)
cdef list _GENERIC = []                 # fields without a slot (generic_fields)
cdef Slot R_RULESET_VERSION = field_slot(DecideResult, "ruleset_version", _GENERIC)
cdef Slot R_PROFILE_STATUS = field_slot(DecideResult, "profile_status", _GENERIC)
cdef Slot R_DECIDED_AT = field_slot(DecideResult, "decided_at", _GENERIC)
cdef Slot R_HOMEPAGE_CATEGORY = field_slot(DecideResult, "homepage_category", _GENERIC)
cdef Slot R_PREFILL_SIZE = field_slot(DecideResult, "prefill_size", _GENERIC)
cdef Slot R_NEARBY_STORES = field_slot(DecideResult, "nearby_stores", _GENERIC)
cdef Slot R_NEXT_BEST_OFFER = field_slot(DecideResult, "next_best_offer", _GENERIC)
cdef Slot R_DECISIONS = field_slot(DecideResult, "decisions", _GENERIC)
cdef Slot R_DEGRADED = field_slot(DecideResult, "degraded", _GENERIC)
cdef Slot R_DEGRADED_REASON = field_slot(DecideResult, "degraded_reason", _GENERIC)
cdef Slot R_EXPLANATION = field_slot(DecideResult, "explanation", _GENERIC)
cdef Slot R_CUSTOMER_ID = field_slot(DecideResult, "customer_id", _GENERIC)
cdef Slot ENCODED_BODY = field_slot(EncodedAnswer, "body", _GENERIC)
cdef Slot REASON_RULE = field_slot(Reason, "rule", _GENERIC)
cdef Slot REASON_BECAUSE = field_slot(Reason, "because", _GENERIC)
cdef Slot REASON_LOCATION = field_slot(Reason, "location", _GENERIC)
cdef Slot COMMON_SOURCE = field_slot(Common, "source", _GENERIC)
cdef Slot COMMON_REASON = field_slot(Common, "reason", _GENERIC)
cdef Slot COMMON_EXPERIMENTS = field_slot(Common, "experiments", _GENERIC)
cdef Slot OFFER_ID = field_slot(OfferResult, "id", _GENERIC)
cdef Slot OFFER_MESSAGE = field_slot(OfferResult, "message", _GENERIC)
cdef Slot OFFER_SCORE = field_slot(OfferResult, "score", _GENERIC)
cdef Slot OFFER_EXPERIMENT = field_slot(OfferResult, "experiment", _GENERIC)
cdef Slot OFFER_VARIANT = field_slot(OfferResult, "variant", _GENERIC)
cdef Slot OFFER_REASON = field_slot(OfferResult, "reason", _GENERIC)
cdef Slot OFFER_FIELDS = field_slot(OfferResult, "fields", _GENERIC)
cdef Slot NEARBY_STORES = field_slot(NearbyStores, "stores", _GENERIC)
cdef Slot NEARBY_POLICY = field_slot(NearbyStores, "policy", _GENERIC)
cdef Slot NEARBY_COMMON = field_slot(NearbyStores, "common", _GENERIC)
cdef Slot NEARBY_LOCATED_BY = field_slot(NearbyStores, "located_by", _GENERIC)
cdef Slot NEARBY_EMPTY_REASON = field_slot(NearbyStores, "empty_reason", _GENERIC)
cdef Slot STORE_STORE_ID = field_slot(StoreAvailability, "store_id", _GENERIC)
cdef Slot STORE_NAME = field_slot(StoreAvailability, "name", _GENERIC)
cdef Slot STORE_DISTANCE_KM = field_slot(StoreAvailability, "distance_km", _GENERIC)
cdef Slot STORE_QUANTITY = field_slot(StoreAvailability, "quantity", _GENERIC)
cdef Slot STORE_LOW_STOCK = field_slot(StoreAvailability, "low_stock", _GENERIC)
cdef Slot STORE_PREFERRED = field_slot(StoreAvailability, "preferred", _GENERIC)
cdef Slot STORE_OPEN_NOW = field_slot(StoreAvailability, "open_now", _GENERIC)
cdef Slot POLICY_RADIUS_KM = field_slot(NearbyStoresPolicy, "radius_km", _GENERIC)
cdef Slot POLICY_MAX_STORES = field_slot(NearbyStoresPolicy, "max_stores", _GENERIC)
cdef Slot POLICY_MIN_QUANTITY = field_slot(NearbyStoresPolicy, "min_quantity", _GENERIC)
cdef Slot POLICY_LOW_STOCK_BELOW = field_slot(NearbyStoresPolicy, "low_stock_below", _GENERIC)
cdef Slot POLICY_PREFERRED_FIRST = field_slot(NearbyStoresPolicy, "preferred_first", _GENERIC)
cdef Slot POLICY_OPEN_NOW = field_slot(NearbyStoresPolicy, "open_now", _GENERIC)
cdef Slot GENERIC_KIND = field_slot(GenericDecision, "kind", _GENERIC)
cdef Slot GENERIC_COMMON = field_slot(GenericDecision, "common", _GENERIC)
cdef Slot GENERIC_OFFERS = field_slot(GenericDecision, "offers", _GENERIC)
cdef Slot GENERIC_VALUE = field_slot(GenericDecision, "value", _GENERIC)
cdef Slot HOME_CATEGORY = field_slot(HomepageCategory, "category", _GENERIC)
cdef Slot HOME_COMMON = field_slot(HomepageCategory, "common", _GENERIC)
cdef Slot SIZE_SIZE = field_slot(PrefilledSize, "size", _GENERIC)
cdef Slot SIZE_COMMON = field_slot(PrefilledSize, "common", _GENERIC)
cdef Slot OFFERS_OFFERS = field_slot(NextBestOffers, "offers", _GENERIC)
cdef Slot OFFERS_COMMON = field_slot(NextBestOffers, "common", _GENERIC)


def configure(sources, profile_status, render_value, plain, fallback):
    global SOURCES, PROFILE_STATUS, RENDER, PLAIN, FALLBACK
    SOURCES, PROFILE_STATUS, RENDER, PLAIN, FALLBACK = sources, profile_status, render_value, plain, fallback


cdef int _reason(Buf *b, int field, object r) except -1:
    cdef Py_ssize_t at = _open(b, field)
    _str(b, 1, _f(r, REASON_RULE, "rule"))
    because = _f(r, REASON_BECAUSE, "because")
    if because:
        _str(b, 2, because)
    _str(b, 3, _f(r, REASON_LOCATION, "location"))
    return _close(b, at)


cdef int _common(Buf *b, object c, int source_field, int reason_field, int experiments_field) except -1:
    cdef Py_ssize_t at
    _enum(b, source_field, SOURCES.get(_f(c, COMMON_SOURCE, "source"), 0))
    if reason_field:
        r = _f(c, COMMON_REASON, "reason")
        if r is not None:
            _reason(b, reason_field, r)
    for e, v in _f(c, COMMON_EXPERIMENTS, "experiments"):
        at = _open(b, experiments_field)
        _str(b, 1, e)
        _str(b, 2, v)
        _close(b, at)
    return 0


cdef int _offer(Buf *b, int field, object o) except -1:
    cdef Py_ssize_t at = _open(b, field), entry
    _str(b, 1, _f(o, OFFER_ID, "id"))
    _str(b, 2, _f(o, OFFER_MESSAGE, "message"))
    _double(b, 3, _f(o, OFFER_SCORE, "score"))
    experiment = _f(o, OFFER_EXPERIMENT, "experiment")
    if experiment:
        _str(b, 4, experiment)
        _str(b, 5, _f(o, OFFER_VARIANT, "variant") or "")
    r = _f(o, OFFER_REASON, "reason")
    if r is not None:
        _reason(b, 6, r)
    fields = _f(o, OFFER_FIELDS, "fields")
    if fields:
        for k, v in fields.items():
            entry = _open(b, 7)
            _str(b, 1, k)
            _str(b, 2, v if type(v) is str else RENDER(v))     # render_value gives text as it is
            _close(b, entry)
    return _close(b, at)


cdef int _nearby(Buf *b, object n) except -1:
    cdef Py_ssize_t at
    for s in _f(n, NEARBY_STORES, "stores"):
        at = _open(b, 1)
        _str(b, 1, _f(s, STORE_STORE_ID, "store_id"))
        _str(b, 2, _f(s, STORE_NAME, "name"))
        _double(b, 3, _f(s, STORE_DISTANCE_KM, "distance_km"))
        _int32(b, 4, _f(s, STORE_QUANTITY, "quantity"))
        _bool(b, 5, _f(s, STORE_LOW_STOCK, "low_stock"))
        _bool(b, 6, _f(s, STORE_PREFERRED, "preferred"))
        _optional_bool(b, 7, _f(s, STORE_OPEN_NOW, "open_now"))
        _close(b, at)
    p = _f(n, NEARBY_POLICY, "policy")
    at = _open(b, 2)
    _double(b, 1, _f(p, POLICY_RADIUS_KM, "radius_km"))
    _int32(b, 2, _f(p, POLICY_MAX_STORES, "max_stores"))
    _int32(b, 3, _f(p, POLICY_MIN_QUANTITY, "min_quantity"))
    _int32(b, 4, _f(p, POLICY_LOW_STOCK_BELOW, "low_stock_below"))
    _bool(b, 5, _f(p, POLICY_PREFERRED_FIRST, "preferred_first"))
    _bool(b, 6, _f(p, POLICY_OPEN_NOW, "open_now"))
    _close(b, at)
    _common(b, _f(n, NEARBY_COMMON, "common"), 3, 4, 5)
    _str(b, 6, _f(n, NEARBY_LOCATED_BY, "located_by") or "")
    _str(b, 7, _f(n, NEARBY_EMPTY_REASON, "empty_reason") or "")
    return 0


cdef int _value(Buf *b, object v) except -1:
    """A google.protobuf.Value's fields (v already through convert._plain)."""
    cdef Py_ssize_t at, entry, inner
    if v is None:
        _tag(b, 1, VARINT)                   # null_value: a oneof member, written even as 0
        return _varint(b, 0)
    if v is True or v is False:
        _tag(b, 4, VARINT)
        return _varint(b, 1 if v else 0)
    if type(v) is float:
        return _double_always(b, 2, v)
    if type(v) is str:
        return _str_always(b, 3, v)
    if type(v) is dict:
        at = _open(b, 5)                     # Struct
        for k, x in v.items():
            entry = _open(b, 1)              # fields: map<string, Value>
            _str(b, 1, k)
            inner = _open(b, 2)
            _value(b, x)
            _close(b, inner)
            _close(b, entry)
        return _close(b, at)
    at = _open(b, 6)                         # ListValue
    for x in v:
        inner = _open(b, 1)
        _value(b, x)
        _close(b, inner)
    return _close(b, at)


cdef int _generic(Buf *b, object g) except -1:
    cdef Py_ssize_t at
    kind = _f(g, GENERIC_KIND, "kind")
    _str(b, 6, kind)
    _common(b, _f(g, GENERIC_COMMON, "common"), 2, 3, 4)
    if kind == "offer":
        for o in _f(g, GENERIC_OFFERS, "offers"):
            _offer(b, 5, o)
    else:
        at = _open(b, 1)
        _value(b, PLAIN(_f(g, GENERIC_VALUE, "value")))
        _close(b, at)
    return 0


cdef int _text_decision(Buf *b, int field, object text, object common) except -1:
    """HomepageCategory and PrefilledSize: the text (1), then source,
    reason and experiments (2, 3, 4)."""
    cdef Py_ssize_t at = _open(b, field)
    _str(b, 1, text or "")
    _common(b, common, 2, 3, 4)
    return _close(b, at)


cdef int _head(Buf *b, object version, object status, object decided_at) except -1:
    """DecideResponse's ruleset_version, profile_status and decided_at."""
    cdef Py_ssize_t at
    cdef double t, whole
    cdef int64_t nanos
    _str(b, 1, version)
    _enum(b, 9, PROFILE_STATUS[status])
    if decided_at is not None and isfinite(decided_at):
        # as result_to_pb: math.floor, then int((t - whole) * 1e9), in C doubles
        t = decided_at
        whole = floor(t)
        if not -9223372036854775808.0 <= whole < 9223372036854775808.0:
            raise ValueError(f"Value out of range: {math.floor(decided_at)}")
        nanos = <int64_t> ((t - whole) * 1e9)
        at = _open(b, 11)
        if whole != 0.0:
            _tag(b, 1, VARINT)
            _varint(b, <uint64_t> <int64_t> whole)
        if nanos:
            _tag(b, 2, VARINT)
            _varint(b, <uint64_t> nanos)
        _close(b, at)
    return 0


cdef int _nearby_field(Buf *b, object n) except -1:
    cdef Py_ssize_t at = _open(b, 4)
    _nearby(b, n)
    return _close(b, at)


cdef int _generic_entry(Buf *b, object name, object g) except -1:
    """One entry of DecideResponse.decisions (a map<string, GenericDecision>)."""
    cdef Py_ssize_t entry = _open(b, 6), at
    _str(b, 1, name)
    at = _open(b, 2)
    _generic(b, g)
    _close(b, at)
    return _close(b, entry)


cdef int _tail(Buf *b, bint degraded, object reason, object customer_id) except -1:
    if degraded:
        _tag(b, 7, VARINT)
        _varint(b, 1)
        _str(b, 8, reason)
    return _str(b, 12, customer_id)


cdef int _result(Buf *b, object r) except -1:
    cdef Py_ssize_t at
    _head(b, _f(r, R_RULESET_VERSION, "ruleset_version"), _f(r, R_PROFILE_STATUS, "profile_status"),
          _f(r, R_DECIDED_AT, "decided_at"))
    h = _f(r, R_HOMEPAGE_CATEGORY, "homepage_category")
    if h is not None:
        _text_decision(b, 2, _f(h, HOME_CATEGORY, "category"), _f(h, HOME_COMMON, "common"))
    s = _f(r, R_PREFILL_SIZE, "prefill_size")
    if s is not None:
        _text_decision(b, 3, _f(s, SIZE_SIZE, "size"), _f(s, SIZE_COMMON, "common"))
    n = _f(r, R_NEARBY_STORES, "nearby_stores")
    if n is not None:
        _nearby_field(b, n)
    o = _f(r, R_NEXT_BEST_OFFER, "next_best_offer")
    if o is not None:
        at = _open(b, 5)
        for x in _f(o, OFFERS_OFFERS, "offers"):
            _offer(b, 1, x)
        _common(b, _f(o, OFFERS_COMMON, "common"), 2, 0, 3)        # each offer has its own reason
        _close(b, at)
    for name, g in _f(r, R_DECISIONS, "decisions").items():
        _generic_entry(b, name, g)
    return _tail(b, _f(r, R_DEGRADED, "degraded"), _f(r, R_DEGRADED_REASON, "degraded_reason"),
                 _f(r, R_CUSTOMER_ID, "customer_id"))


def encode_result(r):
    """The bytes of ``convert.result_to_pb(r)``; an answer carrying an
    explanation (a Struct) is left to ``result_to_pb``."""
    if r.explanation is not None:
        return FALLBACK(r)
    cdef Buf b
    _start(&b, 1024)
    try:
        _result(&b, r)
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


# ---------------------------------------------------------------- straight from the kernel's raw answers
cdef class WirePlan:
    """What a plan's decisions write the same way on every call, as bytes:
    each rule's Common in its decision's message, each offer rule's reason;
    and where the typed decisions are."""
    cdef object plan
    cdef tuple decisions
    cdef tuple commons           # per decision: per rank, its Common's fields (None: not TEXT or OFFERS)
    cdef tuple reasons           # per decision: per rank, field 6 of an offer (OFFERS only)
    cdef int homepage, size, record, offers     # their positions; -1: none; the rest are generic

    def __cinit__(self, plan):
        cdef DecisionMap D
        cdef int i
        self.plan = plan
        self.decisions = plan.decisions
        self.homepage = self.size = self.record = self.offers = -1
        commons, reasons = [], []
        for i, D in enumerate(self.decisions):
            c = r = None
            if D.how == TEXT:
                c = tuple(_common_bytes(x, 2, 3, 4) for x in D.commons)
                if D.name == _HOMEPAGE:
                    self.homepage = i
                else:
                    self.size = i
            elif D.how == OFFERS:
                c = tuple(_common_bytes(x, 2, 0, 3) for x in D.commons)
                r = tuple(_reason_bytes(x) for x in D.reasons)
                self.offers = i
            elif D.how == RECORD:
                self.record = i
            commons.append(c)
            reasons.append(r)
        self.commons, self.reasons = tuple(commons), tuple(reasons)


cdef bytes _common_bytes(object c, int source_field, int reason_field, int experiments_field):
    cdef Buf b
    _start(&b, 256)
    try:
        _common(&b, c, source_field, reason_field, experiments_field)
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


cdef bytes _reason_bytes(object r):
    cdef Buf b
    _start(&b, 256)
    try:
        _reason(&b, 6, r)
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


cdef inline int _append(Buf *b, bytes body) except -1:
    return _raw(b, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))


cdef WirePlan _last_wire = None      # the last plan's (a reload makes a new plan)


cdef WirePlan _wire_plan(plan):
    """The plan's WirePlan: one reference read and, for a new plan, one
    written, so a handler thread never pairs a plan with another's bytes
    (two threads may both build one for a new plan: either is right)."""
    global _last_wire
    cdef WirePlan wp = _last_wire
    if wp is None or wp.plan is not plan:
        wp = WirePlan(plan)
        _last_wire = wp
    return wp


cdef int _wanted(object r, DecisionMap D, object asked) except -1:
    return r is not None and (asked is None or D.name in asked)


cdef int _text_raw(Buf *b, WirePlan wp, int i, object r, list decided_by, list late) except -1:
    """A homepage category or prefilled size: its message from the raw
    answer (what map_raw's TEXT branch and _text_decision write); one whose
    value is not text goes into ``late``, to be written as a generic
    decision."""
    cdef DecisionMap D = wp.decisions[i]
    cdef Py_ssize_t at
    ranks, outputs, scores, variants, status = r
    value = text_value(D, ranks, outputs, decided_by)
    if value is not None and not isinstance(value, str):
        late.append(i)                   # not text: a generic decision (map_raw's generic[name])
        return 0
    at = _open(b, 2 if i == wp.homepage else 3)
    _str(b, 1, value or "")
    if ranks and not variants:
        _append(b, wp.commons[i][ranks[0]])
    else:
        _common(b, common_of(D, ranks, variants, status), 2, 3, 4)
    return _close(b, at)


cdef tuple _offers_raw(Buf *b, WirePlan wp, int i, object r):
    """The next best offers from the raw answer (map_raw's OFFERS branch
    and _offer, in one); their (decision, rule) pair for decided_by."""
    cdef DecisionMap D = wp.decisions[i]
    cdef Py_ssize_t at = _open(b, 5), one, entry, j, k, n
    cdef tuple names, reasons = wp.reasons[i]
    ranks, outputs, scores, variants, status = r
    exp = variant = None
    if variants:
        exp, variant = variants[0]
    n = len(ranks)
    for k in range(n):
        rank, values = ranks[k], outputs[k]
        one = _open(b, 1)
        _str(b, 1, D.rules[rank])
        _str(b, 2, offer_message(D, rank, values))
        _double(b, 3, offer_score(scores[k]))
        if exp:
            _str(b, 4, exp)
            _str(b, 5, variant or "")
        _append(b, reasons[rank])
        names = D.shapes[rank][0]
        for j in range(len(names)):
            v = values[j]
            if v is not None:
                entry = _open(b, 7)
                _str(b, 1, names[j])
                _str(b, 2, v if type(v) is str else RENDER(_jsonable(v)))
                _close(b, entry)
        _close(b, one)
    if ranks and not variants:
        _append(b, wp.commons[i][ranks[0]])
    else:
        _common(b, common_of(D, ranks, variants, status), 2, 0, 3)
    _close(b, at)
    return D.decided[ranks[0]] if ranks else D.undecided


def encode_raw(plan, list raw, asked, near, version, decided_at, status, customer_id, list degraded):
    """(the bytes :func:`encode_result` writes for the DecideResult that
    ``decide_one`` makes of the kernel's ``raw`` answers, its decided_by),
    written from the raw answers with no typed results between: the
    server's Decide without an explanation.  ``near(policy, common)``: the
    NearbyStores for the nearby_stores record's policy (it may add to
    ``degraded``).  tests/server/test_wire_raw.py holds the bytes equal."""
    cdef WirePlan wp = _wire_plan(plan)
    cdef DecisionMap D
    cdef Py_ssize_t n = min(len(wp.decisions), len(raw))
    cdef int i
    cdef list decided_by = [], late = []
    cdef Buf b
    nearby = None
    _start(&b, 1024)
    try:
        _head(&b, version, status, decided_at)
        # in the order of the answer's fields: homepage (2), size (3), stores (4), offers (5), the rest (6);
        # decided_by in the plan's order, as map_raw makes it
        for i in range(n):
            r = raw[i]
            D = wp.decisions[i]
            if not _wanted(r, D, asked):
                continue
            if i == wp.homepage or i == wp.size:
                _text_raw(&b, wp, i, r, decided_by, late)
            elif i == wp.offers:
                decided_by.append(None)       # its place; filled when written, after the stores
            elif i == wp.record:
                policy, common, decided = record_of(D, r[0], r[1], r[3], r[4])
                decided_by.append(decided)
                nearby = (policy, common)
            else:
                decided_by.append(None)       # generic: filled below
        if nearby is not None:
            _nearby_field(&b, near(nearby[0], nearby[1]))
        return _rest(&b, wp, raw, asked, n, decided_by, late, degraded, customer_id)
    finally:
        free(b.data)


cdef tuple _rest(Buf *b, WirePlan wp, list raw, asked, Py_ssize_t n, list decided_by, list late, list degraded,
                 customer_id):
    """encode_raw's offers, generic decisions and tail; decided_by's places
    filled in the plan's order."""
    cdef int i, k = 0
    cdef list generic = []
    cdef DecisionMap D
    for i in range(n):                  # the places, in the plan's order, of what is written now
        r = raw[i]
        D = wp.decisions[i]
        if not _wanted(r, D, asked):
            continue
        if i == wp.offers:
            decided_by[k] = _offers_raw(b, wp, i, r)
        elif i != wp.homepage and i != wp.size and i != wp.record:
            decided, g = generic_of(wp.plan, D, r)
            decided_by[k] = decided
            generic.append((D.name, g))
        elif i in late:                 # a homepage or size that is not text
            generic.append((D.name, generic_of(wp.plan, D, r)[1]))
        k += 1
    for name, g in generic:
        _generic_entry(b, name, g)
    _tail(b, bool(degraded), "; ".join(degraded) if degraded else "", customer_id)
    return PyBytes_FromStringAndSize(b.data, b.len), decided_by


cdef int _bytes_field(Buf *b, int field, bytes body) except -1:
    """A length-delimited field holding ``body`` as it is."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    _tag(b, field, LEN)
    _varint(b, <uint64_t> n)
    return _raw(b, PyBytes_AS_STRING(body), n)


def encode_batch(version, list results, error_type, error_bytes):
    """The bytes of a DecideBatchResponse: per item of ``results`` a
    DecideBatchItem holding, for an ``error_type`` instance, the ItemError
    message ``error_bytes(item)`` returns, for an EncodedAnswer its bytes,
    else the DecideResponse ``encode_result`` writes for it; then the
    ruleset version.  One buffer
    for the whole batch (wire.encode_batch framed each item in Python)."""
    cdef Buf b
    cdef Py_ssize_t item, body
    _start(&b, 4096)
    try:
        for r in results:
            item = _open(&b, 1)                               # DecideBatchResponse.results
            if type(r) is EncodedAnswer:
                _bytes_field(&b, 1, _f(r, ENCODED_BODY, "body"))    # DecideBatchItem.response, written already
            elif isinstance(r, error_type):
                _bytes_field(&b, 2, error_bytes(r))           # DecideBatchItem.error
            elif r.explanation is not None:
                _bytes_field(&b, 1, FALLBACK(r))              # DecideBatchItem.response, by the runtime
            else:
                body = _open(&b, 1)                           # DecideBatchItem.response
                _result(&b, r)
                _close(&b, body)
            _close(&b, item)
        _str(&b, 2, version)                                  # DecideBatchResponse.ruleset_version
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


# ---------------------------------------------------------------- decoding
cdef dict CHANNELS = None            # enum number -> channel name (convert.CHANNELS)
cdef dict DEVICES = None             # enum number -> device name (convert.DEVICES)
cdef object DECODE_JSON = None       # engine.service.validate.decode_json
cdef object QUERY = None             # engine.service.model.DecideQuery
cdef object CONTEXT = None           # engine.service.model.RequestContext
cdef object PARSE_REQUEST = None     # DecideRequest.FromString: the runtime's path
cdef object PENDING_JSON = None      # engine.service.model.PendingJson: a batch item's profile_json


def configure_decoding(channels, devices, decode_json, query_cls, context_cls, parse_request=None,
                       pending_json=None):
    global CHANNELS, DEVICES, DECODE_JSON, QUERY, CONTEXT, PARSE_REQUEST, PENDING_JSON
    CHANNELS, DEVICES, DECODE_JSON, QUERY, CONTEXT = channels, devices, decode_json, query_cls, context_cls
    PARSE_REQUEST, PENDING_JSON = parse_request, pending_json


class _Fallback(Exception):
    """What the decoder does not read as the protobuf runtime would."""


cdef struct Reader:
    const unsigned char *p
    const unsigned char *end


cdef uint64_t _read_varint(Reader *r) except? 0xFFFFFFFFFFFFFFFF:
    """A varint of at most ten bytes; truncated or longer: _Fallback."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char c
    while r.p < r.end:
        c = r.p[0]
        r.p += 1
        v |= (<uint64_t> (c & 0x7F)) << shift
        if c < 0x80:
            return v
        shift += 7
        if shift >= 70:
            break
    raise _Fallback()


cdef Reader _sub(Reader *r) except *:
    """A length-delimited field's body, stepped over in ``r``."""
    cdef uint64_t n = _read_varint(r)
    cdef Reader body
    if n > <uint64_t> (r.end - r.p):
        raise _Fallback()
    body.p = r.p
    body.end = r.p + n
    r.p += n
    return body


cdef object _text(Reader *r):
    """A string field; bad UTF-8 is the runtime's to refuse."""
    cdef Reader body = _sub(r)
    try:
        return PyUnicode_DecodeUTF8(<const char *> body.p, body.end - body.p, NULL)
    except UnicodeDecodeError:
        raise _Fallback()


cdef double _fixed64_double(Reader *r) except? -1.0:
    cdef double v
    if r.end - r.p < 8:
        raise _Fallback()
    memcpy(&v, r.p, 8)                       # little-endian, as the encoder assumes
    r.p += 8
    return v


cdef object _enum_name(uint64_t v, dict names):
    """An open proto3 enum (int32): 0 is None; a number the table does not
    know is the runtime path's to report."""
    cdef int32_t n = <int32_t> v
    if n == 0:
        return None
    name = names.get(n)
    if name is None:
        raise _Fallback()
    return name


cdef object _location(Reader *r):
    cdef Reader m = _sub(r)
    cdef double lat = 0.0, lon = 0.0
    cdef uint64_t key
    while m.p < m.end:
        key = _read_varint(&m)
        if key == (1 << 3 | I64):
            lat = _fixed64_double(&m)
        elif key == (2 << 3 | I64):
            lon = _fixed64_double(&m)
        else:
            raise _Fallback()
    return (lat, lon)


cdef object _timestamp(Reader *r):
    cdef Reader m = _sub(r)
    cdef int64_t seconds = 0
    cdef int32_t nanos = 0
    cdef uint64_t key
    while m.p < m.end:
        key = _read_varint(&m)
        if key == (1 << 3 | VARINT):
            seconds = <int64_t> _read_varint(&m)
        elif key == (2 << 3 | VARINT):
            nanos = <int32_t> _read_varint(&m)
        else:
            raise _Fallback()
    if not 0 <= nanos < 1000000000:
        raise _Fallback()                    # the runtime path names context.timestamp.nanos
    return seconds + nanos / 1e9             # as convert.context_from_pb: int + float


cdef object _context(Reader *r):
    cdef Reader m = _sub(r)
    cdef uint64_t key
    cdef bint seen_location = False, seen_timestamp = False
    channel = device = locale = page = sku = category = location = store = timestamp = None
    while m.p < m.end:
        key = _read_varint(&m)
        if key == (1 << 3 | VARINT):
            channel = _enum_name(_read_varint(&m), CHANNELS)
        elif key == (2 << 3 | VARINT):
            device = _enum_name(_read_varint(&m), DEVICES)
        elif key == (3 << 3 | LEN):
            locale = _text(&m) or None
        elif key == (4 << 3 | LEN):
            page = _text(&m) or None
        elif key == (5 << 3 | LEN):
            sku = _text(&m) or None
        elif key == (6 << 3 | LEN):
            category = _text(&m) or None
        elif key == (7 << 3 | LEN) and not seen_location:     # a second one merges: the runtime's
            location = _location(&m)
            seen_location = True
        elif key == (8 << 3 | LEN):
            store = _text(&m) or None
        elif key == (9 << 3 | LEN) and not seen_timestamp:
            timestamp = _timestamp(&m)
            seen_timestamp = True
        else:                                # attributes (a Struct), unknown fields
            raise _Fallback()
    return CONTEXT(channel, device, locale, page, sku, category, location, store, timestamp, None)


cdef object _query(Reader *r, bint pending=False):
    """The DecideQuery of one DecideRequest (raising _Fallback for what the
    runtime's path must read).  ``pending``: its profile_json is left as it
    came, a PendingJson, for the batch to decode at the item's turn
    (engine.service.validate.decoded_snapshot, which says what is wrong
    with it as the runtime's path would)."""
    cdef uint64_t key
    cdef Reader body
    cdef bint explain = False, seen_context = False
    customer_id = None
    context = None
    decisions = []
    raw_json = None
    email_hash = device_id = loyalty_card = None
    while r.p < r.end:
        key = _read_varint(r)
        if key == (1 << 3 | LEN):
            customer_id = _text(r) or None
        elif key == (6 << 3 | LEN):
            email_hash = _text(r) or None
        elif key == (7 << 3 | LEN):
            device_id = _text(r) or None
        elif key == (8 << 3 | LEN):
            loyalty_card = _text(r) or None
        elif key == (3 << 3 | LEN) and not seen_context:
            context = _context(r)
            seen_context = True
        elif key == (4 << 3 | LEN):
            decisions.append(_text(r))
        elif key == (5 << 3 | VARINT):
            explain = _read_varint(r) != 0
        elif key == (10 << 3 | LEN):
            body = _sub(r)
            raw_json = PyBytes_FromStringAndSize(<const char *> body.p, body.end - body.p)
        else:                                # profile (a Struct), unknown fields
            raise _Fallback()
    aliases = ()
    if email_hash is not None or device_id is not None or loyalty_card is not None:
        aliases = tuple([(kind, value) for kind, value in (("loyalty_card", loyalty_card),
                                                           ("email_hash", email_hash),
                                                           ("device_id", device_id)) if value is not None])
    if raw_json and pending:
        return QUERY(customer_id, PENDING_JSON(raw_json), len(raw_json),
                     context if context is not None else CONTEXT(), tuple(decisions), explain, True, aliases)
    if raw_json:
        try:
            profile = DECODE_JSON(raw_json)
        except (ValueError, RecursionError):
            raise _Fallback()                # the runtime path says what is wrong with it
        if type(profile) is not dict:
            raise _Fallback()
        return QUERY(customer_id, profile, len(raw_json), context if context is not None else CONTEXT(),
                     tuple(decisions), explain, True, aliases)   # snapshot_json: errors name profile_json
    return QUERY(customer_id, None, 0, context if context is not None else CONTEXT(), tuple(decisions), explain,
                 False, aliases)


def decide_query(bytes raw):
    """The DecideQuery ``convert.query_from_pb`` makes of this DecideRequest,
    or None: parse it with the runtime (see the module's docstring)."""
    cdef Reader r
    r.p = <const unsigned char *> PyBytes_AS_STRING(raw)
    r.end = r.p + PyBytes_GET_SIZE(raw)
    try:
        return _query(&r)
    except _Fallback:
        return None


def decide_request(bytes raw):
    """``wire.decide_request``: the DecideQuery of :func:`decide_query`, or
    the message the runtime parses (raising as it does)."""
    cdef Reader r
    r.p = <const unsigned char *> PyBytes_AS_STRING(raw)
    r.end = r.p + PyBytes_GET_SIZE(raw)
    try:
        return _query(&r)
    except _Fallback:
        pass
    return PARSE_REQUEST(raw)


ctypedef object (*ItemReader)(Reader *)


cdef object _items(bytes raw, ItemReader read):
    """The items of a message whose one field is ``repeated Item ... = 1``
    (DecideBatchRequest, RecordEventsRequest), each body read by ``read``;
    None if any of them (or the message) is not for this decoder."""
    cdef Reader r, item
    cdef uint64_t key
    r.p = <const unsigned char *> PyBytes_AS_STRING(raw)
    r.end = r.p + PyBytes_GET_SIZE(raw)
    out = []
    try:
        while r.p < r.end:
            key = _read_varint(&r)
            if key != (1 << 3 | LEN):
                return None
            item = _sub(&r)
            out.append(read(&item))
    except _Fallback:
        return None
    return out


cdef object _batch_item(Reader *r):
    return _query(r, PENDING_JSON is not None)


def batch_queries(bytes raw):
    """A DecideBatchRequest's items as DecideQuery objects, or None if any
    of them (or the batch) is not for this decoder.  Each item's
    profile_json is left undecoded (a PendingJson; see ``_query``)."""
    return _items(raw, _batch_item)


# ---------------------------------------------------------------- RecordEvents
cdef dict EVENT_TYPES = None         # enum number -> type name (engine.server.events.TYPES)
cdef dict EVENT_CHANNELS = None      # enum number -> channel name (engine.server.events.CHANNELS)


cdef object EVENT_STATUS = None      # EventStatus -> wire number (engine.server.events.STATUS)


def configure_events(types, channels, status):
    global EVENT_TYPES, EVENT_CHANNELS, EVENT_STATUS
    EVENT_TYPES, EVENT_CHANNELS, EVENT_STATUS = types, channels, status


def encode_events(tuple outcomes):
    """The bytes of ``events.result_to_pb`` for these outcomes, or None when
    one of them has problems (its violations are the Python path's to
    write): per outcome an EventResult (status, event_id, customer_id), then
    the counts, in field order as the runtime writes them."""
    cdef Buf b
    cdef Py_ssize_t start
    cdef long number
    cdef long counts[4]
    counts[0] = counts[1] = counts[2] = counts[3] = 0
    for o in outcomes:
        if o.problems:
            return None
    _start(&b, 80 * len(outcomes) + 32)
    try:
        for o in outcomes:
            number = EVENT_STATUS[o.status]
            start = _open(&b, 1)
            _enum(&b, 1, number)
            event_id, customer_id = o.event_id, o.customer_id
            if event_id is not None:
                _str(&b, 2, event_id)
            if customer_id is not None:
                _str(&b, 3, customer_id)
            _close(&b, start)
            if 1 <= number <= 3:
                counts[number] += 1
        for number in range(1, 4):            # stored = 2, duplicates = 3, rejected = 4
            _int32(&b, number + 1, counts[number])
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


cdef dict _event_item(Reader *r):
    cdef Reader m = _sub(r)
    cdef uint64_t key
    sku = category = size = price = qty = None
    while m.p < m.end:
        key = _read_varint(&m)
        if key == (1 << 3 | LEN):
            sku = _text(&m)
        elif key == (2 << 3 | LEN):
            category = _text(&m)
        elif key == (3 << 3 | LEN):
            size = _text(&m)
        elif key == (4 << 3 | I64):
            price = _fixed64_double(&m)
        elif key == (5 << 3 | VARINT):
            qty = <int32_t> _read_varint(&m)
        else:
            raise _Fallback()
    cdef dict out = {}
    if sku:
        out["sku"] = sku
    if category:
        out["category"] = category
    if size:
        out["size"] = size
    if price is not None:
        out["price"] = price
    if qty is not None:
        out["qty"] = qty
    return out


cdef int _consent(Reader *r, list flags) except -1:
    """Consent's optional flags into ``flags`` [email, push, sms] (None: not set)."""
    cdef Reader m = _sub(r)
    cdef uint64_t key
    while m.p < m.end:
        key = _read_varint(&m)
        if key == (1 << 3 | VARINT):
            flags[0] = _read_varint(&m) != 0
        elif key == (2 << 3 | VARINT):
            flags[1] = _read_varint(&m) != 0
        elif key == (3 << 3 | VARINT):
            flags[2] = _read_varint(&m) != 0
        else:
            raise _Fallback()
    return 0


#: Event's string fields read here -> their slot in _event's ``text`` (the order
#: events_from_pb sets them: _IDS first, then _TEXT)
cdef tuple _TEXT_NAMES = ("event_id", "customer_id", "email_hash", "device_id", "loyalty_card",
                          "sku", "category", "size", "query", "page", "url", "store_id", "order_id",
                          "campaign_id", "offer_id", "placement")
cdef int[32] _TEXT_SLOT          # field number -> slot in text, or -1
_TEXT_NUMBERS = (1, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 21, 22, 23)
for _i in range(32):
    _TEXT_SLOT[_i] = -1
for _i, _n in enumerate(_TEXT_NUMBERS):
    _TEXT_SLOT[_n] = _i


cdef object _event(Reader *body):
    """One Event (its body) as ``engine.server.events.event_from_pb`` makes
    it of the parsed message: the fields that are set, in its order."""
    cdef Reader m = body[0]
    cdef uint64_t key, number
    cdef int slot, i
    cdef bint seen_timestamp = False, seen_consent = False, seen_home = False
    cdef list text = [None] * 16
    cdef list consent = [None, None, None]
    cdef list items = None
    typ = channel = timestamp = home = price = total = points = None
    while m.p < m.end:
        key = _read_varint(&m)
        number = key >> 3
        if (key & 7) == LEN and number < 32 and _TEXT_SLOT[number] >= 0:
            text[_TEXT_SLOT[number]] = _text(&m)
        elif key == (2 << 3 | VARINT):                          # open enums (int32): an unknown
            typ = <int32_t> _read_varint(&m)                    # number stays a number, which the
        elif key == (3 << 3 | VARINT):                          # validator refuses, naming the field
            channel = <int32_t> _read_varint(&m)
        elif key == (4 << 3 | LEN) and not seen_timestamp:     # a second one merges: the runtime's
            timestamp = _timestamp(&m)
            seen_timestamp = True
        elif key == (10 << 3 | LEN):
            if items is None:
                items = []
            items.append(_event_item(&m))
        elif key == (13 << 3 | I64):
            price = _fixed64_double(&m)
        elif key == (20 << 3 | I64):
            total = _fixed64_double(&m)
        elif key == (26 << 3 | I64):
            points = _fixed64_double(&m)
        elif key == (24 << 3 | LEN) and not seen_consent:
            _consent(&m, consent)
            seen_consent = True
        elif key == (25 << 3 | LEN) and not seen_home:
            home = _location(&m)
            seen_home = True
        else:                                # meta (a Struct), unknown fields, wire types
            raise _Fallback()
    cdef dict raw = {}
    for i in range(5):
        if text[i]:
            raw[_TEXT_NAMES[i]] = text[i]
    if typ:
        raw["type"] = EVENT_TYPES.get(typ, typ)
    if channel:
        raw["channel"] = EVENT_CHANNELS.get(channel, channel)
    if timestamp is not None:
        raw["timestamp"] = timestamp
    if items:
        raw["items"] = items
    for i in range(5, 16):
        if text[i]:
            raw[_TEXT_NAMES[i]] = text[i]
    if price is not None:
        raw["price"] = price
    if total is not None:
        raw["total"] = total
    if points is not None:
        raw["loyalty_points"] = points
    if consent[0] is not None:
        raw["email"] = consent[0]
    if consent[1] is not None:
        raw["push"] = consent[1]
    if consent[2] is not None:
        raw["sms"] = consent[2]
    if home is not None:
        raw["home"] = {"lat": home[0], "lon": home[1]}
    return raw


def record_events(bytes raw):
    """A RecordEventsRequest's events as ``events_from_pb`` makes them of the
    parsed message, or None: parse it with the runtime (see the module's
    docstring; also an event with ``meta``, or a timestamp whose nanos the
    runtime path rejects)."""
    if EVENT_TYPES is None:                  # not configured (engine.server.events does it)
        return None
    return _items(raw, _event)


def generic_fields():
    """The fields this module reads through the generic attribute lookup
    because their type keeps them in no object slot (tests: none)."""
    return list(_GENERIC)
