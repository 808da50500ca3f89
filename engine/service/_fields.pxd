# A msgspec Struct's field (or an attribute a class keeps in __slots__) read
# straight from its slot, for the compiled decision path.  ``obj.field`` from Cython is the generic attribute lookup:
# the type's method cache (_PyType_Lookup), the member descriptor, its getter,
# ~180 instructions and, in the server where a Decide runs with cold caches,
# a cache line of the method cache per distinct (type, name).  A Struct keeps
# each field in a slot at a fixed offset that its member descriptor records;
# ``field_slot`` looks that offset up once (at import) and ``field`` reads
# the slot when the object is exactly that type, else takes the generic
# path (a subclass, a stand-in, a field msgspec ever stores otherwise).
from cpython.object cimport PyObject, PyTypeObject, Py_TYPE


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    int T_OBJECT_EX


cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    PyTypeObject PyMemberDescr_Type


cdef struct Slot:
    PyTypeObject *owner      # the exact type whose slot this is (NULL: always the generic path)
    Py_ssize_t offset


cdef inline Slot field_slot(object cls, str name, list generic) except *:
    """Where ``cls`` keeps the field ``name``: its member descriptor's
    offset, when it is an object slot of ``cls`` itself; otherwise the
    field is read through ``getattr`` and ``cls.name`` goes into
    ``generic`` (the module's ``generic_fields()``: a test wants none)."""
    cdef Slot s
    s.owner = NULL
    s.offset = 0
    d = cls.__dict__.get(name) if isinstance(cls, type) else None
    if d is not None and Py_TYPE(d) is &PyMemberDescr_Type:
        if (<PyMemberDescrObject *> d).d_member.type == T_OBJECT_EX:
            s.owner = <PyTypeObject *> cls
            s.offset = (<PyMemberDescrObject *> d).d_member.offset
    if s.owner is NULL:
        generic.append(f"{getattr(cls, '__name__', cls)}.{name}")
    return s


cdef inline object field(object obj, Slot s, str name):
    """``getattr(obj, name)``, from the slot when ``obj`` is exactly the type."""
    cdef PyObject *v
    if Py_TYPE(obj) is s.owner:
        v = (<PyObject **> ((<char *> <PyObject *> obj) + s.offset))[0]
        if v is not NULL:
            return <object> v
    return getattr(obj, name)
