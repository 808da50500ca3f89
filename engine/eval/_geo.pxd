# Geography shared by the compiled modules (cimported; inline functions of
# this .pxd, nothing to build):
#
# * the great-circle distance, shared by the kernel and the inventory's store
#   index: engine.eval.values.haversine_km, operation for operation, so every
#   evaluator and the pure-Python store scan agree to the bit;
# * a number and a point read from the values a profile or a request holds,
#   as engine.eval.values.to_number and to_geo read them, shared by the
#   kernel and the Decide's nearby-stores search (engine.service._decide).
from cpython.dict cimport PyDict_CheckExact
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_AsDouble
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_CheckExact
from libc.math cimport sin, cos, asin, sqrt, isfinite, M_PI


cdef extern from "Python.h":
    bint PyFloat_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    PyObject* _GetItem "PyDict_GetItemWithError" (object d, object key) except? NULL


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


cdef inline double as_number(object v, bint *ok):
    """values.to_number: exact int/float, finite (``ok`` says whether)."""
    cdef double x
    if PyFloat_CheckExact(v):
        x = PyFloat_AS_DOUBLE(v)
    elif PyLong_CheckExact(v):
        try:
            x = PyLong_AsDouble(v)
        except OverflowError:
            ok[0] = False
            return 0.0
    else:
        ok[0] = False
        return 0.0
    ok[0] = isfinite(x)
    return x


cdef inline bint point_of(object v, double *lat, double *lon) except -1:
    """values.to_geo into ``lat``/``lon``: whether ``v`` is a point (a dict
    with "lat" and "lon", or a list or tuple of two, numbers in range)."""
    cdef bint ok1 = True, ok2 = True
    cdef PyObject* p
    cdef PyObject* q
    if PyDict_CheckExact(v):
        p = _GetItem(v, "lat")
        q = _GetItem(v, "lon")
        if p == NULL or q == NULL:
            return False
        lat[0] = as_number(<object>p, &ok1)
        lon[0] = as_number(<object>q, &ok2)
    elif (PyList_CheckExact(v) or PyTuple_CheckExact(v)) and len(v) == 2:
        lat[0] = as_number(v[0], &ok1)
        lon[0] = as_number(v[1], &ok2)
    else:
        return False
    return ok1 and ok2 and -90.0 <= lat[0] <= 90.0 and -180.0 <= lon[0] <= 180.0
