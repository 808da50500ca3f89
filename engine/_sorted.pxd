# cython: language_level=3
"""Searching a sorted C array of doubles, for the compiled modules that
keep one (cimported; nothing to build: an inline function of this .pxd)."""


cdef inline int first_at_or_above(const double *a, int n, double x) noexcept nogil:
    """``bisect.bisect_left(a[:n], x)``: the first index whose value is not
    below ``x`` (``n`` when none is; 0 for NaN, as bisect answers)."""
    cdef int lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
