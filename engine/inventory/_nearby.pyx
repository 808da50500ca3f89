# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-item store index: which stores holding one (sku, size) lie
within R km.

An :class:`ItemIndex` holds the stores that stock one item, sorted by
latitude; a query reads only the latitude band the radius allows and
measures each store there with the same great-circle distance as the rule
kernel and :func:`engine.eval.values.haversine_km` (operation for
operation, so answers equal the pure-Python scan's to the bit).  The
inventory builds one per item on first use and again when that item's
stock changes (availability.py).
"""
from libc.math cimport M_PI
from engine.eval._geo cimport haversine_km
from libc.stdlib cimport malloc, free

cdef double DEG2RAD = M_PI / 180.0
cdef double EARTH_RADIUS_KM = 6371.0088
cdef double PAD_RAD = 1e-6            # as geo.PAD_RAD: rounding never drops a store on the rim


cdef class ItemIndex:
    cdef int n
    cdef double *lat
    cdef double *lon
    cdef long long *qty
    cdef list ids

    def __cinit__(self, entries):
        """``entries``: (lat, lon, store id, quantity) of every store holding the item."""
        rows = sorted(entries)
        self.n = len(rows)
        self.lat = <double*>malloc(max(1, self.n) * sizeof(double))
        self.lon = <double*>malloc(max(1, self.n) * sizeof(double))
        self.qty = <long long*>malloc(max(1, self.n) * sizeof(long long))
        if self.lat == NULL or self.lon == NULL or self.qty == NULL:
            raise MemoryError()
        self.ids = []
        cdef int i
        for i, (la, lo, sid, q) in enumerate(rows):
            self.lat[i] = la
            self.lon[i] = lo
            self.qty[i] = q
            self.ids.append(sid)

    def __dealloc__(self):
        free(self.lat)
        free(self.lon)
        free(self.qty)

    def __len__(self):
        return self.n

    cdef int _first_at_or_above(self, double lo_lat):
        """The first store (by latitude) at or above ``lo_lat``: a binary search."""
        cdef int lo = 0, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.lat[mid] < lo_lat:
                lo = mid + 1
            else:
                hi = mid
        return lo

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
        cdef double band = (radius_km / EARTH_RADIUS_KM + PAD_RAD) / DEG2RAD
        cdef double lo_lat = lat - band, hi_lat = lat + band, d
        cdef int lo, i, j, k, best, m = 0, pref = -1
        cdef double *dist
        cdef int *at
        if limit <= 0:
            return []
        lo = self._first_at_or_above(lo_lat)
        dist = <double*>malloc(max(1, self.n - lo) * sizeof(double))
        at = <int*>malloc(max(1, self.n - lo) * sizeof(int))
        if dist == NULL or at == NULL:
            free(dist)
            free(at)
            raise MemoryError()
        out = []
        try:
            i = lo
            while i < self.n and self.lat[i] <= hi_lat:
                if self.qty[i] >= min_quantity:
                    d = haversine_km(lat, lon, self.lat[i], self.lon[i])
                    if d <= radius_km:
                        if pref < 0 and preferred is not None and self.ids[i] == preferred:
                            pref = i
                            if keep is None or keep(self.ids[i]):
                                out.append((d, self.ids[i], self.qty[i]))
                        else:
                            dist[m] = d
                            at[m] = i
                            m += 1
                i += 1
            # selection of the nearest: limit is a handful, the hits a few dozen
            while len(out) < limit and m > 0:
                best = 0
                for k in range(1, m):
                    if _before(self, dist[k], at[k], dist[best], at[best]):
                        best = k
                j = at[best]
                if keep is None or keep(self.ids[j]):
                    out.append((dist[best], self.ids[j], self.qty[j]))
                m -= 1
                dist[best] = dist[m]
                at[best] = at[m]
            return out
        finally:
            free(dist)
            free(at)


cdef bint _before(ItemIndex index, double d1, int i1, double d2, int i2) except -1:
    """(d1, id, qty) < (d2, id, qty) as tuples compare."""
    if d1 != d2:
        return d1 < d2
    a, b = index.ids[i1], index.ids[i2]
    if a != b:
        return a < b
    return index.qty[i1] < index.qty[i2]
