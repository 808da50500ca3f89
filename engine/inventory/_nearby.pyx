# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled store data for the nearby-stores query.

:class:`StoreTable` holds one load's stores as numbered arrays (numbers in
the order of the store ids, so comparing numbers orders as comparing ids):
positions, names, and whether each is open at a time, answered from C
arrays (each zone's local minute and date, each store's open spans on that
date) that fill in from :func:`engine.inventory.model.local_weekday_minute`
and ``OpeningHours.spans_on`` the first time a minute, a date, is asked.
It answers ``Store.open_at_time`` exactly (tests/inventory/test_store_table.py).

An :class:`ItemIndex` holds the stores that stock one item, sorted by
latitude; a query reads only the latitude band the radius allows and
measures each store there with the same great-circle distance as the rule
kernel and :func:`engine.eval.values.haversine_km` (operation for
operation, so answers equal the pure-Python scan's to the bit).  The
inventory builds one per item on first use and again when that item's
stock changes (availability.py).  :meth:`ItemIndex.nearest` answers in
Python objects (availability.nearby_in); ``select`` answers the compiled
decision path (engine/service/_decide.pyx) in C arrays.

Thread safety: the decision handlers share a table.  Its memos are written
under the GIL with no Python call between the writes that belong
together, and read likewise, so a reader sees a zone's (or a store's)
entry whole, from before or after a refill.
"""
from .._sorted cimport first_at_or_above
from libc.math cimport M_PI, floor
from engine.eval._geo cimport haversine_km
from libc.stdlib cimport malloc, calloc, free

from .model import local_weekday_minute

cdef double DEG2RAD = M_PI / 180.0
cdef double EARTH_RADIUS_KM = 6371.0088
cdef double PAD_RAD = 1e-6            # as geo.PAD_RAD: rounding never drops a store on the rim
cdef long long NO_MINUTE = -(1LL << 62)

cdef enum:
    DAY_SPANS = 4       # open spans a day kept in C a store; a day with more is asked of its hours


cdef void* _alloc(Py_ssize_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef class StoreTable:
    """One load's stores (``{id: Store}``) as numbered arrays."""

    def __cinit__(self, stores):
        cdef int i, z
        self.ids = sorted(stores)
        self.n = len(self.ids)
        self.lat = <double*>_alloc(self.n, sizeof(double))
        self.lon = <double*>_alloc(self.n, sizeof(double))
        self.zone = <int*>_alloc(self.n, sizeof(int))
        self.day_ord = <int*>_alloc(self.n, sizeof(int))
        self.day_n = <int*>_alloc(self.n, sizeof(int))
        self.day_spans = <int*>_alloc(self.n * DAY_SPANS * 2, sizeof(int))
        self.number = {sid: i for i, sid in enumerate(self.ids)}
        self.stores = [stores[sid] for sid in self.ids]
        self.names = [s.name for s in self.stores]
        self.zones = []
        by_name = {}
        for i, s in enumerate(self.stores):
            self.lat[i] = s.lat
            self.lon[i] = s.lon
            if s.tz is None:
                self.zone[i] = -1
            else:
                z = by_name.setdefault(s.tz, len(self.zones))
                if z == len(self.zones):
                    self.zones.append(s.tz)
                self.zone[i] = z
        z = len(self.zones)
        self.zone_key = <long long*>_alloc(z, sizeof(long long))
        self.zone_min = <int*>_alloc(z, sizeof(int))
        self.zone_ord = <int*>_alloc(z, sizeof(int))
        self.zone_dates = [None] * z
        for i in range(z):
            self.zone_key[i] = NO_MINUTE

    def __dealloc__(self):
        free(self.lat)
        free(self.lon)
        free(self.zone)
        free(self.day_ord)
        free(self.day_n)
        free(self.day_spans)
        free(self.zone_key)
        free(self.zone_min)
        free(self.zone_ord)

    def __len__(self):
        return self.n

    def open_at_time(self, store_id, t):
        """``stores[store_id].open_at_time(t)``: True, False, or None for a
        store without a time zone."""
        cdef int state = self.open_state(self.number[store_id], t)
        return None if state == 2 else state == 1

    cdef int open_state(self, int s, double t) except -2:
        """Whether store ``s`` is open at ``t``: 1 open, 0 closed, 2 not
        known (no time zone), by its hours in its zone, dated clauses
        included (``Store.open_at_time``)."""
        cdef int z = self.zone[s], m, o, i, n
        cdef long long key
        cdef int *span
        if z < 0:
            return 2
        if not -1e17 < t < 1e17:                            # NaN, infinities, no year: the store's own answer
            found = self.stores[s].open_at_time(t)          # (or its error)
            return 2 if found is None else 1 if found else 0
        # the minute local_weekday_minute keys by, int(t // 60): floor(t / 60)
        # is the same, as t / 60 cannot round up to a whole minute (60 < 64:
        # t one ulp under 60k divides to over half an ulp of k under k)
        key = <long long>floor(t / 60.0)
        if self.zone_key[z] != key:
            wm = local_weekday_minute(self.zones[z], t)       # Python: may let another thread run
            m, o, day = wm[1], wm[2].toordinal(), wm[2]
            self.zone_min[z] = m                            # the entry, whole
            self.zone_ord[z] = o
            self.zone_dates[z] = day
            self.zone_key[z] = key
        else:
            m, o, day = self.zone_min[z], self.zone_ord[z], self.zone_dates[z]
        if self.day_ord[s] != o:
            spans = self.stores[s].hours.spans_on(day)        # Python
            n = len(spans)
            if n > DAY_SPANS:
                n = -1
            else:
                span = self.day_spans + s * DAY_SPANS * 2
                for i in range(n):
                    span[2 * i] = spans[i][0]
                    span[2 * i + 1] = spans[i][1]
            self.day_n[s] = n
            self.day_ord[s] = o
        n = self.day_n[s]
        if n < 0:                                           # more spans than kept: its hours answer
            return 1 if self.stores[s].hours.open_on(day, m) else 0
        span = self.day_spans + s * DAY_SPANS * 2
        for i in range(n):
            if span[2 * i] <= m < span[2 * i + 1]:
                return 1
        return 0


cdef class ItemIndex:
    """The stores holding one item, by latitude."""

    def __cinit__(self, entries, StoreTable table=None):
        """``entries``: (lat, lon, store id, quantity) of every store holding
        the item; ``table``: the stores' numbers, for :meth:`select`."""
        cdef int i
        rows = sorted(entries)
        self.n = len(rows)
        self.lat = <double*>_alloc(self.n, sizeof(double))
        self.lon = <double*>_alloc(self.n, sizeof(double))
        self.qty = <long long*>_alloc(self.n, sizeof(long long))
        self.num = <int*>_alloc(self.n, sizeof(int))
        self.ids = []
        number = table.number if table is not None else {}
        for i, (la, lo, sid, q) in enumerate(rows):
            self.lat[i] = la
            self.lon[i] = lo
            self.qty[i] = q
            self.num[i] = number.get(sid, -1)
            self.ids.append(sid)

    def __dealloc__(self):
        free(self.lat)
        free(self.lon)
        free(self.qty)
        free(self.num)

    def __len__(self):
        return self.n

    cdef int _first_at_or_above(self, double lo_lat) noexcept:
        """The first store (by latitude) at or above ``lo_lat``: a binary search."""
        return first_at_or_above(self.lat, self.n, lo_lat)

    def within(self, double lat, double lon, double radius_km, long long min_quantity):
        """[(distance km, store id, quantity)] of the stores within the radius
        holding at least ``min_quantity``, in no particular order."""
        cdef double band = (radius_km / EARTH_RADIUS_KM + PAD_RAD) / DEG2RAD
        cdef double lo_lat = lat - band, hi_lat = lat + band, d
        cdef int i = self._first_at_or_above(lo_lat)
        out = []
        while i < self.n and self.lat[i] <= hi_lat:
            if self.qty[i] >= min_quantity:
                d = haversine_km(lat, lon, self.lat[i], self.lon[i])
                if d <= radius_km:
                    out.append((d, self.ids[i], self.qty[i]))
            i += 1
        return out

    def nearest(self, double lat, double lon, double radius_km, long long min_quantity, Py_ssize_t limit,
                preferred=None, keep=None):
        """What :meth:`within` finds, as the decision path wants it: nearest
        first (equal distances by store id, then quantity, as sorting the
        tuples does), the ``preferred`` store first when it is among them,
        at most ``limit``.  Equal to ``sorted(within(...))`` with the
        preferred hit moved to the front, cut at ``limit``, without building
        and sorting a tuple for every store in the radius.

        ``keep``: a function of a store id; a hit it says no to is left out
        before the cut, as if it were not in the radius (availability's
        ``_open_only``: only stores open now).  It is asked about the hits
        in their order, until ``limit`` are kept: not about every store in
        the radius."""
        cdef _Hits h
        cdef int j
        cdef double d
        if limit <= 0:
            return []
        _scan(self, &h, lat, lon, radius_km, min_quantity, -1, preferred)
        out = []
        try:
            if h.pref >= 0 and (keep is None or keep(self.ids[h.pref])):
                out.append((h.pref_dist, self.ids[h.pref], self.qty[h.pref]))
            while len(out) < limit and h.m > 0:
                j = _take(self, &h, False, &d)
                if keep is None or keep(self.ids[j]):
                    out.append((d, self.ids[j], self.qty[j]))
            return out
        finally:
            free(h.dist)
            free(h.at)

    cdef int select(self, StoreTable table, double lat, double lon, double radius_km, long long min_quantity,
                    int limit, int preferred, bint open_only, double open_at, int *out, double *dist_out,
                    int *opened, bint *any_in_stock) except -1:
        """:meth:`nearest` for the compiled decision path, in C: the rows
        (indexes into this index) of at most ``limit`` stores, their
        distances and, with ``open_only``, their ``table.open_state`` at
        ``open_at`` (closed ones left out, as ``keep`` does); ``preferred``
        is a store number (-1: none).  Ties go by store number, which is the
        store ids' order.  ``any_in_stock``: whether any store in the radius
        holds ``min_quantity``, open or not.  Returns how many were kept.
        Built with the ``table`` it is given (``num``)."""
        cdef _Hits h
        cdef int j, kept = 0, state = -1
        cdef double d
        any_in_stock[0] = False
        if limit <= 0:
            return 0
        _scan(self, &h, lat, lon, radius_km, min_quantity, preferred, None)
        try:
            any_in_stock[0] = h.pref >= 0 or h.m > 0
            if h.pref >= 0:
                if open_only:
                    state = table.open_state(self.num[h.pref], open_at)
                if state != 0:
                    out[0], dist_out[0], opened[0] = h.pref, h.pref_dist, state
                    kept = 1
            while kept < limit and h.m > 0:
                j = _take(self, &h, True, &d)
                if open_only:
                    state = table.open_state(self.num[j], open_at)
                if state != 0:
                    out[kept], dist_out[kept], opened[kept] = j, d, state
                    kept += 1
            return kept
        finally:
            free(h.dist)
            free(h.at)


cdef struct _Hits:
    double *dist            # the hits' distances ...
    int *at                 # ... and rows, the preferred store's aside; m of them left
    int m
    int pref                # the preferred store's row (-1: not among the hits)
    double pref_dist


cdef int _scan(ItemIndex index, _Hits *h, double lat, double lon, double radius_km, long long min_quantity,
               int preferred_num, object preferred_id) except -1:
    """The stores of the radius's latitude band within the radius holding
    ``min_quantity``, measured, into ``h`` (the caller frees ``h.dist`` and
    ``h.at``); the preferred one (by number, or by id when
    ``preferred_num`` is -1) set aside."""
    cdef double band = (radius_km / EARTH_RADIUS_KM + PAD_RAD) / DEG2RAD
    cdef double lo_lat = lat - band, hi_lat = lat + band, d
    cdef int lo = index._first_at_or_above(lo_lat), i
    h.m, h.pref, h.pref_dist = 0, -1, 0.0
    h.dist = <double*>malloc(max(1, index.n - lo) * sizeof(double))
    h.at = <int*>malloc(max(1, index.n - lo) * sizeof(int))
    if h.dist == NULL or h.at == NULL:
        free(h.dist)
        free(h.at)
        raise MemoryError()
    i = lo
    while i < index.n and index.lat[i] <= hi_lat:
        if index.qty[i] >= min_quantity:
            d = haversine_km(lat, lon, index.lat[i], index.lon[i])
            if d <= radius_km:
                if h.pref < 0 and (index.num[i] == preferred_num if preferred_num >= 0 else
                                   preferred_id is not None and index.ids[i] == preferred_id):
                    h.pref, h.pref_dist = i, d
                else:
                    h.dist[h.m] = d
                    h.at[h.m] = i
                    h.m += 1
        i += 1
    return 0


cdef int _take(ItemIndex index, _Hits *h, bint by_number, double *d) except -1:
    """The nearest hit left (equal distances by store number or id, then
    quantity), taken out of ``h``: its row, its distance into ``d``.  A
    selection, as the limit is a handful and the hits a few dozen."""
    cdef int best = 0, k, j
    for k in range(1, h.m):
        if (_ahead(index, h.dist[k], h.at[k], h.dist[best], h.at[best]) if by_number else
                _before(index, h.dist[k], h.at[k], h.dist[best], h.at[best])):
            best = k
    j, d[0] = h.at[best], h.dist[best]
    h.m -= 1
    h.dist[best] = h.dist[h.m]
    h.at[best] = h.at[h.m]
    return j


cdef bint _before(ItemIndex index, double d1, int i1, double d2, int i2) except -1:
    """(d1, id, qty) < (d2, id, qty) as tuples compare."""
    if d1 != d2:
        return d1 < d2
    a, b = index.ids[i1], index.ids[i2]
    if a != b:
        return a < b
    return index.qty[i1] < index.qty[i2]


cdef inline bint _ahead(ItemIndex index, double d1, int i1, double d2, int i2) noexcept:
    """(d1, store, qty) < (d2, store, qty), the stores by number."""
    if d1 != d2:
        return d1 < d2
    if index.num[i1] != index.num[i2]:
        return index.num[i1] < index.num[i2]
    return index.qty[i1] < index.qty[i2]
