# cython: language_level=3, boundscheck=False, wraparound=False
"""The profile fast paths, compiled, each the twin of a Python reference
that stays the definition (and what runs when this module is not built);
hypothesis tests hold each pair equal (tests/profiles/test_profile_fastpaths.py).

* :func:`fast_events` is ``[events.fast_event(raw, i, now, cfg) for i, raw
  in enumerate(raws)]``: the same checks in the same order, each answer the
  same value of the same type, the same Event (tie, alias keys, typed
  data), and None at the same first doubt; ``validate_batch`` then runs
  ``validate_event`` on the events it refuses, as before.  In the
  interpreter this path cost ~37,000 instructions an event (20 % of
  ingesting a batch): a dozen small calls, attribute lookups and frames.
  Field checks are coded by kind (:func:`setup` gets the tables from
  ``events``); the rare kinds (a numeric size, a geo point) call the Python
  fast checker itself.
* :func:`fold_into` is ``fold.fold_into``: the presence bookkeeping every
  event does (first/last seen, per channel, channels, visits), the event
  type's handler (Python, ``fold.HANDLERS``) and the lifecycle, with the
  same operations on the same objects (Python comparisons and floor
  division: any value compares as it does in Python); a profile that is not
  a plain dict goes to the Python reference.  :func:`add_visit_in_place`
  is ``fold._add_visit_in_place``.
* :func:`public_bytes` is ``store.reference_public_bytes``: a stored
  profile's MessagePack without the fold's bookkeeping, cut out of the
  bytes (the entries skipped over, nothing decoded) for the profile cache
  (tests/profiles/test_profile_public_bytes.py).
"""
from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_FromDouble
from cpython.object cimport PyObject, PyObject_GenericSetAttr
from cpython.set cimport PySet_Contains
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.math cimport floor, isfinite

cdef extern from "Python.h":
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL
    Py_UCS4 PyUnicode_READ_CHAR(object s, Py_ssize_t i)
    bint Py_UNICODE_ISSPACE(Py_UCS4 ch)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    object PyUnicode_Concat(object a, object b)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

# kinds of field check: events._fast_kind numbers each fast checker so
cdef enum:
    K_IDENT = 0
    K_TEXT = 1
    K_MONEY = 2
    K_QUANTITY = 3
    K_SIZE = 4
    K_FLAG = 5
    K_STORE = 6
    K_ITEMS = 7
    K_OTHER = 8

cdef object _BAD, _Event, _Item, _proxy, _blake2b_8
cdef dict _TYPES = {}               # event type -> (allowed, plan, needed, channel -> required field)
cdef frozenset _CHANNELS
cdef tuple _IDENTIFIERS
cdef tuple _ITEM_FIELDS
cdef Py_ssize_t _MAX_ID, _MAX_TEXT, _MAX_ITEMS, _MAX_SIZE_TEXT
cdef long long _MAX_QTY, _MAX_MONEY
cdef double _MAX_MONEY_F, _INT_TS_LIMIT
cdef tuple _EVENT_FIELDS


def setup(*, bad, event, item, proxy, blake2b, types, channels, identifiers, item_fields, event_fields,
          max_id, max_text, max_items, max_size_text, max_qty, max_money):
    """Called once by ``events`` with its tables (plans of ``(name, kind,
    required, python checker, item plan or None)``)."""
    global _BAD, _Event, _Item, _proxy, _blake2b_8, _TYPES, _CHANNELS, _IDENTIFIERS, _ITEM_FIELDS
    global _MAX_ID, _MAX_TEXT, _MAX_ITEMS, _MAX_SIZE_TEXT, _MAX_QTY, _MAX_MONEY, _MAX_MONEY_F, _EVENT_FIELDS
    _BAD, _Event, _Item, _proxy = bad, event, item, proxy
    _blake2b_8 = blake2b(digest_size=8)        # copied for each event
    _TYPES, _CHANNELS, _IDENTIFIERS, _ITEM_FIELDS = dict(types), frozenset(channels), tuple(identifiers), tuple(item_fields)
    _EVENT_FIELDS = tuple(event_fields)
    assert _EVENT_FIELDS == ('event_id', 'type', 'channel', 'timestamp', 'ids', 'data', 'index', 'alias_keys', 'tie')
    _MAX_ID, _MAX_TEXT, _MAX_ITEMS, _MAX_SIZE_TEXT = max_id, max_text, max_items, max_size_text
    _MAX_QTY, _MAX_MONEY = max_qty, max_money
    _MAX_MONEY_F = <double>max_money


cdef inline object _get(dict d, object key):
    cdef PyObject *v = PyDict_GetItemWithError(d, key)
    return None if v is NULL else <object>v


cdef inline bint _isspace(str s):
    """str.isspace() (s non-empty)."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(s)
    for i in range(n):
        if not Py_UNICODE_ISSPACE(PyUnicode_READ_CHAR(s, i)):
            return False
    return True


cdef inline bint _text_ok(object raw, Py_ssize_t limit):
    """type(raw) is str and raw and len(raw) <= limit and not raw.isspace()"""
    if type(raw) is not str:
        return False
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(raw)
    return 0 < n <= limit and not _isspace(raw)


cdef object _check(object raw, int kind, object pycheck, object sub, object cfg):
    """One field's fast check: the value, or _BAD."""
    cdef double x
    cdef long long v
    cdef int overflow = 0
    if kind == K_IDENT:
        return raw if _text_ok(raw, _MAX_ID) else _BAD
    if kind == K_TEXT:
        return raw if _text_ok(raw, _MAX_TEXT) else _BAD
    if kind == K_MONEY:
        if type(raw) is float:
            x = PyFloat_AS_DOUBLE(raw)
            return raw if 0.0 <= x <= _MAX_MONEY_F else _BAD
        if type(raw) is int:
            v = PyLong_AsLongLongAndOverflow(raw, &overflow)
            if overflow == 0 and 0 <= v <= _MAX_MONEY:
                return float(raw)
        return _BAD
    if kind == K_QUANTITY:
        if type(raw) is float:
            x = PyFloat_AS_DOUBLE(raw)
            if not (isfinite(x) and floor(x) == x):
                return _BAD                 # not is_integer(): a float is never a quantity
            raw = PyLong_FromDouble(x)
        if type(raw) is int:
            v = PyLong_AsLongLongAndOverflow(raw, &overflow)
            if overflow == 0 and 1 <= v <= _MAX_QTY:
                return raw
        return _BAD
    if kind == K_SIZE:
        if type(raw) is str:
            return raw if _text_ok(raw, _MAX_SIZE_TEXT) else _BAD
        return pycheck(raw, cfg)
    if kind == K_FLAG:
        return raw if type(raw) is bool else _BAD
    if kind == K_STORE:
        if not _text_ok(raw, _MAX_ID):
            return _BAD
        known = cfg.known_stores
        if known is not None and raw not in known:
            return _BAD
        return raw
    if kind == K_ITEMS:
        return _items(raw, sub, cfg)
    return pycheck(raw, cfg)


cdef dict _values(dict raw, tuple plan, object cfg):
    """events._fast_values: the checked fields of ``plan`` in ``raw``, or None."""
    cdef dict out = {}
    cdef tuple f
    for f in plan:
        name = f[0]
        value = _get(raw, name)
        if value is None:
            if f[2]:
                return None
            continue
        value = _check(value, f[1], f[3], f[4], cfg)
        if value is _BAD:
            return None
        PyDict_SetItem(out, name, value)
    return out


cdef object _items(object raw, tuple spec, object cfg):
    """events._fast_items' check: a tuple of Items, or _BAD."""
    if type(raw) is not list:
        return _BAD
    cdef list lines = <list>raw
    cdef Py_ssize_t n = len(lines)
    if n == 0 or n > _MAX_ITEMS:
        return _BAD
    cdef frozenset allowed = spec[0]
    cdef tuple plan = spec[1]
    cdef list items = []
    cdef dict values
    cdef Py_ssize_t pos
    cdef PyObject *key
    cdef PyObject *val
    for x in lines:
        if type(x) is not dict:
            return _BAD
        pos = 0
        while PyDict_Next(x, &pos, &key, &val):        # allowed.issuperset(x)
            if not PySet_Contains(allowed, <object>key):
                return _BAD
        values = _values(<dict>x, plan, cfg)
        if values is None:
            return _BAD
        item = _Item.__new__(_Item)                    # Item(**values): every field, None unless given
        for name in _ITEM_FIELDS:
            PyObject_GenericSetAttr(item, name, _get(values, name))
        items.append(item)
    return tuple(items)


cdef object _event(object raw_obj, Py_ssize_t index, double now, object now_obj, bint float_now, object cfg,
                   double max_future, double max_past):
    """events.fast_event for one raw event."""
    if type(raw_obj) is not dict:
        return None
    cdef dict raw = <dict>raw_obj
    etype = _get(raw, "type")
    if type(etype) is not str:
        return None
    known = _get(_TYPES, etype)
    if known is None:
        return None
    cdef tuple k = <tuple>known
    cdef frozenset allowed = k[0]
    cdef Py_ssize_t pos = 0
    cdef PyObject *key
    cdef PyObject *val
    while PyDict_Next(raw, &pos, &key, &val):           # known[0].issuperset(raw)
        if not PySet_Contains(allowed, <object>key):
            return None
    event_id, channel, ts = _get(raw, "event_id"), _get(raw, "channel"), _get(raw, "timestamp")
    if not _text_ok(event_id, _MAX_ID) or type(channel) is not str or channel not in _CHANNELS:
        return None
    cdef double t
    cdef long long iv
    cdef int overflow = 0
    if type(ts) is float:
        t = PyFloat_AS_DOUBLE(ts)
        if not isfinite(t):
            return None
    elif type(ts) is int:
        iv = PyLong_AsLongLongAndOverflow(ts, &overflow)
        if overflow != 0 or not (-9007199254740992 <= iv <= 9007199254740992):     # abs(ts) <= 2 ** 53
            return None
        ts = float(ts)
        t = PyFloat_AS_DOUBLE(ts)
    else:
        return None
    if float_now:
        if t - now > max_future or now - t > max_past:
            return None
    elif ts - now_obj > cfg.max_future or now_obj - ts > cfg.max_past:
        return None
    meta = _get(raw, "meta")
    if meta is not None and type(meta) is not dict:
        return None
    cdef list ids = [], keys = []
    for kind in _IDENTIFIERS:
        value = _get(raw, kind)
        if value is not None:
            if not _text_ok(value, _MAX_ID):
                return None
            ids.append((kind, value))
            keys.append(PyUnicode_Concat(PyUnicode_Concat(kind, ":"), value))
    data = _values(raw, k[1], cfg)
    if not ids or data is None:
        return None
    needed = k[2]
    if needed:
        for n in needed:
            if n in data:
                break
        else:
            return None
    required = _get(k[3], channel)
    if required and required not in data:
        return None
    hasher = _blake2b_8.copy()                  # events.tie_of: blake2b(id, digest_size=8), as an int >> 1
    hasher.update((<str>event_id).encode("utf-8"))
    cdef bytes digest = hasher.digest()
    cdef const unsigned char *d = digest
    cdef unsigned long long h = 0
    cdef int i
    for i in range(8):
        h = (h << 8) | d[i]
    e = _Event.__new__(_Event)                  # events._make_event: every field, through its slot
    cdef tuple names = _EVENT_FIELDS
    PyObject_GenericSetAttr(e, names[0], event_id)
    PyObject_GenericSetAttr(e, names[1], etype)
    PyObject_GenericSetAttr(e, names[2], channel)
    PyObject_GenericSetAttr(e, names[3], ts)
    PyObject_GenericSetAttr(e, names[4], tuple(ids))
    PyObject_GenericSetAttr(e, names[5], _proxy(data))
    PyObject_GenericSetAttr(e, names[6], index)
    PyObject_GenericSetAttr(e, names[7], tuple(keys))
    PyObject_GenericSetAttr(e, names[8], PyLong_FromUnsignedLongLong(h >> 1))
    return e


def fast_events(raws, now, cfg):
    """``[events.fast_event(raw, i, now, cfg) for i, raw in enumerate(raws)]``."""
    cdef bint float_now = type(now) is float and type(cfg.max_future) is float and type(cfg.max_past) is float
    cdef double now_d = PyFloat_AS_DOUBLE(now) if float_now else 0.0
    cdef double max_future = PyFloat_AS_DOUBLE(cfg.max_future) if float_now else 0.0
    cdef double max_past = PyFloat_AS_DOUBLE(cfg.max_past) if float_now else 0.0
    cdef list out = []
    cdef Py_ssize_t i = 0
    for raw in raws:
        out.append(_event(raw, i, now_d, now, float_now, cfg, max_future, max_past))
        i += 1
    return out


# ---------------------------------------------------------------- the fold
cdef object _UNSET = object()
cdef dict _HANDLERS = {}
cdef object _lifecycle, _FOLD_VERSION, _DEFAULT_CONFIG, _insort, _bisect_right, _py_fold_into, _py_add_visit


def setup_fold(*, handlers, lifecycle, fold_version, default_config, insort, bisect_right, reference,
               add_visit_reference):
    """Called once by ``fold`` with what the compiled fold calls."""
    global _HANDLERS, _lifecycle, _FOLD_VERSION, _DEFAULT_CONFIG, _insort, _bisect_right, _py_fold_into
    global _py_add_visit
    _HANDLERS, _lifecycle, _FOLD_VERSION, _DEFAULT_CONFIG = handlers, lifecycle, fold_version, default_config
    _insort, _bisect_right, _py_fold_into, _py_add_visit = insort, bisect_right, reference, add_visit_reference


def add_visit_in_place(timeline, t, window, max_len):
    """fold._add_visit_in_place."""
    _add_visit(timeline, t, window, max_len)


cdef _add_visit(timeline, t, window, max_len):
    if type(timeline) is not list:
        _py_add_visit(timeline, t, window, max_len)
        return
    cdef list tl = <list>timeline
    slot = t // window
    cdef Py_ssize_t n = len(tl)
    cdef Py_ssize_t j = _bisect_right(tl, t)
    if j < n and tl[j] // window == slot:
        while j + 1 < n and tl[j + 1] // window == slot:
            j += 1
        tl[j] = t                              # the slot's visit, later than t
        return
    if j and tl[j - 1] // window == slot:
        return                                 # the slot's visit, no later than t
    tl.insert(j, t)
    if 0 < max_len < len(tl):
        del tl[:len(tl) - max_len]


def fold_into(p, event, cfg=_UNSET):
    """fold.fold_into: ``event`` folded into ``p`` in place; returns ``p``."""
    if cfg is _UNSET:
        cfg = _DEFAULT_CONFIG
    if type(p) is not dict:
        return _py_fold_into(p, event, cfg)
    cdef dict d = <dict>p
    fb = d.get("_fold")
    if fb is None:
        fb = d["_fold"] = {"v": _FOLD_VERSION, "seq": 0}
    t, ch = event.timestamp, event.channel
    first = d.get("first_seen_at")
    if first is None or t < first:
        d["first_seen_at"] = t
    last = d.get("last_seen_at")
    if last is None or t > last:
        d["last_seen_at"] = last = t
    last_seen = d.get("last_seen")
    if last_seen is None:
        d["last_seen"] = {ch: t}
    elif last_seen.get(ch, t) <= t:
        last_seen[ch] = t
    channels = d.get("channels")
    if channels is None:
        d["channels"] = [ch]
    elif ch not in channels:
        _insort(channels, ch)
    visits = d.get("visits")
    if visits is None:
        d["visits"] = {ch: [t]}
    else:
        timeline = visits.get(ch)
        if timeline is None:
            visits[ch] = [t]
        else:
            _add_visit(timeline, t, cfg.visit_window, cfg.max_visits)
    _HANDLERS[event.type](p, fb, event, cfg)
    d["lifecycle"] = _lifecycle(p, last, cfg) if d.get("orders_count") else "new"
    return p


# ---------------------------------------------------------------- a stored profile as the rules see it
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef enum:
    MAX_DROPPED = 32        # bookkeeping keys dropped in place; more: the Python reference


cdef Py_ssize_t _skip(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The offset just past the MessagePack value at ``p[i]`` (and all it
    holds), or -1 when it is not MessagePack or runs past ``n``.  Walks,
    never builds: one step per header, the items still to skip counted."""
    cdef Py_ssize_t pending = 1, extra
    cdef unsigned char b
    while pending > 0:
        if i >= n:
            return -1
        b = p[i]
        pending -= 1
        if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3:
            i += 1                                      # fixint, nil, false, true
        elif b <= 0x8f:
            pending += 2 * (b & 0x0f)                   # fixmap
            i += 1
        elif b <= 0x9f:
            pending += b & 0x0f                         # fixarray
            i += 1
        elif b <= 0xbf:
            i += 1 + (b & 0x1f)                         # fixstr
        elif b == 0xcc or b == 0xd0:
            i += 2
        elif b == 0xcd or b == 0xd1 or b == 0xd4:
            i += 3
        elif b == 0xd5:
            i += 4
        elif b == 0xca or b == 0xce or b == 0xd2:
            i += 5
        elif b == 0xd6:
            i += 6
        elif b == 0xcb or b == 0xcf or b == 0xd3:
            i += 9
        elif b == 0xd7:
            i += 10
        elif b == 0xd8:
            i += 18
        elif b == 0xc4 or b == 0xd9 or b == 0xc7:       # bin8, str8, ext8: a one-byte length
            if i + 2 > n:
                return -1
            i += (3 if b == 0xc7 else 2) + p[i + 1]
        elif b == 0xc5 or b == 0xda or b == 0xc8:       # bin16, str16, ext16
            if i + 3 > n:
                return -1
            i += (4 if b == 0xc8 else 3) + ((<Py_ssize_t>p[i + 1] << 8) | p[i + 2])
        elif b == 0xc6 or b == 0xdb or b == 0xc9:       # bin32, str32, ext32
            if i + 5 > n:
                return -1
            i += (6 if b == 0xc9 else 5) + _be32(p + i + 1)
        elif b == 0xdc or b == 0xde:                    # array16, map16
            if i + 3 > n:
                return -1
            extra = (<Py_ssize_t>p[i + 1] << 8) | p[i + 2]
            pending += 2 * extra if b == 0xde else extra
            i += 3
        elif b == 0xdd or b == 0xdf:                    # array32, map32
            if i + 5 > n:
                return -1
            extra = _be32(p + i + 1)
            pending += 2 * extra if b == 0xdf else extra
            i += 5
        else:                                           # 0xc1: never used
            return -1
    return i if i <= n else -1


cdef inline Py_ssize_t _be32(const unsigned char *q) noexcept nogil:
    return ((<Py_ssize_t>q[0] << 24) | (<Py_ssize_t>q[1] << 16) | (<Py_ssize_t>q[2] << 8) | q[3])


cdef inline bint _bookkeeping_key(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Whether the map key at ``p[i]`` is text starting with ``_``."""
    cdef unsigned char b = p[i]
    cdef Py_ssize_t at
    if 0xa1 <= b <= 0xbf:
        at = i + 1
    elif b == 0xd9:
        at = i + 2
    elif b == 0xda:
        at = i + 3
    elif b == 0xdb:
        at = i + 5
    else:
        return False
    if at >= n or (b == 0xd9 and p[i + 1] == 0) or (b == 0xda and p[i + 1] == 0 and p[i + 2] == 0) or (
            b == 0xdb and p[i + 1] == 0 and p[i + 2] == 0 and p[i + 3] == 0 and p[i + 4] == 0):
        return False
    return p[at] == 0x5f


def public_bytes(data):
    """``store.reference_public_bytes``: a stored profile (MessagePack
    bytes) without the fold's bookkeeping (the top-level keys that start
    with ``_``, as ``fold.public``), for the decision path, which never
    reads it: ``_fold`` is half of a stored profile's bytes and objects.

    The entries are cut out of the bytes, nothing decoded: the map's header
    written again for the entries left (in the width msgspec would use, so
    msgspec's bytes cut are the bytes it writes for the public profile), the
    rest copied as it is.  Bytes that are not one well-formed MessagePack map, or that hold
    no such key, come back as they are (the same object)."""
    if type(data) is not bytes:
        return data
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i, k, count, hdr, start, size, at, dropped = 0
    cdef Py_ssize_t cut_start[MAX_DROPPED]
    cdef Py_ssize_t cut_end[MAX_DROPPED]
    cdef bint key
    if n == 0:
        return data
    cdef unsigned char b = p[0]
    if 0x80 <= b <= 0x8f:
        count, hdr = b & 0x0f, 1
    elif b == 0xde and n >= 3:
        count, hdr = (<Py_ssize_t>p[1] << 8) | p[2], 3
    elif b == 0xdf and n >= 5:
        count, hdr = _be32(p + 1), 5
    else:
        return data
    i = hdr
    for k in range(count):
        if i >= n:
            return data
        start = i
        key = _bookkeeping_key(p, i, n)
        i = _skip(p, i, n)
        if i < 0:
            return data
        i = _skip(p, i, n)
        if i < 0:
            return data
        if key:
            if dropped == MAX_DROPPED:
                return _reference_public_bytes(data)
            cut_start[dropped] = start
            cut_end[dropped] = i
            dropped += 1
    if i != n or dropped == 0:
        return data
    count -= dropped
    cdef Py_ssize_t width = 1 if count <= 15 else (3 if count <= 0xffff else 5)     # the header msgspec writes
    size = n - hdr + width
    for k in range(dropped):
        size -= cut_end[k] - cut_start[k]
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    if width == 1:
        o[0] = <unsigned char>(0x80 | count)
    elif width == 3:
        o[0], o[1], o[2] = 0xde, (count >> 8) & 0xff, count & 0xff
    else:
        o[0], o[1], o[2], o[3], o[4] = 0xdf, (count >> 24) & 0xff, (count >> 16) & 0xff, (count >> 8) & 0xff, \
            count & 0xff
    at = width
    start = hdr
    for k in range(dropped):
        memcpy(o + at, p + start, cut_start[k] - start)
        at += cut_start[k] - start
        start = cut_end[k]
    memcpy(o + at, p + start, n - start)
    return out


cdef object _reference_public_bytes = None


def setup_public_bytes(reference):
    """Called once by ``store`` with the Python reference (for maps with
    more than MAX_DROPPED bookkeeping keys, which no fold writes)."""
    global _reference_public_bytes
    _reference_public_bytes = reference
