# cython: language_level=3, boundscheck=False, wraparound=False, optimize.unpack_method_calls=False
"""One Decide's path through the decision service, compiled.

:func:`decide` is ``Decider.decide`` (the current ruleset and its plan),
:func:`decide_batch` is ``Decider.decide_batch``, :func:`answer` is the
servicer's Decide once the request is read (deadline, decide, metrics,
encoder).  :func:`decide_one` answers one query: validate, the profile,
the rules, the typed results (``_assemble.map_raw``), the nearby stores
and the ``DecideResult``.  :func:`nearby` is the stores' part of it and
:func:`nearby_answer` the policy applied to what the stores source found;
:func:`inventory_nearby` is ``InventoryStores.nearby`` (the in-memory
stock's answer, with ``availability.nearby_in``'s common case inlined).
In the interpreter this glue cost ~19,000 instructions a Decide besides
the parts it calls (frames, locals, two dozen small calls); in the server,
where a Decide runs with cold caches, each Python function on the path
also costs the cache lines of its code and data (``python -m
bench.decide_cost --cold``).  The request's and the answer's msgspec
fields are read from their slots (``_fields.pxd``).

``decide``, ``decide_batch``, ``answer``, ``decide_one`` and ``nearby``
have no Python twin: the Decider, the servicers and every test of them run
this code (tests/server).  The others are held to Python references by
hypothesis tests: ``common_case`` and ``to_request`` to
``validate.common_case`` and ``RequestContext.to_request``
(tests/server/test_validate.py), ``nearby_answer`` to
``results.nearby_answer`` (tests/server/test_nearby_answer.py),
``inventory_nearby`` to ``service.inventory.reference_nearby``
(tests/server/test_inventory_domain.py), ``stored_hit``, ``refresh`` and
``lifecycle`` (a Decide by customer id answered from a fresh entry of the
profile cache) to ``StoredProfiles.lookup``, ``fold.refresh`` and
``fold.lifecycle`` (tests/profiles/test_profile_stored_hit.py).
"""
import functools
import logging
import time

from ._fields cimport Slot, field, field_slot

from ..eval.values import to_geo
from ..inventory.availability import _item_index, nearby_in
from ..inventory.model import Store, StoreAvailability as FoundStore, local_weekday_minute
from ..inventory.location import HOME, PREFERRED_STORE, REQUEST, REQUEST_STORE
from . import results
from ._assemble import map_raw
from .assemble import Plan
from .errors import DeadlineExceeded, InvalidArgument, ServiceError
from .model import (DecideQuery, DecideResult, ItemError, NearbyStores, NearbyStoresPolicy, ProfileStatus,
                    RequestContext, StoreAvailability)
from .sources import NearbyFound, NearbyQuery, NullProfiles, SourceUnavailable
from .validate import MAX_ID, MAX_TEXT, MAX_TIME, MIN_TIME, SHAPE_CHECK_BYTES, validate_batch_size, validate_query

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

# the request's fields, read from their slots (engine/service/_fields.pxd)
cdef list _GENERIC = []                 # fields without a slot (generic_fields)
cdef Slot Q_CUSTOMER_ID = field_slot(DecideQuery, "customer_id", _GENERIC)
cdef Slot Q_PROFILE = field_slot(DecideQuery, "profile", _GENERIC)
cdef Slot Q_SNAPSHOT_BYTES = field_slot(DecideQuery, "snapshot_bytes", _GENERIC)
cdef Slot Q_CONTEXT = field_slot(DecideQuery, "context", _GENERIC)
cdef Slot Q_DECISIONS = field_slot(DecideQuery, "decisions", _GENERIC)
cdef Slot Q_EXPLAIN = field_slot(DecideQuery, "explain", _GENERIC)
cdef Slot Q_ALIASES = field_slot(DecideQuery, "aliases", _GENERIC)
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
cdef Slot STORE_NAME = field_slot(Store, "name", _GENERIC)
cdef Slot STORE_LAT = field_slot(Store, "lat", _GENERIC)
cdef Slot STORE_LON = field_slot(Store, "lon", _GENERIC)
cdef Slot STORE_TZ = field_slot(Store, "tz", _GENERIC)
cdef Slot STORE_HOURS = field_slot(Store, "hours", _GENERIC)


cdef inline void _check_deadline(deadline) except *:
    if deadline is not None and _monotonic() >= deadline:
        raise DeadlineExceeded("the deadline passed before the decision was made")


cdef inline object _remaining(deadline):
    if deadline is None:
        return None
    return max(0.0, deadline - _monotonic())


def answer(decider, q, remaining, on_result, encode):
    """``DecisionServicer.decide_bytes`` once the request is read: the
    deadline from the call's remaining time (``servicers.deadline_of``),
    :func:`decide` (``Decider.decide``), ``on_result`` (the metrics) and
    ``encode`` (the wire encoder) -- one C call where the server ran six
    Python functions."""
    deadline = None
    if remaining is not None and remaining <= 1e9:     # grpc reports "no deadline" as a huge number
        deadline = _monotonic() + remaining
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
    rs = decider.holder.current
    if rs is None:
        rs = decider.ruleset()                # raises
    plan = decider._plan
    if plan is None or plan.ruleset is not rs:    # a swap this request raced with
        plan = Plan(rs)
    return rs, plan


def decide_batch(decider, queries, deadline=None):
    """``Decider.decide_batch``: every item decided by the same ruleset
    version; an item's error is its own (an item may already be the error
    its translation raised); a passed deadline stops the batch."""
    validate_batch_size(len(queries))
    _check_deadline(deadline)
    rs, plan = _current(decider)
    _prefetch(decider.profiles, queries)
    _check_deadline(deadline)
    cdef list out = []
    cdef Py_ssize_t i = 0
    for q in queries:
        _check_deadline(deadline)
        try:
            if isinstance(q, ServiceError):
                raise q
            out.append(decide_one(decider, rs, plan, q, deadline))
        except InvalidArgument as err:
            out.append(ItemError(err.prefixed(f"requests[{i}]")))
        except DeadlineExceeded:
            raise
        except ServiceError as err:
            out.append(ItemError(err))
        i += 1
    return rs.version, out


def decide_one(decider, rs, plan, q, deadline):
    """``Decider._decide``: the answer to one query by ruleset ``rs`` and
    its plan.  Raises ServiceError subclasses for what the client must be told.

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
        now = decider.clock()
    # Decider._profile's first cases: no identifier, or a customer_id and no
    # profile store (every id unknown): the snapshot, or nothing
    given = field(q, Q_CUSTOMER_ID, "customer_id")
    aliases = field(q, Q_ALIASES, "aliases")
    profiles = decider.profiles
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
        else:
            profile, status, degraded = decider._profile(q, deadline, now)
    _check_deadline(deadline)
    names = field(q, Q_DECISIONS, "decisions")
    request = _request(ctx)
    # experiments assign by the profile's own id: a merged customer asked for
    # by any of its ids (the survivor's or an alias) keeps one variant
    cid = profile.get("customer_id")
    if type(cid) is not str or not cid:
        cid = given or None
    if names:
        wanted = decider._wanted(rs, names)
        raw = rs.run(profile, request, now, cid, wanted)
    else:                         # Ruleset.run without the names to look up
        wanted = None
        raw = rs.kernel.run(profile if type(profile) is dict else {}, request, now, cid, None)
    dlog = decider.decision_log
    if dlog is not None:          # the outcomes are made on the log's thread, if sampled
        dlog.offer(rs.version, given, profile, request, functools.partial(rs.decision_set, raw, now), status)
    asked = set(names) if names else None
    fields, generic, decided_by, found = map_raw(plan, plan.decisions, raw, asked)
    if found is not None:
        fields[NEARBY] = nearby(decider, q, _size(plan, raw), found[0], found[1], profile, degraded, deadline, now)
    explanation = None
    if field(q, Q_EXPLAIN, "explain"):
        explained = rs.explain(profile, request, now, cid, wanted)
        explanation = {name: e for name, e in explained.items()
                       if e is not None and (asked is None or name in asked)}
    get = fields.get
    return DecideResult(rs.version, now, status, get(HOMEPAGE), get(SIZE), get(NEARBY), get(OFFER), generic,
                        bool(degraded), "; ".join(degraded) if degraded else "", explanation, tuple(decided_by),
                        cid or "")


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
    cdef dict req = dict(attributes) if attributes else {}
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
    cdef Py_ssize_t at = plan.size_position
    if at < 0:
        return None
    answer = raw[at]
    if answer is None:
        return None
    ranks, outputs = answer[0], answer[1]
    value = outputs[0][0] if ranks else plan.ruleset.program.decisions[at].default
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
    fresh profile for the id and the store is not marked down (the case in
    which ``lookup`` answers from ``CachedStore.fresh``, not degraded);
    else None, and the caller asks ``lookup``.  Five Python frames
    (``Decider._profile``, ``lookup_profile``, ``lookup``, ``fresh``,
    ``refresh``) and a ``ProfileLookup`` less.  A hypothesis test holds it
    to ``lookup`` (tests/profiles/test_profile_stored_hit.py)."""
    cache = profiles.cache
    table = cache._entries.table            # cachetools' own dict of the entries
    if table is None:
        return None
    cached = (<dict>table).get(customer_id)
    if cached is None or cache._down_until is not None or not (cache.clock() - cached[1] < cache.ttl):
        return None
    held = cached[0]
    if type(held) is not dict:              # a known miss, or a profile held encoded
        return None
    return refresh(held, now, profiles.fold_config)


cpdef object refresh(dict profile, now, cfg):
    """``fold.refresh``, compiled (the same operations on the same objects;
    a hypothesis test holds the two equal)."""
    seen = profile.get("last_seen_at") or now
    as_of = seen if seen > now else now     # max(now, seen): the first unless the second is greater
    stage = lifecycle(profile, as_of, cfg)
    if stage == profile.get("lifecycle"):
        return profile
    return {**profile, "lifecycle": stage}


cpdef str lifecycle(dict p, as_of, cfg):
    """``fold.lifecycle``, compiled."""
    orders = p.get("orders_count") or 0
    if not orders or as_of is None:
        return "new"
    if as_of - p["last_purchase_at"] > cfg.lapsed_after:
        return "lapsed"
    if (p.get("lifetime_value") or 0) >= cfg.vip_value or orders >= cfg.vip_orders:
        return "vip"
    if as_of - p["first_purchase_at"] <= cfg.new_for:
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
        source = decider.stores
        try:
            if type(source) is _inventory_stores():     # InventoryStores.nearby, without the query object
                found = _in_stock(source.holder, sku, size, where, preferred, home, radius_km, max_stores,
                                  min_quantity, low, open_at, now, request_store)
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
    return NearbyStores(tuple(stores[:field(p, P_MAX_STORES, "max_stores")]), p, common,
                        field(found, FOUND_LOCATED_BY, "located_by"), None)


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
    return _in_stock(holder, query.sku, query.size, query.request_location, query.preferred_store, query.home,
                     query.radius_km, query.max_stores, query.min_quantity, query.low_stock_below, query.open_at,
                     query.at, query.request_store)


cdef object _in_stock(holder, sku, size, request_location, preferred_store, home, radius_km, max_stores,
                      min_quantity, low_stock_below, open_at, at, request_store):
    """:func:`inventory_nearby` of a NearbyQuery's fields."""
    inv = holder.inventory
    if inv is None:
        return NearbyFound((), None, "no_data")
    snap = inv._snapshot                         # one state for every step (Inventory.snapshot's value)
    stores = snap.data.stores
    point, located_by = _locate(request_location, preferred_store, home, stores, request_store)
    if point is None:
        return NearbyFound((), None, "no_location")
    # located_by: REQUEST, REQUEST_STORE, PREFERRED_STORE, HOME: the answer's names
    if not sku:
        return NearbyFound((), located_by, "no_sku")
    if size is None:
        size = _one_size(snap, sku)
        if size is None:
            return NearbyFound((), located_by, "no_size")
    preferred = preferred_store
    if type(preferred) is not str:
        preferred = None
    min_quantity = max(1, min_quantity)
    lat, lon = point
    # the inventory's StoreAvailability has the fields a StoreStock has: passed as they are
    # nearby_in, here in C; with open_at only the stores open then count (a till's "go there today")
    found = _nearest_rows(snap, stores, lat, lon, sku, size, radius_km, max_stores, min_quantity,
                          max(0, low_stock_below), preferred, open_at, at)
    if found:
        return NearbyFound(tuple(found), located_by, None)
    if open_at is not None and nearby_in(snap, lat, lon, sku, size, radius_km, 1, min_quantity, 0, preferred):
        return NearbyFound((), located_by, "none_open")   # in stock nearby, but every such store is closed now
    return NearbyFound((), located_by, "no_stock")


cdef inline object _geo(v):
    """``values.to_geo``; a request's point (a tuple of two floats in range) in C."""
    cdef double lat, lon
    if type(v) is tuple and len(<tuple>v) == 2:
        a, b = (<tuple>v)[0], (<tuple>v)[1]
        if type(a) is float and type(b) is float:
            lat, lon = a, b
            if -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
                return v
    return to_geo(v)


cdef tuple _locate(request_location, preferred_store, home, dict stores, request_store):
    """``location.locate_point``: (point, source) by its order: the request's
    point, its store, the preferred store, the home."""
    if request_location is not None:
        point = _geo(request_location)
        if point is not None:
            return point, _REQUEST
    if request_store is not None and type(request_store) is str:
        store = stores.get(request_store)
        if store is not None:
            return (field(store, STORE_LAT, "lat"), field(store, STORE_LON, "lon")), _REQUEST_STORE   # Store.position
    if type(preferred_store) is str:
        store = stores.get(preferred_store)
        if store is not None:
            return (field(store, STORE_LAT, "lat"), field(store, STORE_LON, "lon")), _PREFERRED_STORE
    if home is not None:
        point = _geo(home)
        if point is not None:
            return point, _HOME
    return None, None


cdef list _nearest_rows(snap, dict stores, lat, lon, sku, size, radius_km, limit, min_quantity,
                        low_stock_below, preferred, open_at, at):
    """``availability.nearby_in(..., open_at, at)``: the item's compiled
    index selects the stores (with ``open_at``, only those open then: asked
    store by store in distance order until ``limit`` are found, not of
    every store in the radius), each becomes the inventory's
    StoreAvailability with ``open_now`` at ``at``.  Arguments nearby_in
    refuses go to it, for its ValueError."""
    if (not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 180.0 or not 0.0 <= radius_km < INF or limit < 0
            or min_quantity < 1 or low_stock_below < 0):
        return nearby_in(snap, lat, lon, sku, size, radius_km, limit, min_quantity, low_stock_below, preferred,
                         open_at, at)
    key = (sku, size)
    by_store = snap.data.stock.get(key)
    if not by_store or limit == 0:
        return []
    hit = snap.geo.item_indexes.get(key)
    index = hit[1] if hit is not None and hit[0] is by_store else _item_index(snap, key, by_store)
    out = []
    local = {}                  # zone -> (weekday, minute) at ``at``, for this query's stores
    cdef _OpenAt keep = None
    cdef bint same = False
    if open_at is not None:
        same = open_at == at    # then a kept store's open_now is what keep found
        keep = _OpenAt(stores, open_at, local if same else {})
    for d, sid, n in index.nearest(lat, lon, radius_km, min_quantity, limit, preferred, keep):
        store = stores[sid]
        if at is None:
            open_now = None
        elif same:
            open_now = keep.seen[sid]
        else:
            open_now = _open_at(store, at, local)
        out.append(FoundStore(sid, field(store, STORE_NAME, "name"), d, n, n < low_stock_below, open_now))
    return out


cdef class _OpenAt:
    """``keep`` for ItemIndex.nearest: whether a store is open at ``t``, or
    has no time zone (``availability._open_only``'s test, store by store)."""
    cdef dict stores, local, seen
    cdef object t

    def __cinit__(self, dict stores, t, dict local):
        self.stores, self.t, self.local, self.seen = stores, t, local, {}

    def __call__(self, sid):
        found = self.seen[sid] = _open_at(self.stores[sid], self.t, self.local)
        return found is not False


cdef object _open_at(store, at, dict local):
    """``Store.open_at_time(at, local)``."""
    tz = field(store, STORE_TZ, "tz")
    if tz is None:
        return None
    wm = local.get(tz)
    if wm is None:
        wm = local[tz] = local_weekday_minute(tz, at)
    hours, m = field(store, STORE_HOURS, "hours"), wm[1]
    if hours.by_date:
        spans = hours._by_day.get(wm[2])        # OpeningHours.spans_on's memo, read here
        if spans is None:
            spans = hours.spans_on(wm[2])
    else:
        spans = hours.spans[wm[0]]
    for span in spans:
        if span[0] <= m < span[1]:
            return True
    return False


cdef object _one_size(snap, sku):
    """A product sold in a single size needs no size from the customer."""
    item = snap.data.catalog.get(sku)
    sizes = getattr(item, "sizes", ()) if item is not None else ()
    return sizes[0] if len(sizes) == 1 else None


def generic_fields():
    """The fields this module reads through the generic attribute lookup
    because their type keeps them in no object slot (tests: none)."""
    return list(_GENERIC)
