# cython: language_level=3, boundscheck=False, wraparound=False, optimize.unpack_method_calls=False
"""One Decide's path through the decision service, compiled.

:func:`decide` is ``Decider.decide`` (the current ruleset and its plan),
:func:`decide_batch` is ``Decider.decide_batch``, :func:`answer` is the
servicer's Decide once the request is read (deadline, decide, metrics,
encoder).  :func:`decide_one` answers one query: validate, the profile,
the rules, the typed results (``_assemble.map_raw``), the nearby stores
and the ``DecideResult``; or, given the server's ``wire.encode_raw``, the
answer's bytes written from the rules' raw answers (an EncodedAnswer, held
to the encoded DecideResult by tests/server/test_wire_raw.py).
:func:`nearby` is the stores' part of it and :func:`nearby_answer` the
policy applied to what a stores source found; over the in-memory stock
(``_stock``) the two are one step from the store table's arrays, and
:func:`inventory_nearby` is ``InventoryStores.nearby``.
In the interpreter this glue cost ~19,000 instructions a Decide besides
the parts it calls (frames, locals, two dozen small calls); in the server,
where a Decide runs with cold caches, each Python function on the path
also costs the cache lines of its code and data (``python -m
bench.decide_cost --cold``).  The request's and the answer's msgspec
fields are read from their slots (``_fields.pxd``), and so are the
attributes a Decide reads of the service's own objects (the Decider, its
ruleset holder and plan, the profile cache, the inventory's snapshot),
which their classes keep in ``__slots__``.

``decide``, ``decide_batch``, ``answer``, ``decide_one`` and ``nearby``
have no Python twin: the Decider, the servicers and every test of them run
this code (tests/server).  The others are held to Python references by
hypothesis tests: ``common_case`` and ``to_request`` to
``validate.common_case`` and ``RequestContext.to_request``
(tests/server/test_validate.py), ``nearby_answer`` to
``results.nearby_answer`` (tests/server/test_nearby_answer.py),
``inventory_nearby`` to ``service.inventory.reference_nearby`` and
``inventory_answer`` (the stores a Decide shows) to ``results.nearby_answer``
of it (tests/server/test_inventory_domain.py), ``stored_hit``, ``refresh`` and
``lifecycle`` (a Decide by customer id answered from a fresh entry of the
profile cache) to ``StoredProfiles.lookup``, ``fold.refresh`` and
``fold.lifecycle`` (tests/profiles/test_profile_stored_hit.py).
"""
import functools
import logging
import time

import msgspec

from ._fields cimport Slot, field, field_slot

from ..eval._geo cimport point_of
from ..eval._kernel cimport Kernel
from ..profiles.store import decode as _decode_profile
from libc.stdlib cimport free, malloc

cdef extern from "Python.h":
    dict _PyDict_NewPresized(Py_ssize_t minused)
from ..inventory._nearby cimport ItemIndex, StoreTable
from ..inventory.availability import Inventory, Snapshot, _item_index, nearby_in
from ..inventory.geo import GeoIndex
from ..inventory.model import CatalogItem, InventoryData
from ..inventory.model import StoreAvailability as FoundStore
from ..inventory.location import HOME, PREFERRED_STORE, REQUEST, REQUEST_STORE
from . import results
from ._assemble import map_raw
from .assemble import Plan
from .rules import RulesetHolder
from ..profiles.cache import CachedStore, _Entries
from .errors import DeadlineExceeded, InvalidArgument, ServiceError
from .model import (DecideQuery, DecideResult, EncodedAnswer, ItemError, NearbyStores, NearbyStoresPolicy, PendingJson,
                    ProfileStatus, RequestContext, StoreAvailability)
from .sources import NearbyFound, NearbyQuery, NullProfiles, SourceUnavailable
from .validate import (MAX_ID, MAX_TEXT, MAX_TIME, MIN_TIME, SHAPE_CHECK_BYTES, decode_json, decoded_snapshot,
                       validate_batch_size, validate_query)

log = logging.getLogger("maple.service")

cdef object _monotonic = time.monotonic
cdef double INF = float("inf")
cdef str HOMEPAGE = results.HOMEPAGE
cdef str SIZE = results.SIZE
cdef str NEARBY = results.NEARBY
cdef str OFFER = results.OFFER
cdef object _NO_STOCK = NearbyFound((), None, "no_stock")       # no query made (read-only, shared)
cdef object _UNAVAILABLE = NearbyFound((), None, "unavailable")  # the stores source failed (degraded says why)
cdef object _ANONYMOUS = ProfileStatus.ANONYMOUS
cdef object _SNAPSHOT = ProfileStatus.SNAPSHOT
cdef object _UNKNOWN_CUSTOMER = ProfileStatus.UNKNOWN_CUSTOMER
cdef object _STORED = ProfileStatus.STORED
cdef object _UNAVAILABLE_STATUS = ProfileStatus.UNAVAILABLE
cdef Py_ssize_t _MAX_ID = MAX_ID
cdef Py_ssize_t _MAX_TEXT = MAX_TEXT
cdef Py_ssize_t _SHAPE_CHECK_BYTES = SHAPE_CHECK_BYTES
cdef double _MIN_TIME = MIN_TIME
cdef double _MAX_TIME = MAX_TIME
cdef str _REQUEST = REQUEST
cdef str _REQUEST_STORE = REQUEST_STORE
cdef str _PREFERRED_STORE = PREFERRED_STORE
cdef str _HOME = HOME
cdef object _INVENTORY_STORES = None     # service.inventory.InventoryStores (it imports this module)
cdef object _STORED_PROFILES = None      # service.stored.StoredProfiles (imported when first needed)
cdef object _PENDING_JSON = PendingJson  # a DecideBatch item's profile_json, decoded at its turn
cdef object _DECODE_JSON = decode_json   # validate.decode_json (msgspec's JSON decoder)
cdef object _replace = msgspec.structs.replace

# the request's fields, read from their slots (engine/service/_fields.pxd)
cdef list _GENERIC = []                 # fields without a slot (generic_fields)
cdef Slot Q_CUSTOMER_ID = field_slot(DecideQuery, "customer_id", _GENERIC)
cdef Slot Q_PROFILE = field_slot(DecideQuery, "profile", _GENERIC)
cdef Slot Q_SNAPSHOT_BYTES = field_slot(DecideQuery, "snapshot_bytes", _GENERIC)
cdef Slot Q_CONTEXT = field_slot(DecideQuery, "context", _GENERIC)
cdef Slot Q_DECISIONS = field_slot(DecideQuery, "decisions", _GENERIC)
cdef Slot Q_EXPLAIN = field_slot(DecideQuery, "explain", _GENERIC)
cdef Slot Q_ALIASES = field_slot(DecideQuery, "aliases", _GENERIC)
cdef Slot PENDING_RAW = field_slot(PendingJson, "raw", _GENERIC)
cdef Slot E_BODY = field_slot(EncodedAnswer, "body", _GENERIC)
cdef Slot E_DECIDED_BY = field_slot(EncodedAnswer, "decided_by", _GENERIC)
cdef Slot E_DEGRADED = field_slot(EncodedAnswer, "degraded", _GENERIC)
cdef Slot C_CHANNEL = field_slot(RequestContext, "channel", _GENERIC)
cdef Slot C_DEVICE = field_slot(RequestContext, "device", _GENERIC)
cdef Slot C_LOCALE = field_slot(RequestContext, "locale", _GENERIC)
cdef Slot C_PAGE = field_slot(RequestContext, "page", _GENERIC)
cdef Slot C_SKU = field_slot(RequestContext, "sku", _GENERIC)
cdef Slot C_CATEGORY = field_slot(RequestContext, "category", _GENERIC)
cdef Slot C_LOCATION = field_slot(RequestContext, "location", _GENERIC)
cdef Slot C_STORE = field_slot(RequestContext, "store", _GENERIC)
cdef Slot C_TIMESTAMP = field_slot(RequestContext, "timestamp", _GENERIC)
cdef Slot C_ATTRIBUTES = field_slot(RequestContext, "attributes", _GENERIC)
# the stores query's and the nearby answer's
cdef Slot P_RADIUS_KM = field_slot(NearbyStoresPolicy, "radius_km", _GENERIC)
cdef Slot P_MAX_STORES = field_slot(NearbyStoresPolicy, "max_stores", _GENERIC)
cdef Slot P_MIN_QUANTITY = field_slot(NearbyStoresPolicy, "min_quantity", _GENERIC)
cdef Slot P_LOW_STOCK_BELOW = field_slot(NearbyStoresPolicy, "low_stock_below", _GENERIC)
cdef Slot P_PREFERRED_FIRST = field_slot(NearbyStoresPolicy, "preferred_first", _GENERIC)
cdef Slot P_OPEN_NOW = field_slot(NearbyStoresPolicy, "open_now", _GENERIC)
cdef Slot FOUND_STORES = field_slot(NearbyFound, "stores", _GENERIC)
cdef Slot FOUND_LOCATED_BY = field_slot(NearbyFound, "located_by", _GENERIC)
cdef Slot FOUND_EMPTY_REASON = field_slot(NearbyFound, "empty_reason", _GENERIC)
cdef Slot ROW_STORE_ID = field_slot(FoundStore, "store_id", _GENERIC)
cdef Slot ROW_NAME = field_slot(FoundStore, "name", _GENERIC)
cdef Slot ROW_DISTANCE_KM = field_slot(FoundStore, "distance_km", _GENERIC)
cdef Slot ROW_QUANTITY = field_slot(FoundStore, "quantity", _GENERIC)
cdef Slot ROW_OPEN_NOW = field_slot(FoundStore, "open_now", _GENERIC)
cdef Slot AVAIL_PREFERRED = field_slot(StoreAvailability, "preferred", _GENERIC)
cdef Slot AVAIL_DISTANCE_KM = field_slot(StoreAvailability, "distance_km", _GENERIC)
# the service's own objects a Decide reads (each class keeps these in __slots__): a
# generic lookup costs a Decide in the server ~6 cache lines cold (the type's method
# cache, its dict, the instance's dict), a slot one (bench.decide_cost --cold)
cdef Slot PLAN_RULESET = field_slot(Plan, "ruleset", _GENERIC)
cdef Slot PLAN_KERNEL = field_slot(Plan, "kernel", _GENERIC)
cdef Slot PLAN_VERSION = field_slot(Plan, "version", _GENERIC)
cdef Slot PLAN_DECISIONS = field_slot(Plan, "decisions", _GENERIC)
cdef Slot PLAN_SIZE_POSITION = field_slot(Plan, "size_position", _GENERIC)
cdef Slot PLAN_SIZE_DEFAULT = field_slot(Plan, "size_default", _GENERIC)
cdef Slot HOLDER_CURRENT = field_slot(RulesetHolder, "current", _GENERIC)
cdef Slot CACHE_TTL = field_slot(CachedStore, "ttl", _GENERIC)
cdef Slot CACHE_FEED_MAX_AGE = field_slot(CachedStore, "feed_max_age", _GENERIC)
cdef Slot CACHE_CLOCK = field_slot(CachedStore, "clock", _GENERIC)
cdef Slot CACHE_ENTRIES = field_slot(CachedStore, "_entries", _GENERIC)
cdef Slot CACHE_DOWN_UNTIL = field_slot(CachedStore, "_down_until", _GENERIC)
cdef Slot CACHE_FEED_SINCE = field_slot(CachedStore, "_feed_since", _GENERIC)
cdef Slot CACHE_FEED_UNTIL = field_slot(CachedStore, "_feed_until", _GENERIC)
cdef Slot CACHE_READS = field_slot(CachedStore, "reads", _GENERIC)
cdef Slot ENTRIES_TABLE = field_slot(_Entries, "table", _GENERIC)
cdef Slot INV_SNAPSHOT = field_slot(Inventory, "_snapshot", _GENERIC)
cdef Slot SNAP_GEO = field_slot(Snapshot, "geo", _GENERIC)
cdef Slot SNAP_DATA = field_slot(Snapshot, "data", _GENERIC)
cdef Slot GEO_TABLE = field_slot(GeoIndex, "table", _GENERIC)
cdef Slot GEO_ITEM_INDEXES = field_slot(GeoIndex, "item_indexes", _GENERIC)
cdef Slot DATA_STOCK = field_slot(InventoryData, "stock", _GENERIC)
cdef Slot DATA_CATALOG = field_slot(InventoryData, "catalog", _GENERIC)
cdef Slot ITEM_SIZES = field_slot(CatalogItem, "sizes", _GENERIC)
# ... and those of classes that import this module: found at the first Decide (_late_slots);
# until then zeroed (C statics), so field() takes the generic lookup
cdef bint _LATE = False
cdef Slot DECIDER_HOLDER, DECIDER_PROFILES, DECIDER_STORES, DECIDER_CLOCK, DECIDER_DECISION_LOG, DECIDER_PLAN
cdef Slot STORED_CACHE, STORED_FOLD_CONFIG, STORES_HOLDER, INV_HOLDER_INVENTORY


cdef void _late_slots() except *:
    """The slots of the Decider, StoredProfiles, InventoryStores and
    InventoryHolder (their modules import this one); until they are
    found, ``field`` reads those attributes by the generic lookup."""
    global _LATE, DECIDER_HOLDER, DECIDER_PROFILES, DECIDER_STORES, DECIDER_CLOCK, DECIDER_DECISION_LOG
    global DECIDER_PLAN, STORED_CACHE, STORED_FOLD_CONFIG, STORES_HOLDER, INV_HOLDER_INVENTORY
    if _LATE:
        return
    from .decide import Decider
    from .inventory import InventoryHolder, InventoryStores
    from .stored import StoredProfiles
    DECIDER_HOLDER = field_slot(Decider, "holder", _GENERIC)
    DECIDER_PROFILES = field_slot(Decider, "profiles", _GENERIC)
    DECIDER_STORES = field_slot(Decider, "stores", _GENERIC)
    DECIDER_CLOCK = field_slot(Decider, "clock", _GENERIC)
    DECIDER_DECISION_LOG = field_slot(Decider, "decision_log", _GENERIC)
    DECIDER_PLAN = field_slot(Decider, "_plan", _GENERIC)
    STORED_CACHE = field_slot(StoredProfiles, "cache", _GENERIC)
    STORED_FOLD_CONFIG = field_slot(StoredProfiles, "fold_config", _GENERIC)
    STORES_HOLDER = field_slot(InventoryStores, "holder", _GENERIC)
    INV_HOLDER_INVENTORY = field_slot(InventoryHolder, "inventory", _GENERIC)
    _LATE = True


cdef inline void _check_deadline(deadline) except *:
    if deadline is not None and _monotonic() >= deadline:
        raise DeadlineExceeded("the deadline passed before the decision was made")


cdef inline object _remaining(deadline):
    if deadline is None:
        return None
    return max(0.0, deadline - _monotonic())


def answer(decider, q, remaining, on_result, encode, encode_raw=None):
    """``DecisionServicer.decide_bytes`` once the request is read: the
    deadline from the call's remaining time (``servicers.deadline_of``),
    :func:`decide` (``Decider.decide``), ``on_result`` (the metrics) and
    ``encode`` (the wire encoder) -- one C call where the server ran six
    Python functions.

    With ``encode_raw`` (``engine.server.wire.encode_raw``), an answer
    without an explanation is written from the kernel's raw answers with
    no DecideResult between, and the metrics are told through
    ``on_result.decided(decided_by, degraded)``; an ``on_result`` without
    that attribute is given the DecideResult, as before."""
    deadline = None
    if remaining is not None and remaining <= 1e9:     # grpc reports "no deadline" as a huge number
        deadline = _monotonic() + remaining
    if encode_raw is not None and not field(q, Q_EXPLAIN, "explain"):
        counted = None if on_result is None else getattr(on_result, "decided", None)
        if on_result is None or counted is not None:
            _check_deadline(deadline)
            rs, plan = _current(decider)
            written = decide_one(decider, rs, plan, q, deadline, encode_raw)
            if counted is not None:
                counted(field(written, E_DECIDED_BY, "decided_by"), field(written, E_DEGRADED, "degraded"))
            return field(written, E_BODY, "body")
    result = decide(decider, q, deadline)
    if on_result is not None:
        on_result(result)
    return encode(result)


def decide(decider, q, deadline=None):
    """``Decider.decide``: the current ruleset's answer to ``q``."""
    _check_deadline(deadline)
    rs, plan = _current(decider)
    return decide_one(decider, rs, plan, q, deadline)


cdef void _prefetch(profiles, queries) except *:
    """A profile store's profiles of the batch's items asked for by
    customer id (and no other identifier), read into its cache in one call
    (``StoredProfiles.prefetch``): each item's Decide is then a cache hit,
    not a round trip of its own.  What the prefetch cannot read, each item
    reads as it would have; a failure of the prefetch itself is logged and
    the batch goes on."""
    if type(profiles) is not _stored_profiles():
        return
    cdef list ids = []
    for q in queries:
        if isinstance(q, ServiceError):
            continue
        cid = field(q, Q_CUSTOMER_ID, "customer_id")
        if type(cid) is str and cid and len(<str>cid) <= _MAX_ID and not field(q, Q_ALIASES, "aliases"):
            ids.append(cid)
    if len(ids) < 2:
        return
    try:
        profiles.prefetch(ids)
    except Exception:
        log.exception("DecideBatch: reading the items' profiles ahead failed; each item reads its own")


cdef tuple _current(decider):
    """The Decider's current ruleset and its plan (FailedPrecondition, in
    ``Decider.ruleset``'s words, when none is loaded)."""
    if not _LATE:
        _late_slots()
    rs = field(field(decider, DECIDER_HOLDER, "holder"), HOLDER_CURRENT, "current")
    if rs is None:
        rs = decider.ruleset()                # raises
    plan = field(decider, DECIDER_PLAN, "_plan")
    if plan is None or field(plan, PLAN_RULESET, "ruleset") is not rs:    # a swap this request raced with
        plan = Plan(rs)
    return rs, plan


def decide_batch(decider, queries, deadline=None, encode_raw=None):
    """``Decider.decide_batch``: every item decided by the same ruleset
    version; an item's error is its own (an item may already be the error
    its translation raised); a passed deadline stops the batch.  With
    ``encode_raw``, an item without ``explain`` is an EncodedAnswer
    (:func:`decide_one`)."""
    validate_batch_size(len(queries))
    _check_deadline(deadline)
    rs, plan = _current(decider)
    _prefetch(field(decider, DECIDER_PROFILES, "profiles"), queries)
    _check_deadline(deadline)
    cdef list out = []
    cdef Py_ssize_t i = 0
    for q in queries:
        _check_deadline(deadline)
        try:
            if isinstance(q, ServiceError):
                raise q
            pending = field(q, Q_PROFILE, "profile")
            if type(pending) is _PENDING_JSON:    # decoded now, freed after the item (see PendingJson)
                q = _decoded(q, pending)
            out.append(decide_one(decider, rs, plan, q, deadline,
                                  None if encode_raw is None or field(q, Q_EXPLAIN, "explain") else encode_raw))
        except InvalidArgument as err:
            out.append(ItemError(err.prefixed(f"requests[{i}]")))
        except DeadlineExceeded:
            raise
        except ServiceError as err:
            out.append(ItemError(err))
        i += 1
    return field(plan, PLAN_VERSION, "version"), out


cdef object _decoded(q, pending):
    """``validate.decoded_snapshot(q)`` for a ``q`` whose snapshot is
    ``pending`` (a PendingJson): its common case, a JSON object, without
    the two Python frames; anything else through ``decoded_snapshot``
    itself, which decodes it again and raises what it must."""
    try:
        value = _DECODE_JSON(field(pending, PENDING_RAW, "raw"))
    except (ValueError, RecursionError):
        value = None
    if type(value) is not dict:
        return decoded_snapshot(q)
    return _replace(q, profile=value)


def decide_one(decider, rs, plan, q, deadline, encode_raw=None):
    """``Decider._decide``: the answer to one query by ruleset ``rs`` and
    its plan.  Raises ServiceError subclasses for what the client must be told.
    With ``encode_raw`` (a query without ``explain``): an EncodedAnswer
    (the answer's wire bytes, its decided_by, whether degraded) instead of
    the DecideResult, written from the kernel's raw answers
    (``wire.encode_raw``).

    Every step of the common request runs here in C, not through the
    Python methods it stands for (``validate.common_case``,
    ``Decider._profile``'s first cases, ``RequestContext.to_request``,
    ``Ruleset.run``, ``Plan.size``, ``InventoryStores.nearby``): in the
    server a Decide runs with cold caches, and each Python function on the
    path costs the cache lines of its code object, bytecode, globals and
    frame (``python -m bench.decide_cost --cold``)."""
    ctx = field(q, Q_CONTEXT, "context")
    if not _common_case(q, ctx):
        validate_query(q, rs.decision_names)
    now = field(ctx, C_TIMESTAMP, "timestamp")
    if now is None:
        now = field(decider, DECIDER_CLOCK, "clock")()
    # Decider._profile's first cases: no identifier, or a customer_id and no
    # profile store (every id unknown): the snapshot, or nothing
    given = field(q, Q_CUSTOMER_ID, "customer_id")
    aliases = field(q, Q_ALIASES, "aliases")
    profiles = field(decider, DECIDER_PROFILES, "profiles")
    if not aliases and (not given or type(profiles) is NullProfiles):
        snapshot = field(q, Q_PROFILE, "profile")
        degraded = []
        if snapshot is not None:
            profile, status = snapshot, _SNAPSHOT
        elif not given:
            profile, status = {}, _ANONYMOUS
        else:
            profile, status = {"customer_id": given}, _UNKNOWN_CUSTOMER
    else:
        # and its common case with a store: a customer_id whose profile the
        # cache holds, fresh (Decider._profile -> StoredProfiles.lookup)
        profile = None
        if not aliases and type(given) is str and type(profiles) is _stored_profiles():
            try:
                profile = stored_hit(profiles, given, now)
            except Exception:       # (a profile refresh cannot read): Decider._profile says what
                profile = None
        if profile is not None:
            snapshot = field(q, Q_PROFILE, "profile")
            if snapshot:
                profile = {**profile, **snapshot}
            status, degraded = _STORED, []
        elif not aliases and type(given) is str and type(profiles) is _stored_profiles():
            profile, status, degraded = _stored_read(profiles, given, field(q, Q_PROFILE, "profile"), now)
        else:
            profile, status, degraded = decider._profile(q, deadline, now)
    _check_deadline(deadline)
    names = field(q, Q_DECISIONS, "decisions")
    request = _request(ctx)
    # experiments assign by the profile's own id: a merged customer asked for
    # by any of its ids (the survivor's or an alias) keeps one variant
    cid = _get(profile, "customer_id")
    if type(cid) is not str or not cid:
        cid = given or None
    if names:
        wanted = decider._wanted(rs, names)
        raw = rs.run(profile, request, now, cid, wanted)
    else:                         # Ruleset.run without the names to look up
        wanted = None
        kernel = field(plan, PLAN_KERNEL, "kernel")
        given_profile = profile if type(profile) is dict else {}
        if type(kernel) is Kernel:      # (a C call, without the method's lookup)
            raw = (<Kernel> kernel).run(given_profile, request, now, cid, None)
        else:
            raw = kernel.run(given_profile, request, now, cid, None)
    version = field(plan, PLAN_VERSION, "version")      # (the plan's ruleset is rs: _current)
    dlog = field(decider, DECIDER_DECISION_LOG, "decision_log")
    if dlog is not None:          # the outcomes are made on the log's thread, if sampled
        dlog.offer(version, given, profile, request, functools.partial(rs.decision_set, raw, now), status)
    asked = set(names) if names else None
    if encode_raw is not None:
        near = _Near(decider, q, plan, raw, profile, degraded, deadline, now)
        out, decided_by = encode_raw(plan, raw, asked, near, version, now, status, cid or "", degraded)
        return EncodedAnswer(out, tuple(decided_by), bool(degraded))
    fields, generic, decided_by, found = map_raw(plan, field(plan, PLAN_DECISIONS, "decisions"), raw, asked)
    if found is not None:
        fields[NEARBY] = nearby(decider, q, _size(plan, raw), found[0], found[1], profile, degraded, deadline, now)
    explanation = None
    if field(q, Q_EXPLAIN, "explain"):
        explained = rs.explain(profile, request, now, cid, wanted)
        explanation = {name: e for name, e in explained.items()
                       if e is not None and (asked is None or name in asked)}
    get = fields.get
    return DecideResult(version, now, status, get(HOMEPAGE), get(SIZE), get(NEARBY), get(OFFER), generic,
                        bool(degraded), "; ".join(degraded) if degraded else "", explanation, tuple(decided_by),
                        cid or "")


cdef class _Near:
    """``near(policy, common)`` for ``wire.encode_raw``: :func:`nearby` for
    this Decide, as ``decide_one`` calls it after ``map_raw``."""
    cdef object decider, q, plan, raw, profile, degraded, deadline, now

    def __cinit__(self, decider, q, plan, raw, profile, degraded, deadline, now):
        self.decider, self.q, self.plan, self.raw = decider, q, plan, raw
        self.profile, self.degraded, self.deadline, self.now = profile, degraded, deadline, now

    def __call__(self, policy, common):
        return nearby(self.decider, self.q, _size(self.plan, self.raw), policy, common, self.profile,
                      self.degraded, self.deadline, self.now)


def common_case(q):
    """``validate.common_case``, compiled (the test holds the two equal)."""
    return _common_case(q, field(q, Q_CONTEXT, "context"))


cdef inline bint _short(s, Py_ssize_t limit) except -1:
    return s is None or len(s) <= limit


cdef bint _common_case(q, ctx) except -1:
    """``validate.common_case``: the same expression, in the same order."""
    if not _short(field(q, Q_CUSTOMER_ID, "customer_id"), _MAX_ID):
        return False
    if not (_short(field(ctx, C_SKU, "sku"), _MAX_TEXT) and _short(field(ctx, C_PAGE, "page"), _MAX_TEXT)
            and _short(field(ctx, C_CATEGORY, "category"), _MAX_TEXT)
            and _short(field(ctx, C_LOCALE, "locale"), _MAX_TEXT) and _short(field(ctx, C_STORE, "store"), _MAX_TEXT)):
        return False
    loc = field(ctx, C_LOCATION, "location")
    if loc is not None and not (-90.0 <= loc[0] <= 90.0 and -180.0 <= loc[1] <= 180.0):
        return False
    ts = field(ctx, C_TIMESTAMP, "timestamp")
    if ts is not None and not (_MIN_TIME <= ts <= _MAX_TIME):
        return False
    if field(q, Q_DECISIONS, "decisions"):
        return False
    if (field(q, Q_PROFILE, "profile") is not None
            and not (0 < field(q, Q_SNAPSHOT_BYTES, "snapshot_bytes") < _SHAPE_CHECK_BYTES)):
        return False
    if field(ctx, C_ATTRIBUTES, "attributes") is not None:
        return False
    aliases = field(q, Q_ALIASES, "aliases")
    if aliases:
        for _, v in aliases:
            if len(v) > _MAX_ID:
                return False
    return True


def to_request(ctx):
    """``RequestContext.to_request``, compiled (the test holds the two equal)."""
    return _request(ctx)


cdef dict _request(ctx):
    """``RequestContext.to_request``: the ``request`` the rules read, typed
    fields over ``attributes``."""
    attributes = field(ctx, C_ATTRIBUTES, "attributes")
    cdef dict req = dict(attributes) if attributes else _PyDict_NewPresized(8)   # room for the fields: no resize
    v = field(ctx, C_CHANNEL, "channel")
    if v is not None:
        req["channel"] = v
    v = field(ctx, C_DEVICE, "device")
    if v is not None:
        req["device"] = v
    v = field(ctx, C_LOCALE, "locale")
    if v is not None:
        req["locale"] = v
    v = field(ctx, C_PAGE, "page")
    if v is not None:
        req["page"] = v
    v = field(ctx, C_SKU, "sku")
    if v is not None:
        req["sku"] = v
    v = field(ctx, C_CATEGORY, "category")
    if v is not None:
        req["category"] = v
    v = field(ctx, C_STORE, "store")
    if v is not None:
        req["store"] = v
    v = field(ctx, C_LOCATION, "location")
    if v is not None:
        req["location"] = {"lat": v[0], "lon": v[1]}
    return req


cdef object _size(plan, raw):
    """``Plan.size``: the prefilled size the nearby-stores query needs."""
    cdef Py_ssize_t at = field(plan, PLAN_SIZE_POSITION, "size_position")
    if at < 0:
        return None
    answer = raw[at]
    if answer is None:
        return None
    ranks, outputs = answer[0], answer[1]
    value = outputs[0][0] if ranks else field(plan, PLAN_SIZE_DEFAULT, "size_default")
    return value if isinstance(value, str) else None


cdef object _stored_profiles():
    global _STORED_PROFILES
    if _STORED_PROFILES is None:
        from .stored import StoredProfiles
        _STORED_PROFILES = StoredProfiles
    return _STORED_PROFILES


cpdef object stored_hit(profiles, str customer_id, now):
    """``StoredProfiles.lookup(customer_id, timeout, now)``'s common case,
    compiled: the profile (lifecycle as of ``now``) when the cache holds a
    valid profile for the id (younger than the ttl, or vouched for by the
    change feed; decoded here if held encoded) and the store is not marked
    down (the case in which ``lookup`` answers from ``CachedStore.fresh``,
    not degraded);
    else None, and the caller asks ``lookup``.  Counted as a hit in
    ``cache.reads``, as ``fresh`` counts one.  Five Python frames
    (``Decider._profile``, ``lookup_profile``, ``lookup``, ``fresh``,
    ``refresh``) and a ``ProfileLookup`` less.  A hypothesis test holds it
    to ``lookup`` (tests/profiles/test_profile_stored_hit.py)."""
    cache = field(profiles, STORED_CACHE, "cache")
    until = field(cache, CACHE_FEED_UNTIL, "_feed_until")     # before the entry, until first (see CachedStore.fresh)
    since = field(cache, CACHE_FEED_SINCE, "_feed_since")
    table = field(field(cache, CACHE_ENTRIES, "_entries"), ENTRIES_TABLE, "table")  # cachetools' own dict
    if table is None:
        return None
    cached = (<dict>table).get(customer_id)
    if cached is None or field(cache, CACHE_DOWN_UNTIL, "_down_until") is not None:
        return None
    at = cached[1]
    t = field(cache, CACHE_CLOCK, "clock")()
    if not (t - at < field(cache, CACHE_TTL, "ttl")
            or (t < until and at > since and t - at < field(cache, CACHE_FEED_MAX_AGE, "feed_max_age"))):
        return None                         # (CachedStore.fresh's rule: its ttl, or the change feed's)
    held = cached[0]
    if type(held) is bytes:                 # held encoded (past its first ttl, valid by the feed)
        held = _decode_profile(held)
    elif type(held) is not dict:            # a known miss
        return None
    profile = refresh(held, now, field(profiles, STORED_FOLD_CONFIG, "fold_config"))
    reads = <list?> field(cache, CACHE_READS, "reads")            # CachedStore.reads[HIT] (no GIL switch in between)
    reads[0] += 1
    return profile


cdef tuple _stored_read(profiles, str cid, snapshot, now):
    """``Decider._profile`` for a customer id (no other identifier) that
    :func:`stored_hit` did not find fresh, with a ``StoredProfiles``: the
    same (profile, status, degraded reasons) from ``StoredProfiles.read_lookup``
    (``lookup`` without its first look at the cache, which ``stored_hit``
    just took), four Python frames less.  The whole Decides are held equal
    to the Python path's (tests/profiles/test_profile_stored_hit.py)."""
    try:
        found = profiles.read_lookup(cid, now)
    except SourceUnavailable as err:
        base = dict(snapshot) if snapshot is not None else {}
        base.setdefault("customer_id", cid)
        return base, _UNAVAILABLE_STATUS, [f"profile store unavailable: {err}"]
    except Exception as err:        # a broken source must not fail the request
        log.exception("profile source failed")
        base = dict(snapshot) if snapshot is not None else {}
        base.setdefault("customer_id", cid)
        return base, _UNAVAILABLE_STATUS, [f"profile store failed: {type(err).__name__}"]
    stored, why = found
    if stored is None:
        if snapshot is not None:
            return snapshot, _SNAPSHOT, []
        return {"customer_id": cid}, _UNKNOWN_CUSTOMER, []
    if snapshot:
        stored = {**stored, **snapshot}
    return stored, _STORED, [why] if why else []


cpdef object refresh(dict profile, now, cfg):
    """``fold.refresh``, compiled (the same operations on the same objects;
    a hypothesis test holds the two equal)."""
    seen = profile.get("last_seen_at") or now
    as_of = seen if seen > now else now     # max(now, seen): the first unless the second is greater
    stage = lifecycle(profile, as_of, cfg)
    if stage == profile.get("lifecycle"):
        return profile
    return {**profile, "lifecycle": stage}


cdef tuple _CFG = None      # (the last FoldConfig, its lapsed_after, vip_value, vip_orders, new_for)


cpdef str lifecycle(dict p, as_of, cfg):
    """``fold.lifecycle``, compiled (the thresholds of a FoldConfig, which
    is frozen, read once per config)."""
    global _CFG
    cdef tuple c = _CFG
    if c is None or c[0] is not cfg:
        c = _CFG = (cfg, cfg.lapsed_after, cfg.vip_value, cfg.vip_orders, cfg.new_for)
    orders = p.get("orders_count") or 0
    if not orders or as_of is None:
        return "new"
    if as_of - p["last_purchase_at"] > c[1]:
        return "lapsed"
    if (p.get("lifetime_value") or 0) >= c[2] or orders >= c[3]:
        return "vip"
    if as_of - p["first_purchase_at"] <= c[4]:
        return "new"
    return "active"


cdef object _inventory_stores():
    global _INVENTORY_STORES
    if _INVENTORY_STORES is None:
        from .inventory import InventoryStores
        _INVENTORY_STORES = InventoryStores
    return _INVENTORY_STORES


def nearby(decider, q, size, p, common, dict profile, list degraded, deadline, now):
    """The stores near the customer holding the viewed
    item in ``size``, by the policy ``p`` the rules chose.  A failing
    stores source never fails the request: the answer is empty and
    ``degraded`` says why."""
    preferred = profile.get("preferred_store")
    if not (isinstance(preferred, str) and preferred):
        preferred = None
    found = _NO_STOCK
    max_stores, radius_km = field(p, P_MAX_STORES, "max_stores"), field(p, P_RADIUS_KM, "radius_km")
    if max_stores > 0 and radius_km > 0:
        ctx = field(q, Q_CONTEXT, "context")
        where = field(ctx, C_LOCATION, "location")
        sku = field(ctx, C_SKU, "sku") or None
        request_store = field(ctx, C_STORE, "store") or None
        # the home is only the last fallback: a request's location (validated) comes first
        home = None
        if where is None:
            home = profile.get("home")
            if home is not None:
                home = _geo(home)
        min_quantity, low = field(p, P_MIN_QUANTITY, "min_quantity"), field(p, P_LOW_STOCK_BELOW, "low_stock_below")
        open_at = now if field(p, P_OPEN_NOW, "open_now") else None
        source = field(decider, DECIDER_STORES, "stores")
        try:
            if type(source) is _inventory_stores():     # InventoryStores.nearby, without the query object
                return _stock(field(source, STORES_HOLDER, "holder"), sku, size, where, preferred, home, radius_km,
                              max_stores, min_quantity, low, open_at, now, request_store, p, common)
            else:
                query = NearbyQuery(sku, size, where, preferred, home, radius_km, max_stores, min_quantity, low,
                                    open_at, now, request_store)
                found = source.nearby(query, _remaining(deadline))
        except SourceUnavailable as err:
            found = _UNAVAILABLE
            degraded.append(f"store availability unavailable: {err}")
        except Exception as err:
            found = _UNAVAILABLE
            log.exception("stores source failed")
            degraded.append(f"store availability failed: {type(err).__name__}")
    return nearby_answer(p, common, found, preferred)


def nearby_answer(p, common, found, preferred_store):
    """The policy the rules chose applied to what the stores source found:
    the stores holding at least ``p.min_quantity``, each flagged low-stock
    and preferred, ordered by ``p.preferred_first`` (preferred, then
    nearest) or nearest, at most ``p.max_stores``."""
    cdef list stores
    cdef Py_ssize_t i, j, n
    rows = field(found, FOUND_STORES, "stores")
    if not rows:
        reason = field(found, FOUND_EMPTY_REASON, "empty_reason")
        return NearbyStores((), p, common, field(found, FOUND_LOCATED_BY, "located_by"),
                            reason if reason is not None else "no_stock")
    min_quantity, low = field(p, P_MIN_QUANTITY, "min_quantity"), field(p, P_LOW_STOCK_BELOW, "low_stock_below")
    stores = []
    for s in rows:
        q = field(s, ROW_QUANTITY, "quantity")
        if q >= min_quantity:
            sid = field(s, ROW_STORE_ID, "store_id")
            stores.append(StoreAvailability(sid, field(s, ROW_NAME, "name"), field(s, ROW_DISTANCE_KM, "distance_km"),
                                            q, q < low, sid == preferred_store, field(s, ROW_OPEN_NOW, "open_now")))
    n = len(stores)
    if n > 1:                       # a stable insertion sort: a handful of stores
        first = field(p, P_PREFERRED_FIRST, "preferred_first")
        for i in range(1, n):
            x = stores[i]
            j = i
            while j > 0 and _ahead(x, stores[j - 1], first):
                stores[j] = stores[j - 1]
                j -= 1
            stores[j] = x
    if not stores:
        reason = field(found, FOUND_EMPTY_REASON, "empty_reason")
        return NearbyStores((), p, common, field(found, FOUND_LOCATED_BY, "located_by"),
                            reason if reason is not None else "no_stock")
    cut = field(p, P_MAX_STORES, "max_stores")
    if cut > n:                         # (a Py_ssize_t slice of a larger int overflows)
        cut = n
    return NearbyStores(tuple(stores[:cut]), p, common, field(found, FOUND_LOCATED_BY, "located_by"), None)


cdef inline bint _ahead(a, b, bint preferred_first) except -1:
    """Whether ``a`` sorts strictly before ``b``: (not preferred, distance)
    or distance alone, as ``sorted`` with those keys orders them."""
    if preferred_first:
        pa, pb = field(a, AVAIL_PREFERRED, "preferred"), field(b, AVAIL_PREFERRED, "preferred")
        if pa != pb:
            return pa
    return field(a, AVAIL_DISTANCE_KM, "distance_km") < field(b, AVAIL_DISTANCE_KM, "distance_km")


def inventory_nearby(holder, query):
    """``InventoryStores.nearby``: the stores of the in-memory stock near
    where the query says the customer is."""
    return _stock(holder, query.sku, query.size, query.request_location, query.preferred_store, query.home,
                  query.radius_km, query.max_stores, query.min_quantity, query.low_stock_below, query.open_at,
                  query.at, query.request_store, None, None)


def inventory_answer(holder, p, common, query):
    """:func:`nearby`'s answer from the in-memory stock, as it makes it:
    ``nearby_answer(p, common, inventory_nearby(holder, query),
    query.preferred_store)`` in one step (the test holds the two equal)."""
    return _stock(holder, query.sku, query.size, query.request_location, query.preferred_store, query.home,
                  query.radius_km, query.max_stores, query.min_quantity, query.low_stock_below, query.open_at,
                  query.at, query.request_store, p, common)


cdef object _empty(p, common, located_by, reason):
    if p is None:
        return NearbyFound((), located_by, reason)
    return NearbyStores((), p, common, located_by, reason)


cdef long long _LARGE = 1LL << 62       # more than any count (MAX_QUANTITY): "none holds that many"


cdef object _stock(holder, sku, size, request_location, preferred_store, home, radius_km, max_stores,
                   min_quantity, low_stock_below, open_at, at, request_store, p, common):
    """The stores of the in-memory stock near the customer holding (sku,
    size).  ``p`` None: ``InventoryStores.nearby``'s NearbyFound, the rows
    as ``availability.nearby_in`` makes them (``reference_nearby`` is its
    Python twin).  ``p`` a policy: the NearbyStores :func:`nearby_answer`
    makes of those rows, built straight from the store table's arrays with
    no rows between (on every Decide that shows stores).

    The common case runs in C over the snapshot's ``StoreTable`` (numbered
    stores: positions, names, open spans) and the item's ``ItemIndex``
    (``select``).  Arguments outside it (a limit that is not a positive
    int, a count that is not an int, a radius ``nearby_in`` refuses, times
    that are not floats) go through ``nearby_in``, for its answer or its
    ValueError."""
    cdef StoreTable table
    cdef ItemIndex index
    cdef double lat = 0.0, lon = 0.0, t_open = 0.0, t_at = 0.0, d
    cdef int pref = -1, kept, i, j, k, s, state, limit
    cdef long long minq, q
    cdef bint any_in_stock = False, open_only, at_known, same
    cdef int *out
    cdef int *opened
    cdef double *dist
    inv = field(holder, INV_HOLDER_INVENTORY, "inventory")
    if inv is None:
        return _empty(p, common, None, "no_data")
    snap = field(inv, INV_SNAPSHOT, "_snapshot")   # one state for every step (Inventory.snapshot's value)
    geo = field(snap, SNAP_GEO, "geo")
    t = field(geo, GEO_TABLE, "table")
    if t is None:                                # (built with the index: availability._geo_of)
        t = geo.table = StoreTable(field(snap, SNAP_DATA, "data").stores)
    table = t
    located_by = _place(table, request_location, preferred_store, home, request_store, &lat, &lon)
    if located_by is None:
        return _empty(p, common, None, "no_location")
    if not sku:
        return _empty(p, common, located_by, "no_sku")
    if size is None:
        size = _one_size(snap, sku)
        if size is None:
            return _empty(p, common, located_by, "no_size")
    preferred = preferred_store if type(preferred_store) is str else None
    min_quantity = max(1, min_quantity)
    low = max(0, low_stock_below)
    if not (type(radius_km) is float and 0.0 <= <double>radius_km < INF and type(max_stores) is int
            and max_stores > 0 and type(min_quantity) is int and type(low) is int
            and (open_at is None or type(open_at) is float) and (at is None or type(at) is float)):
        found = _general(snap, lat, lon, sku, size, radius_km, max_stores, min_quantity, low, preferred,
                         open_at, at, located_by)
        return found if p is None else nearby_answer(p, common, found, preferred)
    key = (sku, size)
    by_store = _get(field(field(snap, SNAP_DATA, "data"), DATA_STOCK, "stock"), key)
    if not by_store:
        return _empty(p, common, located_by, "no_stock")
    hit = _get(field(geo, GEO_ITEM_INDEXES, "item_indexes"), key)
    index = hit[1] if hit is not None and hit[0] is by_store else _item_index(snap, key, by_store)
    limit = min(max_stores, len(index))
    minq = min_quantity if min_quantity < _LARGE else _LARGE
    if preferred is not None:
        n = table.number.get(preferred)
        if n is not None:
            pref = n
    open_only = open_at is not None
    if open_only:
        t_open = open_at
    at_known = at is not None
    if at_known:
        t_at = at
    same = open_only and at_known and t_open == t_at       # then a kept store's open_now is what select found
    out = <int*>malloc((limit + 1) * sizeof(int))
    opened = <int*>malloc((limit + 1) * sizeof(int))
    dist = <double*>malloc((limit + 1) * sizeof(double))
    try:
        if out == NULL or opened == NULL or dist == NULL:
            raise MemoryError()
        kept = index.select(table, lat, lon, radius_km, minq, limit, pref, open_only, t_open, out, dist, opened,
                            &any_in_stock)
        if kept == 0:
            return _empty(p, common, located_by, "none_open" if open_only and any_in_stock else "no_stock")
        if p is not None and not field(p, P_PREFERRED_FIRST, "preferred_first"):
            for i in range(1, kept):            # nearest first, stably (the preferred one to its place)
                j, d, state = out[i], dist[i], opened[i]
                k = i
                while k > 0 and d < dist[k - 1]:
                    out[k], dist[k], opened[k] = out[k - 1], dist[k - 1], opened[k - 1]
                    k -= 1
                out[k], dist[k], opened[k] = j, d, state
        rows = []
        for i in range(kept):
            s, q = index.num[out[i]], index.qty[out[i]]
            if not at_known:
                open_now = None
            else:
                state = opened[i] if same else table.open_state(s, t_at)
                open_now = None if state == 2 else state == 1
            if p is None:
                rows.append(FoundStore(table.ids[s], table.names[s], dist[i], q, q < low, open_now))
            else:
                rows.append(StoreAvailability(table.ids[s], table.names[s], dist[i], q, q < low_stock_below,
                                              s == pref, open_now))
        if p is None:
            return NearbyFound(tuple(rows), located_by, None)
        return NearbyStores(tuple(rows), p, common, located_by, None)
    finally:
        free(out)
        free(opened)
        free(dist)


cdef object _general(snap, lat, lon, sku, size, radius_km, max_stores, min_quantity, low, preferred, open_at, at,
                     located_by):
    """What ``reference_nearby`` does once it knows where: ``nearby_in``
    (the Python path, for arguments the compiled one does not take)."""
    found = nearby_in(snap, lat, lon, sku, size, radius_km, max_stores, min_quantity, low, preferred, open_at, at)
    if found:
        return NearbyFound(tuple(found), located_by, None)
    if open_at is not None and nearby_in(snap, lat, lon, sku, size, radius_km, 1, min_quantity, 0, preferred):
        return NearbyFound((), located_by, "none_open")   # in stock nearby, but every such store is closed now
    return NearbyFound((), located_by, "no_stock")


cdef inline object _geo(v):
    """``values.to_geo`` in C: a request's point (a tuple of two floats in
    range) as it is; a profile's ``{"lat": .., "lon": ..}`` (its home), or a
    list or tuple of two numbers, as a new tuple (``_geo.point_of``); else
    None.  A Decide runs no Python function for it."""
    cdef double lat, lon
    if type(v) is tuple and len(<tuple>v) == 2:
        a, b = (<tuple>v)[0], (<tuple>v)[1]
        if type(a) is float and type(b) is float:
            lat, lon = a, b
            if -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
                return v
    if point_of(v, &lat, &lon):
        return (lat, lon)
    return None


cdef object _place(StoreTable table, request_location, preferred_store, home, request_store,
                   double *lat, double *lon):
    """``location.locate_point``: where to search, by its order (the
    request's point, its store, the preferred store, the home), into
    ``lat``/``lon``; the answer's name for it, or None when none is known."""
    if request_location is not None:
        point = _geo(request_location)
        if point is not None:
            lat[0], lon[0] = point[0], point[1]
            return _REQUEST
    if request_store is not None and type(request_store) is str:
        s = table.number.get(request_store)
        if s is not None:
            lat[0], lon[0] = table.lat[<int>s], table.lon[<int>s]
            return _REQUEST_STORE
    if type(preferred_store) is str:
        s = table.number.get(preferred_store)
        if s is not None:
            lat[0], lon[0] = table.lat[<int>s], table.lon[<int>s]
            return _PREFERRED_STORE
    if home is not None:
        point = _geo(home)
        if point is not None:
            lat[0], lon[0] = point[0], point[1]
            return _HOME
    return None


cdef inline object _get(m, key):
    """``m.get(key)``, without the method's lookup when ``m`` is a dict."""
    if type(m) is dict:
        return (<dict> m).get(key)
    return m.get(key)


cdef object _one_size(snap, sku):
    """A product sold in a single size needs no size from the customer."""
    item = _get(field(field(snap, SNAP_DATA, "data"), DATA_CATALOG, "catalog"), sku)
    if item is None:
        sizes = ()
    elif type(item) is CatalogItem:
        sizes = field(item, ITEM_SIZES, "sizes")
    else:
        sizes = getattr(item, "sizes", ())
    return sizes[0] if len(sizes) == 1 else None


def generic_fields():
    """The fields this module reads through the generic attribute lookup
    because their type keeps them in no object slot (tests: none)."""
    _late_slots()
    return list(_GENERIC)
