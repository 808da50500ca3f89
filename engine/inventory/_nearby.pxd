# The compiled store data the decision path reads (engine/service/_decide.pyx
# cimports these): the stores as numbered arrays and one item's index.

cdef class StoreTable:
    cdef readonly int n
    cdef double *lat
    cdef double *lon
    cdef int *zone              # the store's time zone (a number into zones); -1: none
    cdef int *day_ord           # the local date (ordinal) whose open spans day_spans holds; 0: none yet
    cdef int *day_n             # how many; -1: more than the table keeps (asked of the hours in Python)
    cdef int *day_spans         # DAY_SPANS (open, close) minute pairs a store
    cdef long long *zone_key    # the minute since the epoch each zone's local time is held for
    cdef int *zone_min          # the local minute after midnight then
    cdef int *zone_ord          # the local date's ordinal then
    cdef readonly list ids, names, stores, zones
    cdef list zone_dates        # the local date (a datetime.date) then
    cdef readonly dict number   # store id -> its number (numbers follow the ids' order)

    cdef int open_state(self, int s, double t) except -2


cdef class ItemIndex:
    cdef int n
    cdef double *lat
    cdef double *lon
    cdef long long *qty
    cdef int *num               # the store's number in its StoreTable; -1: built without one
    cdef list ids

    cdef int _first_at_or_above(self, double lo_lat) noexcept
    cdef int select(self, StoreTable table, double lat, double lon, double radius_km, long long min_quantity,
                    int limit, int preferred, bint open_only, double open_at, int *out, double *dist_out,
                    int *opened, bint *any_in_stock) except -1
