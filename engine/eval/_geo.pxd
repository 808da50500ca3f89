# The great-circle distance, shared by the kernel and the inventory's store
# index: engine.eval.values.haversine_km, operation for operation, so every
# evaluator and the pure-Python store scan agree to the bit.
from libc.math cimport sin, cos, asin, sqrt, M_PI


cdef inline double haversine_km(double lat1d, double lon1d, double lat2d, double lon2d) noexcept nogil:
    cdef double deg2rad = M_PI / 180.0
    cdef double lat1 = lat1d * deg2rad, lon1 = lon1d * deg2rad
    cdef double lat2 = lat2d * deg2rad, lon2 = lon2d * deg2rad
    cdef double s1 = sin((lat2 - lat1) * 0.5)
    cdef double s2 = sin((lon2 - lon1) * 0.5)
    cdef double h = s1 * s1 + cos(lat1) * cos(lat2) * s2 * s2
    if h > 1.0:
        h = 1.0
    return 2.0 * 6371.0088 * asin(sqrt(h))
