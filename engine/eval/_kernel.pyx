# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, nonecheck=False
"""The compiled kernel: runs a Program over a profile and a request.

The program is packed into C arrays once (``Kernel.__cinit__``); a call
loads the attributes it needs from the input dicts on first use, evaluates
nodes at most once (results are stamped with the call's epoch), asks the rule
index for candidates word by word, and returns the same structure as the
pure-Python twin (``pykernel.PyKernel.run``).  Semantics mirror
``engine/eval/values.py`` exactly; tests run both and compare.
"""
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset
from libc.math cimport sin, cos, asin, sqrt, isfinite, isnan, floor, fabs, M_PI, NAN
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t
from cpython.object cimport PyObject
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_Tailmatch, PyUnicode_Contains
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble

include "_opcodes.pxi"

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil

cdef extern from *:
    """
    #include <math.h>
    /* out[i] = a OP b over n elements, NaN-encoded (missing = NaN, a
       non-finite result is missing); a and b are rows (va, vb) or the
       scalars ca, cb.  Plain loops over restrict pointers so the compiler
       vectorizes them. */
    #define MAPLE_LOOP(EXPR) for (int i = 0; i < n; i++) { double x = (EXPR); out[i] = isfinite(x) ? x : NAN; }
    #define MAPLE_BINOP(NAME, OP) \
    static void NAME(double *restrict out, const double *restrict a, const double *restrict b, \
                     int n, int va, int vb, double ca, double cb) { \
        if (va && vb) { MAPLE_LOOP(a[i] OP b[i]) } \
        else if (va) { MAPLE_LOOP(a[i] OP cb) } \
        else { MAPLE_LOOP(ca OP b[i]) } \
    }
    MAPLE_BINOP(maple_vadd, +)
    MAPLE_BINOP(maple_vsub, -)
    MAPLE_BINOP(maple_vmul, *)
    MAPLE_BINOP(maple_vdiv, /)
    """
    void maple_vadd(double *out, const double *a, const double *b, int n, int va, int vb, double ca, double cb) nogil
    void maple_vsub(double *out, const double *a, const double *b, int n, int va, int vb, double ca, double cb) nogil
    void maple_vmul(double *out, const double *a, const double *b, int n, int va, int vb, double ca, double cb) nogil
    void maple_vdiv(double *out, const double *a, const double *b, int n, int va, int vb, double ca, double cb) nogil

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* SHA-256 (FIPS 180-4) of a || b, its first 8 bytes as a big-endian
       integer: an experiment's bucket (engine.eval.values.bucket) without a
       hashlib object per customer.  The tests hold it to hashlib. */
    static const uint32_t maple_sha_k[64] = {
        0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
        0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
        0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
        0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
        0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
        0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
        0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
        0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
    #define MAPLE_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
    static void maple_sha_block(uint32_t *h, const unsigned char *p) {
        uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
        for (int i = 0; i < 16; i++)
            w[i] = ((uint32_t)p[4*i] << 24) | ((uint32_t)p[4*i+1] << 16) | ((uint32_t)p[4*i+2] << 8) | p[4*i+3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = MAPLE_ROTR(w[i-15], 7) ^ MAPLE_ROTR(w[i-15], 18) ^ (w[i-15] >> 3);
            uint32_t s1 = MAPLE_ROTR(w[i-2], 17) ^ MAPLE_ROTR(w[i-2], 19) ^ (w[i-2] >> 10);
            w[i] = w[i-16] + s0 + w[i-7] + s1;
        }
        a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
        for (int i = 0; i < 64; i++) {
            t1 = k + (MAPLE_ROTR(e, 6) ^ MAPLE_ROTR(e, 11) ^ MAPLE_ROTR(e, 25)) + ((e & f) ^ (~e & g))
                 + maple_sha_k[i] + w[i];
            t2 = (MAPLE_ROTR(a, 2) ^ MAPLE_ROTR(a, 13) ^ MAPLE_ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
    static uint64_t maple_sha256_head64(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
        uint32_t h[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
        unsigned char block[64];
        size_t fill = 0, total = na + nb;
        const unsigned char *parts[2] = {a, b};
        size_t sizes[2] = {na, nb};
        for (int j = 0; j < 2; j++) {
            const unsigned char *p = parts[j];
            size_t n = sizes[j];
            while (n) {
                size_t take = 64 - fill < n ? 64 - fill : n;
                memcpy(block + fill, p, take);
                fill += take; p += take; n -= take;
                if (fill == 64) { maple_sha_block(h, block); fill = 0; }
            }
        }
        block[fill++] = 0x80;
        if (fill > 56) {
            memset(block + fill, 0, 64 - fill);
            maple_sha_block(h, block);
            fill = 0;
        }
        memset(block + fill, 0, 56 - fill);
        uint64_t bits = (uint64_t)total * 8;
        for (int i = 0; i < 8; i++)
            block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
        maple_sha_block(h, block);
        return ((uint64_t)h[0] << 32) | h[1];
    }
    """
    uint64_t maple_sha256_head64(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) nogil

cdef extern from "Python.h":
    const char* _AsUTF8AndSize "PyUnicode_AsUTF8AndSize" (object text, Py_ssize_t *size) except NULL
    char* PyBytes_AS_STRING(object b)
    Py_ssize_t PyBytes_GET_SIZE(object b)

cdef extern from "Python.h":
    # borrowed reference; NULL without an exception when the key is absent
    PyObject* _GetItem "PyDict_GetItemWithError" (object d, object key) except? NULL
    PyObject* _GetItemP "PyDict_GetItemWithError" (PyObject* d, PyObject* key) except? NULL
    bint _IsDict "PyDict_CheckExact" (PyObject* o)
    bint _IsFloat "PyFloat_CheckExact" (PyObject* o)
    bint _IsLong "PyLong_CheckExact" (PyObject* o)
    bint _IsStr "PyUnicode_CheckExact" (PyObject* o)
    double _FloatValue "PyFloat_AS_DOUBLE" (PyObject* o)
    long long _AsLongLong "PyLong_AsLongLong" (PyObject* o) except? -1
    PyObject* _None "Py_None"
    PyObject* _True "Py_True"
    PyObject* _False "Py_False"
    bint PyFloat_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyDict_CheckExact(object o)
    bint PyList_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    bint PyAnySet_CheckExact(object o)
    Py_ssize_t PY_SSIZE_T_MAX

from sys import intern as _intern

from . import values as _values

from ._geo cimport as_number, haversine_km, point_of

# slot kinds (engine/ir/program.py)
DEF S_NUM = 0
DEF S_STR = 1
DEF S_BOOL = 2
DEF S_GEO = 3
DEF S_SET = 4
DEF S_MAP = 5
DEF S_TIMELINE = 6
DEF S_RECORD = 7
# node kinds
DEF K_BOOL = 0
DEF K_NUM = 1
DEF K_STR = 2
DEF K_GEO = 3

compiled = True

#: why a decision has no winner: nothing matched, held out, capped
_STATUS = ("", "holdout", "capped")


def sha256_head64(bytes a, bytes b):
    """The first 8 bytes of SHA-256(a + b) as a big-endian integer, by the
    kernel's own SHA-256 (what an experiment's bucket hashes; the tests hold
    it to hashlib)."""
    return maple_sha256_head64(<const unsigned char*>PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a),
                               <const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef object _utf8_or_none(str text):
    """``text`` as UTF-8 bytes; None for a str that has none (a lone surrogate)."""
    try:
        return text.encode("utf-8")
    except UnicodeError:
        return None


cdef void* _alloc(size_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef class _State:
    def __cinit__(self, int n_nodes, int n_slots, int max_attrs, int max_words, int max_set_words,
                  int max_top, int n_templates=0):
        cdef int i
        self.epoch = 0
        self.cand_rank = <int32_t*>_alloc(max_top + 1, sizeof(int32_t))
        self.cand_score = <double*>_alloc(max_top + 1, sizeof(double))
        self.cand_ok = <int8_t*>_alloc(max_top + 1, sizeof(int8_t))
        self.batch_pos = <int32_t*>_alloc(max_top + 1, sizeof(int32_t))
        self.batch_pbase = <int32_t*>_alloc(max_top + 1, sizeof(int32_t))
        self.bv = <double*>_alloc((max_top + 1) * 32 if n_templates else 1, sizeof(double))
        self.pv = <double*>_alloc(32, sizeof(double))
        self.n_nodes = n_nodes
        self.n_slots = n_slots
        self.n_epoch = <int64_t*>_alloc(n_nodes, sizeof(int64_t))
        self.n_ok = <int8_t*>_alloc(n_nodes, sizeof(int8_t))
        self.n_num = <double*>_alloc(n_nodes, sizeof(double))
        self.n_num2 = <double*>_alloc(n_nodes, sizeof(double))
        self.n_sid = <int64_t*>_alloc(n_nodes, sizeof(int64_t))
        self.s_epoch = <int64_t*>_alloc(n_slots, sizeof(int64_t))
        self.s_ok = <int8_t*>_alloc(n_slots, sizeof(int8_t))
        self.s_num = <double*>_alloc(n_slots, sizeof(double))
        self.s_num2 = <double*>_alloc(n_slots, sizeof(double))
        self.s_sid = <int64_t*>_alloc(n_slots, sizeof(int64_t))
        self.s_obj = [None] * n_slots
        self.rows = <uint64_t**>_alloc(max_attrs, sizeof(uint64_t*))
        self.setacc = <uint64_t*>_alloc(max_set_words, sizeof(uint64_t))
        self.mask = <uint64_t*>_alloc(max_words, sizeof(uint64_t))
        self.top_rank = <int32_t*>_alloc(max_top + 1, sizeof(int32_t))
        self.top_score = <double*>_alloc(max_top + 1, sizeof(double))
        for i in range(n_nodes):
            self.n_epoch[i] = -1
        for i in range(n_slots):
            self.s_epoch[i] = -1
        self.dyn_ids = {}
        self.dyn_strs = []

    def __dealloc__(self):
        free(self.n_epoch); free(self.n_ok); free(self.n_num); free(self.n_num2); free(self.n_sid)
        free(self.s_epoch); free(self.s_ok); free(self.s_num); free(self.s_num2); free(self.s_sid)
        free(self.rows); free(self.setacc); free(self.mask); free(self.top_rank); free(self.top_score)
        free(self.cand_rank); free(self.cand_score); free(self.cand_ok); free(self.batch_pos)
        free(self.batch_pbase)
        free(self.bv); free(self.pv)


cdef class _Decision:
    def __dealloc__(self):
        free(self.cond); free(self.residual); free(self.exact); free(self.score); free(self.tpl)
        free(self.tpl_params)
        free(self.req_start); free(self.req_count); free(self.emit_start); free(self.emit_count)
        free(self.caps); free(self.exps)
        free(self.attr_slot); free(self.attr_kind); free(self.attr_missing); free(self.attr_other)
        free(self.attr_cls_start); free(self.attr_strcls); free(self.attr_th_start)
        free(self.attr_th_count); free(self.attr_base)
        free(self.class_offsets); free(self.thresholds); free(self.bits)


cdef int32_t* _ints(values) except NULL:
    cdef Py_ssize_t n = len(values)
    cdef int32_t* p = <int32_t*>_alloc(n, sizeof(int32_t))
    for i in range(n):
        p[i] = values[i]
    return p


cdef double* _doubles(values) except NULL:
    cdef Py_ssize_t n = len(values)
    cdef double* p = <double*>_alloc(n, sizeof(double))
    for i in range(n):
        p[i] = values[i]
    return p


cdef class Kernel:
    """Evaluates a Program; build once, call ``run`` many times."""

    def __cinit__(self, program, bint use_index=True):
        cdef int i, j, n
        self.program = program
        self.use_index = use_index
        self.n_nodes = len(program.op)
        self.n_slots = len(program.slots)
        self.n_strings = len(program.strings)
        self.op = _ints(program.op)
        self.a = _ints(program.a)
        self.b = _ints(program.b)
        self.c = _ints(program.c)
        self.k = _doubles(program.k)
        self.kind = <int8_t*>_alloc(self.n_nodes, sizeof(int8_t))
        for i in range(self.n_nodes):
            self.kind[i] = program.kind[i]
        self.args = _ints(program.args)
        self.slot_kind = <int8_t*>_alloc(self.n_slots, sizeof(int8_t))
        self.slot_vkind = <int8_t*>_alloc(self.n_slots, sizeof(int8_t))
        self.slot_ts = <int8_t*>_alloc(self.n_slots, sizeof(int8_t))
        self.slot_root = <int8_t*>_alloc(self.n_slots, sizeof(int8_t))
        self.slot_paths = []
        keys = []
        self.path_start = <int32_t*>_alloc(self.n_slots, sizeof(int32_t))
        self.path_len = <int32_t*>_alloc(self.n_slots, sizeof(int32_t))
        for i, s in enumerate(program.slots):
            self.path_start[i] = len(keys)
            self.path_len[i] = len(s.path)
            # interned: msgpack interns a stored profile's keys, so the walk's lookups match by
            # identity without reading the cached profile's key objects
            keys.extend([_intern(k) if type(k) is str else k for k in s.path])   # (a str subclass cannot be)
            self.slot_kind[i] = s.kind
            self.slot_vkind[i] = s.value_kind
            self.slot_ts[i] = s.timestamp
            self.slot_root[i] = 0 if s.root == "profile" else 1
            self.slot_paths.append(tuple(s.path))
        self.path_key_list = keys
        self.path_keys = <PyObject**>_alloc(len(keys), sizeof(PyObject*))
        for i in range(len(keys)):
            self.path_keys[i] = <PyObject*>keys[i]
        # interned for the same reason: a map's key (a channel, a category) looked up by identity
        self.strings = [_intern(x) if type(x) is str else x for x in program.strings]
        self.string_ids = {_intern(x) if type(x) is str else x: i for x, i in program.string_ids.items()}
        self.string_ids_p = <PyObject*>self.string_ids
        self.n_lists = len(program.lists)
        self.list_sids = <int64_t**>_alloc(self.n_lists, sizeof(int64_t*))
        self.list_nums = <double**>_alloc(self.n_lists, sizeof(double*))
        self.list_len = <int32_t*>_alloc(self.n_lists, sizeof(int32_t))
        self.list_kind = <int8_t*>_alloc(self.n_lists, sizeof(int8_t))
        for i, (items, lk) in enumerate(zip(program.lists, program.list_kinds)):
            n = len(items)
            self.list_len[i] = n
            self.list_kind[i] = lk
            if lk == K_STR:
                self.list_sids[i] = <int64_t*>_alloc(n, sizeof(int64_t))
                for j in range(n):
                    self.list_sids[i][j] = items[j]
            else:
                self.list_nums[i] = <double*>_alloc(n, sizeof(double))
                for j in range(n):
                    self.list_nums[i][j] = items[j]
        self.geo_lat = _doubles([g[0] for g in program.geos])
        self.geo_lon = _doubles([g[1] for g in program.geos])
        self.experiments = [(x.salt, x.holdout_bp, x.variants) for x in program.experiments]
        self.exp_prefix = [_utf8_or_none(x.salt + ":") for x in program.experiments]
        self.assignments = [{} for _ in program.experiments]
        self.assign_variant = _values.assign_variant
        self.parse_time = _values.to_timestamp
        reqs = []
        self.param_list = []
        self.decisions = []
        self.max_attrs = 1
        self.max_words = 1
        self.max_set_words = 1
        self.max_top = 1
        for d in program.decisions:
            self.decisions.append(self._pack_decision(d, reqs))
        self.reqs = _ints(reqs)
        self.params = _doubles(self.param_list)
        code = [c for t in program.templates for c in t.code]
        self.n_templates = len(program.templates)
        self.tpl_start = _ints([sum(len(t.code) for t in program.templates[:i])
                                for i in range(len(program.templates))])
        self.tpl_len = _ints([len(t.code) for t in program.templates])
        self.tpl_res = _ints([t.result for t in program.templates])
        self.tpl_pro = _ints([t.n_pro for t in program.templates])
        self.tc_k = _doubles([c[3] for c in code])
        self.tc_op = _ints([c[0] for c in code])
        self.tc_a = _ints([c[1] for c in code])
        self.tc_b = _ints([c[2] for c in code])
        self.state = self._new_state()

    cdef _Decision _pack_decision(self, d, list reqs):
        cdef _Decision D = _Decision()
        cdef int i, n = len(d.candidates)
        D.position = d.position
        D.kind = {"value": 0, "record": 1, "offer": 2}[d.kind]
        D.policy = {"first": 0, "best": 1, "all": 2}[d.policy]
        D.top = d.top
        D.n_cands = n
        D.cond = _ints([x.cond for x in d.candidates])
        D.residual = _ints([x.residual for x in d.candidates])
        D.exact = <int8_t*>_alloc(n, sizeof(int8_t))
        D.score = _ints([x.score for x in d.candidates])
        D.tpl = _ints([x.score_template for x in d.candidates])
        pstart = []
        for x in d.candidates:
            pstart.append(len(self.param_list))
            self.param_list.extend(x.score_params)
        D.tpl_params = _ints(pstart)
        D.req_start = <int32_t*>_alloc(n, sizeof(int32_t))
        D.req_count = <int32_t*>_alloc(n, sizeof(int32_t))
        D.emit_start = <int32_t*>_alloc(n, sizeof(int32_t))
        D.emit_count = <int32_t*>_alloc(n, sizeof(int32_t))
        for i, x in enumerate(d.candidates):
            D.exact[i] = x.exact
            D.req_start[i] = len(reqs)
            D.req_count[i] = len(x.required)
            reqs.extend(x.required)
            D.emit_start[i] = len(reqs)
            D.emit_count[i] = len(x.emits)
            reqs.extend(x.emits)
        D.n_caps = len(d.caps)
        D.caps = _ints(d.caps)
        D.n_exps = len(d.experiments)
        D.exps = _ints([self.program.experiments[x].node for x in d.experiments])
        D.exp_names = tuple(self.program.experiments[x].name for x in d.experiments)
        D.default = d.default
        D.names = tuple(x.name for x in d.candidates)
        if n > self.max_top:      # pick all / best may keep every candidate
            self.max_top = n
        idx = d.index
        D.n_words = idx.n_words if idx is not None else max(1, (n + 63) // 64)
        self.max_words = max(self.max_words, D.n_words)
        attrs = list(idx.attrs) if (idx is not None and self.use_index) else []
        D.n_attrs = len(attrs)
        self.max_attrs = max(self.max_attrs, D.n_attrs)
        D.attr_slot = _ints([x.slot for x in attrs])
        D.attr_kind = <int8_t*>_alloc(D.n_attrs, sizeof(int8_t))
        D.attr_missing = _ints([x.missing_class for x in attrs])
        D.attr_other = _ints([x.other_class for x in attrs])
        cls_offsets, cls_start, th, th_start, th_count, base = [], [], [], [], [], []
        D.attr_postings = []
        n_set = 0
        D.attr_strcls = <int32_t*>_alloc(D.n_attrs * self.n_strings, sizeof(int32_t))
        for i, x in enumerate(attrs):
            D.attr_kind[i] = {"str": 0, "num": 1, "bool": 2, "set": 3}[x.kind]
            cls_start.append(len(cls_offsets))
            cls_offsets.extend(x.class_offsets)
            th_start.append(len(th))
            th_count.append(len(x.thresholds))
            th.extend(x.thresholds)
            base.append(x.base_offset)
            D.attr_postings.append(dict(x.postings) if x.kind == "set" else None)
            if x.kind == "set":
                n_set += 1
            for j in range(self.n_strings):
                D.attr_strcls[i * self.n_strings + j] = x.str_class.get(j, x.other_class) if x.kind == "str" else -1
        self.max_set_words = max(self.max_set_words, n_set * D.n_words)
        D.attr_cls_start = _ints(cls_start)
        D.class_offsets = _ints(cls_offsets)
        D.thresholds = _doubles(th)
        D.attr_th_start = _ints(th_start)
        D.attr_th_count = _ints(th_count)
        D.attr_base = _ints(base)
        words = idx.bits if idx is not None else []
        D.bits = <uint64_t*>_alloc(len(words), sizeof(uint64_t))
        for i in range(len(words)):
            D.bits[i] = words[i]
        return D

    cdef _State _new_state(self):
        return _State(self.n_nodes, self.n_slots, self.max_attrs, self.max_words,
                      self.max_set_words, self.max_top, self.n_templates)

    def __dealloc__(self):
        cdef int i
        free(self.op); free(self.a); free(self.b); free(self.c); free(self.k); free(self.kind)
        free(self.args); free(self.reqs); free(self.params)
        free(self.tpl_start); free(self.tpl_len); free(self.tpl_res); free(self.tpl_pro); free(self.tc_k); free(self.tc_op)
        free(self.tc_a)
        free(self.tc_b)
        free(self.slot_kind); free(self.slot_vkind); free(self.slot_ts); free(self.slot_root)
        free(self.path_start); free(self.path_len); free(self.path_keys)
        if self.list_sids != NULL:
            for i in range(self.n_lists):
                free(self.list_sids[i])
                free(self.list_nums[i])
        free(self.list_sids); free(self.list_nums); free(self.list_len); free(self.list_kind)
        free(self.geo_lat); free(self.geo_lon)

    # ================================================================ strings
    cdef inline int64_t _sid(self, _State st, object s) except -1:
        """The id of a string: interned by the program, else per call."""
        cdef PyObject* p = _GetItem(self.string_ids, s)
        if p != NULL:
            return <int64_t>(<object>p)
        p = _GetItem(st.dyn_ids, s)
        if p != NULL:
            return <int64_t>(<object>p)
        cdef int64_t sid = self.n_strings + len(st.dyn_strs)
        st.dyn_ids[s] = sid
        st.dyn_strs.append(s)
        return sid

    cdef inline object _str(self, _State st, int64_t sid):
        if sid < self.n_strings:
            return <object>PyList_GET_ITEM(self.strings, sid)
        return st.dyn_strs[sid - self.n_strings]

    # ================================================================ inputs
    cdef PyObject* _walk(self, _State st, int s) except? NULL:
        """The raw value at the slot's path (borrowed), or NULL."""
        cdef PyObject* v = st.profile_p if self.slot_root[s] == 0 else st.request_p
        cdef int i
        for i in range(self.path_start[s], self.path_start[s] + self.path_len[s]):
            if not _IsDict(v):
                return NULL
            v = _GetItemP(v, self.path_keys[i])
            if v == NULL:
                return NULL
        return v

    cdef bint _geo(self, object v, double *lat, double *lon) except -1:
        return point_of(v, lat, lon)

    cdef inline double _time(self, object v, bint *ok) except? -1.0:
        cdef double x
        if PyUnicode_CheckExact(v):
            t = self.parse_time(v)
            if t is None:
                ok[0] = False
                return 0.0
            ok[0] = True
            return t
        return as_number(v, ok)

    cdef int _scalar(self, _State st, object v, int kind, bint ts, double *num, double *num2,
                     int64_t *sid) except -1:
        """Convert a raw value to a slot/map scalar; 1 when present."""
        cdef bint ok = True
        if v is None:
            return 0
        if kind == S_NUM:
            num[0] = self._time(v, &ok) if ts else as_number(v, &ok)
            return ok
        if kind == S_STR:
            if PyUnicode_CheckExact(v):
                sid[0] = self._sid(st, v)
                return 1
            return 0
        if kind == S_BOOL:
            if v is True:
                num[0] = 1.0
                return 1
            if v is False:
                num[0] = 0.0
                return 1
            return 0
        if kind == S_GEO:
            return self._geo(v, num, num2)
        return 0

    cdef int _load(self, _State st, int s) except -1:
        """Read slot s from the inputs (once per call); 1 when it is set."""
        if st.s_epoch[s] == st.epoch:
            return st.s_ok[s]
        st.s_epoch[s] = st.epoch
        st.s_ok[s] = 0
        cdef PyObject* v = self._walk(st, s)
        cdef PyObject* p
        cdef int kind = self.slot_kind[s]
        cdef int ok = 0
        cdef double x
        if v == NULL or v == _None:
            return 0
        if kind == S_STR:
            if not _IsStr(v):
                return 0
            p = _GetItemP(self.string_ids_p, v)
            st.s_sid[s] = _AsLongLong(p) if p != NULL else self._sid(st, <object>v)
            ok = 1
        elif kind == S_NUM:
            if _IsFloat(v):
                x = _FloatValue(v)
                ok = isfinite(x)
                st.s_num[s] = x
            else:
                ok = self._scalar(st, <object>v, kind, self.slot_ts[s], &st.s_num[s], &st.s_num2[s], &st.s_sid[s])
        elif kind == S_BOOL:
            if v == _True:
                st.s_num[s] = 1.0
                ok = 1
            elif v == _False:
                st.s_num[s] = 0.0
                ok = 1
        elif kind == S_GEO:
            ok = self._geo(<object>v, &st.s_num[s], &st.s_num2[s])
        else:
            o = <object>v
            if kind == S_SET or kind == S_TIMELINE:
                ok = PyList_CheckExact(o) or PyTuple_CheckExact(o) or (kind == S_SET and PyAnySet_CheckExact(o))
            else:  # map, record
                ok = PyDict_CheckExact(o)
            st.s_obj[s] = o if ok else None
        st.s_ok[s] = ok
        return ok

    # ================================================================ nodes
    cdef inline bint _truth(self, _State st, int n) except -1:
        return self._ev(st, n) and st.n_num[n] != 0.0

    cdef int _ev(self, _State st, int n) except -1:
        if st.n_epoch[n] == st.epoch:
            return st.n_ok[n]
        cdef int ok = self._compute(st, n)
        st.n_epoch[n] = st.epoch
        st.n_ok[n] = ok
        return ok

    cdef inline int _set_bool(self, _State st, int n, bint v):
        st.n_num[n] = 1.0 if v else 0.0
        return 1

    cdef inline int _set_num(self, _State st, int n, double v):
        if not isfinite(v):
            return 0
        st.n_num[n] = v
        return 1

    cdef int _compute(self, _State st, int n) except -1:
        cdef int op = self.op[n]
        cdef int a = self.a[n]
        cdef int b = self.b[n]
        cdef int i, cnt
        cdef double x = 0.0, y
        cdef object o, m
        if op == OP_CONST_NUM or op == OP_CONST_BOOL:
            st.n_num[n] = self.k[n]
            return 1
        elif op == OP_CONST_STR:
            st.n_sid[n] = a
            return 1
        elif op == OP_CONST_GEO:
            st.n_num[n] = self.geo_lat[a]
            st.n_num2[n] = self.geo_lon[a]
            return 1
        elif op == OP_MISSING:
            return 0
        elif op == OP_LOAD_NUM or op == OP_LOAD_BOOL:
            if not self._load(st, a):
                return 0
            st.n_num[n] = st.s_num[a]
            return 1
        elif op == OP_LOAD_STR:
            if not self._load(st, a):
                return 0
            st.n_sid[n] = st.s_sid[a]
            return 1
        elif op == OP_LOAD_GEO:
            if not self._load(st, a):
                return 0
            st.n_num[n] = st.s_num[a]
            st.n_num2[n] = st.s_num2[a]
            return 1
        elif op == OP_SLOT_PRESENT:
            return self._set_bool(st, n, self._load(st, a))
        elif op == OP_NOW:
            if not st.has_now:
                return 0
            st.n_num[n] = st.now
            return 1
        elif op == OP_EXPERIMENT:
            return self._experiment(st, n, a)
        elif op == OP_NOT:
            return self._set_bool(st, n, not self._truth(st, a))
        elif op == OP_AND:
            for i in range(a, a + b):
                if not self._truth(st, self.args[i]):
                    return self._set_bool(st, n, False)
            return self._set_bool(st, n, True)
        elif op == OP_OR:
            for i in range(a, a + b):
                if self._truth(st, self.args[i]):
                    return self._set_bool(st, n, True)
            return self._set_bool(st, n, False)
        elif op == OP_IS_SET:
            return self._set_bool(st, n, self._ev(st, a))
        elif op == OP_IS_MISSING:
            return self._set_bool(st, n, not self._ev(st, a))
        elif op == OP_EQ_NUM or op == OP_EQ_BOOL:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_num[a] == st.n_num[b])
        elif op == OP_NE_NUM or op == OP_NE_BOOL:
            return self._set_bool(st, n, not (self._ev(st, a) and self._ev(st, b) and st.n_num[a] == st.n_num[b]))
        elif op == OP_EQ_STR:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_sid[a] == st.n_sid[b])
        elif op == OP_NE_STR:
            return self._set_bool(st, n, not (self._ev(st, a) and self._ev(st, b) and st.n_sid[a] == st.n_sid[b]))
        elif op == OP_LT:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_num[a] < st.n_num[b])
        elif op == OP_LE:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_num[a] <= st.n_num[b])
        elif op == OP_GT:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_num[a] > st.n_num[b])
        elif op == OP_GE:
            return self._set_bool(st, n, self._ev(st, a) and self._ev(st, b) and st.n_num[a] >= st.n_num[b])
        elif op == OP_IN_LIST:
            if not self._ev(st, a):
                return self._set_bool(st, n, False)
            return self._set_bool(st, n, self._in_list(st, a, b))
        elif op == OP_IN_SET:
            if not self._ev(st, a) or not self._load(st, b):
                return self._set_bool(st, n, False)
            return self._set_bool(st, n, self._str(st, st.n_sid[a]) in st.s_obj[b])
        elif op == OP_STARTS_WITH or op == OP_ENDS_WITH:
            if not (self._ev(st, a) and self._ev(st, b)):
                return self._set_bool(st, n, False)
            return self._set_bool(st, n, PyUnicode_Tailmatch(self._str(st, st.n_sid[a]), self._str(st, st.n_sid[b]),
                                                             0, PY_SSIZE_T_MAX, -1 if op == OP_STARTS_WITH else 1) == 1)
        elif op == OP_CONTAINS_STR:
            if not (self._ev(st, a) and self._ev(st, b)):
                return self._set_bool(st, n, False)
            return self._set_bool(st, n, PyUnicode_Contains(self._str(st, st.n_sid[a]), self._str(st, st.n_sid[b])) == 1)
        elif op == OP_ADD:
            if not (self._ev(st, a) and self._ev(st, b)):
                return 0
            return self._set_num(st, n, st.n_num[a] + st.n_num[b])
        elif op == OP_SUB:
            if not (self._ev(st, a) and self._ev(st, b)):
                return 0
            return self._set_num(st, n, st.n_num[a] - st.n_num[b])
        elif op == OP_MUL:
            if not (self._ev(st, a) and self._ev(st, b)):
                return 0
            return self._set_num(st, n, st.n_num[a] * st.n_num[b])
        elif op == OP_DIV:
            if not (self._ev(st, a) and self._ev(st, b)) or st.n_num[b] == 0.0:
                return 0
            return self._set_num(st, n, st.n_num[a] / st.n_num[b])
        elif op == OP_NEG:
            if not self._ev(st, a):
                return 0
            st.n_num[n] = -st.n_num[a]
            return 1
        elif op == OP_ABS:
            if not self._ev(st, a):
                return 0
            x = st.n_num[a]
            st.n_num[n] = -x if x < 0 else x
            return 1
        elif op == OP_MIN or op == OP_MAX:
            cnt = 0
            for i in range(a, a + b):
                if self._ev(st, self.args[i]):
                    y = st.n_num[self.args[i]]
                    if cnt == 0 or (op == OP_MIN and y < x) or (op == OP_MAX and y > x):
                        x = y
                    cnt += 1
            if cnt == 0:
                return 0
            st.n_num[n] = x
            return 1
        elif op == OP_DIST:
            if not (self._ev(st, a) and self._ev(st, b)):
                return 0
            st.n_num[n] = haversine_km(st.n_num[a], st.n_num2[a], st.n_num[b], st.n_num2[b])
            return 1
        elif op == OP_GEO_MAKE:
            if not (self._ev(st, a) and self._ev(st, b)):
                return 0
            x, y = st.n_num[a], st.n_num[b]
            if not (-90.0 <= x <= 90.0 and -180.0 <= y <= 180.0):
                return 0
            st.n_num[n] = x
            st.n_num2[n] = y
            return 1
        elif op == OP_SIZE:
            return self._set_num(st, n, self._size(st, a, b))
        elif op == OP_MAP_NUM or op == OP_MAP_STR or op == OP_MAP_BOOL or op == OP_MAP_GEO or op == OP_MAP_HAS:
            o = self._map_get(st, a, b)
            if op == OP_MAP_HAS:
                return self._set_bool(st, n, o is not None)
            if o is None:
                return 0
            return self._scalar(st, o, self.slot_vkind[a], self.slot_ts[a], &st.n_num[n], &st.n_num2[n], &st.n_sid[n])
        elif op == OP_COUNT_TL:
            if not self._ev(st, self.c[n]) or not st.has_now:
                return 0
            o = self._timeline(st, a, b)
            if o is None:
                st.n_num[n] = 0.0
                return 1
            st.n_num[n] = self._count_since(o, st.now - st.n_num[self.c[n]])
            return 1
        elif op == OP_LATEST_TL:
            o = self._timeline(st, a, b)
            if o is None:
                return 0
            return self._latest(o, &st.n_num[n])
        elif op == OP_COUNT_ALL:
            if not self._ev(st, self.c[n]) or not st.has_now:
                return 0
            st.n_num[n] = 0.0
            if not self._load(st, a):
                return 1
            m = st.s_obj[a]
            y = st.now - st.n_num[self.c[n]]
            for i in range(self.list_len[b]):
                o = (<dict>m).get(self._str(st, self.list_sids[b][i]))
                if o is not None and (PyList_CheckExact(o) or PyTuple_CheckExact(o)):
                    st.n_num[n] += self._count_since(o, y)
            return 1
        elif op == OP_MONTH or op == OP_WEEKDAY or op == OP_HOUR:
            if not self._ev(st, a):
                return 0
            return _calendar(op, st.n_num[a], &st.n_num[n])
        raise ValueError("unknown opcode %d" % op)

    cdef int _experiment(self, _State st, int n, int x) except -1:
        """The customer's variant (string id) of experiment x; assignments
        are pure functions of (salt, customer), so they are cached."""
        cid = st.customer_id
        if cid is None:
            return 0
        cdef dict cache = self.assignments[x]
        cdef PyObject* p = _GetItem(cache, cid) if PyUnicode_CheckExact(cid) else NULL
        if p != NULL:
            st.n_sid[n] = <int64_t>(<object>p)
            return 1
        name = self._assign(x, cid)
        if name is None:
            return 0
        sid = self._sid(st, name)          # variant names are interned by the program
        if len(cache) >= 100_000:
            cache.clear()
        cache[cid] = sid
        st.n_sid[n] = sid
        return 1

    cdef object _assign(self, int x, cid):
        """``values.assign_variant(salt, holdout, variants, cid)`` for
        experiment x, the bucket's SHA-256 computed in C over the salt's
        UTF-8 (kept) and the id's (CPython's cached copy): on a customer's
        first Decide in this process this was ~10k instructions of hashlib
        calls.  Anything else (an id that is not a str, or cannot be UTF-8)
        goes to the Python function, for its answer or its error."""
        cdef const char *u
        cdef Py_ssize_t nu
        cdef uint64_t b
        salt, holdout, variants = self.experiments[x]
        prefix = self.exp_prefix[x]
        if prefix is None or not PyUnicode_CheckExact(cid) or not cid:
            return self.assign_variant(salt, holdout, variants, cid)
        try:
            u = _AsUTF8AndSize(cid, &nu)
        except UnicodeError:
            return self.assign_variant(salt, holdout, variants, cid)
        b = maple_sha256_head64(<const unsigned char*>PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix),
                                <const unsigned char*>u, nu) % 10000
        if b < <uint64_t>holdout:
            return "holdout"
        for name, upper in variants:
            if b < <uint64_t>upper:
                return name
        return variants[-1][0] if variants else None

    cdef bint _in_list(self, _State st, int a, int li):
        cdef int lo = 0, hi = self.list_len[li] - 1, mid
        cdef int64_t sx
        cdef double x
        if self.list_kind[li] == K_STR:
            sx = st.n_sid[a]
            while lo <= hi:
                mid = (lo + hi) >> 1
                if self.list_sids[li][mid] == sx:
                    return True
                if self.list_sids[li][mid] < sx:
                    lo = mid + 1
                else:
                    hi = mid - 1
            return False
        x = st.n_num[a]
        while lo <= hi:
            mid = (lo + hi) >> 1
            if self.list_nums[li][mid] == x:
                return True
            if self.list_nums[li][mid] < x:
                lo = mid + 1
            else:
                hi = mid - 1
        return False

    cdef object _map_get(self, _State st, int s, int key):
        cdef PyObject* p
        if not self._load(st, s) or not self._ev(st, key):
            return None
        p = _GetItem(st.s_obj[s], self._str(st, st.n_sid[key]))
        return None if p == NULL else <object>p

    cdef object _timeline(self, _State st, int s, int key):
        cdef object o
        if key < 0:
            return st.s_obj[s] if self._load(st, s) else None
        o = self._map_get(st, s, key)
        if o is not None and (PyList_CheckExact(o) or PyTuple_CheckExact(o)):
            return o
        return None

    cdef double _count_since(self, object tl, double since) except? -1.0:
        cdef double t, count = 0.0
        cdef bint ok
        for item in tl:
            ok = True
            t = self._time(item, &ok)
            if ok and t >= since:
                count += 1.0
        return count

    cdef int _latest(self, object tl, double *out) except -1:
        cdef double t
        cdef bint ok, found = False
        for item in tl:
            ok = True
            t = self._time(item, &ok)
            if ok and (not found or t > out[0]):
                out[0] = t
                found = True
        return found

    cdef double _size(self, _State st, int s, int key) except? -1.0:
        cdef object o
        cdef double count = 0.0
        cdef bint ok
        cdef int kind = self.slot_kind[s]
        if key >= 0 or kind == S_TIMELINE:
            o = self._timeline(st, s, key)
            if o is None:
                return 0.0
            for item in o:
                ok = True
                self._time(item, &ok)
                if ok:
                    count += 1.0
            return count
        if not self._load(st, s):
            return 0.0
        o = st.s_obj[s]
        if kind == S_SET:
            return <double>len({x for x in o if PyUnicode_CheckExact(x)})
        return <double>len(o)

    cdef object _value(self, _State st, int n):
        """A node's value as a Python object (None when missing)."""
        if not self._ev(st, n):
            return None
        cdef int kind = self.kind[n]
        if kind == K_BOOL:
            return st.n_num[n] != 0.0
        if kind == K_NUM:
            return st.n_num[n]
        if kind == K_STR:
            return self._str(st, st.n_sid[n])
        return (st.n_num[n], st.n_num2[n])

    # ================================================================ decisions
    cdef bint _accept(self, _State st, _Decision D, int r, double *score) except -1:
        """Whether candidate r's condition holds and its required values are
        set (scores are the caller's: best-score decisions batch them)."""
        cdef int i
        if not self.use_index:
            if D.cond[r] >= 0 and not self._truth(st, D.cond[r]):
                return False
        elif not D.exact[r] and D.residual[r] >= 0 and not self._truth(st, D.residual[r]):
            return False
        for i in range(D.req_start[r], D.req_start[r] + D.req_count[r]):
            if not self._ev(st, self.reqs[i]):
                return False
        return True

    cdef int _attr_offsets(self, _State st, _Decision D) except -1:
        """Point st.rows at each attribute's bitset for this call (skipping the
        attributes that accept every candidate); set attributes are
        accumulated into st.setacc first."""
        cdef int i, j, s, cls, nth, w, off, kind, ok, n_set = 0, n_rows = 0
        cdef double *th
        cdef PyObject* p
        cdef dict postings
        cdef double x
        cdef int64_t sid
        cdef uint64_t *acc
        cdef int nw = D.n_words
        for i in range(D.n_attrs):
            s = D.attr_slot[i]
            kind = D.attr_kind[i]
            ok = st.s_ok[s] if st.s_epoch[s] == st.epoch else self._load(st, s)
            if kind == 3:
                acc = st.setacc + n_set * nw
                n_set += 1
                off = D.attr_base[i]
                for w in range(nw):
                    acc[w] = 0 if off == -2 else (<uint64_t>0xFFFFFFFFFFFFFFFF if off == -1 else D.bits[off + w])
                if ok:
                    postings = D.attr_postings[i]
                    for member in st.s_obj[s]:
                        p = _GetItem(postings, member) if PyUnicode_CheckExact(member) else NULL
                        if p != NULL:
                            off = <int>(<object>p)
                            for w in range(nw):
                                acc[w] |= <uint64_t>0xFFFFFFFFFFFFFFFF if off == -1 else D.bits[off + w]
                st.rows[n_rows] = acc
                n_rows += 1
                continue
            if not ok:
                cls = D.attr_missing[i]
            elif kind == 0:
                sid = st.s_sid[s]
                cls = D.attr_strcls[i * self.n_strings + sid] if sid < self.n_strings else D.attr_other[i]
            elif kind == 2:
                cls = 1 if st.s_num[s] != 0.0 else 0
            else:
                x = st.s_num[s]
                th = D.thresholds + D.attr_th_start[i]
                nth = D.attr_th_count[i]
                j = _lower_bound(th, nth, x)
                cls = 2 * j + (1 if (j < nth and th[j] == x) else 0)
            off = D.class_offsets[D.attr_cls_start[i] + cls]
            if off >= 0:
                st.rows[n_rows] = D.bits + off
                n_rows += 1
        st.n_rows = n_rows
        return 1

    cdef inline uint64_t _word(self, _State st, _Decision D, int w):
        cdef uint64_t m = <uint64_t>0xFFFFFFFFFFFFFFFF
        cdef int i
        for i in range(st.n_rows):
            m &= st.rows[i][w]
            if m == 0:
                return 0
        if w == D.n_words - 1 and (D.n_cands & 63):
            m &= (<uint64_t>1 << (D.n_cands & 63)) - 1
        return m

    cdef int _decide(self, _State st, _Decision D) except -1:
        """Evaluate one decision; winners go to st.top_rank[:n] (and scores to
        st.top_score), experiment exposures to st.variants.  Returns n."""
        cdef int w, r, i, j, found = 0
        cdef uint64_t m
        cdef double score = 0.0
        cdef bint held = False
        st.status = 0
        if D.n_exps:
            st.variants = []
            for i in range(D.n_exps):
                if self._ev(st, D.exps[i]):
                    name = self._str(st, st.n_sid[D.exps[i]])
                    st.variants.append((D.exp_names[i], name))
                    if name == "holdout":
                        held = True
            if held:
                st.status = 1
                return 0
        elif st.variants is not None:
            st.variants = None
        for i in range(D.n_caps):
            if not self._truth(st, D.caps[i]):
                st.status = 2
                return 0
        if D.n_cands == 0:
            return 0
        self._attr_offsets(st, D)
        cdef int limit = D.top if D.top > 0 else D.n_cands
        if D.policy == 1:
            return self._decide_best(st, D, limit)
        for w in range(D.n_words):
            m = self._word(st, D, w)
            while m:
                r = (w << 6) + __builtin_ctzll(m)
                m &= m - 1
                if not self._accept(st, D, r, &score):
                    continue
                if D.policy == 0:
                    st.top_rank[0] = r
                    return 1
                if D.policy == 2:
                    if self._seen_value(st, D, r, found):
                        continue            # pick all: each value once, from its first rule
                    st.top_rank[found] = r
                    found += 1
                    if found >= limit:
                        return found
                    continue
                # best: keep the top `limit` by (score desc, rank asc); ranks arrive ascending
                if found < limit:
                    j = found
                    found += 1
                elif score > st.top_score[found - 1]:
                    j = found - 1
                else:
                    continue
                while j > 0 and st.top_score[j - 1] < score:
                    st.top_score[j] = st.top_score[j - 1]
                    st.top_rank[j] = st.top_rank[j - 1]
                    j -= 1
                st.top_score[j] = score
                st.top_rank[j] = r
        return found

    cdef int _decide_best(self, _State st, _Decision D, int limit) except -1:
        """Best score: collect the candidates whose conditions hold (in
        evaluation order), score them (templated ones in batches, one
        template instruction across all of them at a time), then keep the
        top ``limit`` by (score desc, order asc)."""
        cdef int w, r, j, k, m = 0, found = 0, t, nw = D.n_words
        cdef uint64_t bits
        cdef uint64_t *mask = st.mask
        cdef const uint64_t *row
        cdef double score
        cdef bint batched = False
        for w in range(nw):                              # the index, attribute by attribute (vectorizes)
            mask[w] = <uint64_t>0xFFFFFFFFFFFFFFFF
        for k in range(st.n_rows):
            row = st.rows[k]
            for w in range(nw):
                mask[w] &= row[w]
        if D.n_cands & 63:
            mask[nw - 1] &= (<uint64_t>1 << (D.n_cands & 63)) - 1
        for w in range(nw):
            bits = mask[w]
            while bits:
                r = (w << 6) + __builtin_ctzll(bits)
                bits &= bits - 1
                if not (D.exact[r] and D.req_count[r] == 0 and self.use_index) and \
                        not self._accept(st, D, r, NULL):
                    continue
                st.cand_rank[m] = r
                if D.tpl[r] >= 0:
                    batched = True
                    st.cand_ok[m] = 2                   # to be scored by its template
                else:
                    st.cand_ok[m] = self._ev(st, D.score[r])
                    st.cand_score[m] = st.n_num[D.score[r]]
                m += 1
        if batched:
            self._score_batches(st, D, m)
        for k in range(m):
            if not st.cand_ok[k]:
                continue                                # a missing score does not compete
            score = st.cand_score[k]
            r = st.cand_rank[k]
            if found < limit:
                j = found
                found += 1
            elif score > st.top_score[found - 1]:
                j = found - 1
            else:
                continue
            while j > 0 and st.top_score[j - 1] < score:
                st.top_score[j] = st.top_score[j - 1]
                st.top_rank[j] = st.top_rank[j - 1]
                j -= 1
            st.top_score[j] = score
            st.top_rank[j] = r
        return found

    cdef int _score_batches(self, _State st, _Decision D, int m) except -1:
        """Score every collected candidate marked 2, one template at a time.

        Inside a batch a missing value is NaN: every present value is finite
        (a non-finite result is missing), NaN propagates through + - * /,
        and x / 0 is never finite, so each operator is one branch-free loop
        with the node semantics.  The prologue runs once, as scalars."""
        cdef int k, b, t, i, j, op, a, bb, start, n, pro
        cdef bint va, vb
        cdef double ca, cb
        cdef int stride = self.max_top
        cdef double *row
        cdef double *ra
        cdef double *rb
        cdef double x, c
        cdef double nan = NAN
        for k in range(m):
            if st.cand_ok[k] != 2:
                continue
            t = D.tpl[st.cand_rank[k]]
            b = 0                                        # gather the batch of template t
            for j in range(k, m):
                if st.cand_ok[j] == 2 and D.tpl[st.cand_rank[j]] == t:
                    st.batch_pos[b] = j
                    st.batch_pbase[b] = D.tpl_params[st.cand_rank[j]]
                    b += 1
            start, n, pro = self.tpl_start[t], self.tpl_len[t], self.tpl_pro[t]
            for i in range(pro):                         # the prologue: scalars, once
                op, a = self.tc_op[start + i], self.tc_a[start + i]
                if op == T_NODE:
                    c = st.n_num[a] if self._ev(st, a) else nan
                elif op == T_CONST:
                    c = self.tc_k[start + i]
                else:
                    c = _apply(op, st.pv[a], st.pv[self.tc_b[start + i]] if self.tc_b[start + i] >= 0 else 0.0)
                st.pv[i] = c
            for i in range(pro, n):
                op, a = self.tc_op[start + i], self.tc_a[start + i]
                row = st.bv + i * stride
                if op == T_PARAM:
                    for j in range(b):
                        row[j] = self.params[st.batch_pbase[j] + a]
                    continue
                # an operand is a prologue scalar (register < pro) or a row;
                # the choice is loop-invariant, so the compiler unswitches it
                va = a >= pro
                ra = st.bv + a * stride
                ca = st.pv[a] if not va else 0.0
                if op == T_NEG or op == T_ABS:
                    for j in range(b):
                        x = ra[j] if va else ca
                        row[j] = -x if op == T_NEG else fabs(x)
                    continue
                bb = self.tc_b[start + i]
                vb = bb >= pro
                rb = st.bv + bb * stride
                cb = st.pv[bb] if not vb else 0.0
                if op == T_ADD:
                    maple_vadd(row, ra, rb, b, va, vb, ca, cb)
                elif op == T_SUB:
                    maple_vsub(row, ra, rb, b, va, vb, ca, cb)
                elif op == T_MUL:
                    maple_vmul(row, ra, rb, b, va, vb, ca, cb)
                else:
                    maple_vdiv(row, ra, rb, b, va, vb, ca, cb)
            if self.tpl_res[t] < pro:                    # a score that is the same for all of them
                for j in range(b):
                    st.bv[self.tpl_res[t] * stride + j] = st.pv[self.tpl_res[t]]
            row = st.bv + self.tpl_res[t] * stride
            for j in range(b):
                st.cand_score[st.batch_pos[j]] = row[j]
                st.cand_ok[st.batch_pos[j]] = not isnan(row[j])
        return 0

    cdef bint _seen_value(self, _State st, _Decision D, int r, int found) except -1:
        """Whether candidate r's value equals one already collected."""
        cdef int k, a, b = self.reqs[D.emit_start[r]]
        cdef int kind = self.kind[b]
        self._ev(st, b)
        for k in range(found):
            a = self.reqs[D.emit_start[st.top_rank[k]]]
            if kind == K_STR:
                if st.n_sid[a] == st.n_sid[b]:
                    return True
            elif st.n_num[a] == st.n_num[b] and (kind != K_GEO or st.n_num2[a] == st.n_num2[b]):
                return True
        return False

    cdef tuple _result(self, _State st, _Decision D, int n):
        """The Python form of a decision's winners (see PyKernel.run)."""
        cdef int i, k, r
        ranks, outputs, scores = [], [], []
        for k in range(n):
            r = st.top_rank[k]
            ranks.append(r)
            outputs.append(tuple([self._value(st, self.reqs[i])
                                  for i in range(D.emit_start[r], D.emit_start[r] + D.emit_count[r])]))
            scores.append(st.top_score[k] if D.policy == 1 else None)
        variants = tuple(st.variants) if D.n_exps and st.variants else ()
        return (tuple(ranks), tuple(outputs), tuple(scores), variants, _STATUS[st.status])

    # ================================================================ entry points
    cdef _State _begin(self, profile, request, now, customer_id):
        cdef bint ok
        cdef _State st = self.state
        if st is None:              # a concurrent or re-entrant call: use a fresh state
            st = self._new_state()
        else:
            self.state = None
        st.epoch += 1
        st.profile = profile if PyDict_CheckExact(profile) else {}
        st.request = request if PyDict_CheckExact(request) else {}
        st.profile_p = <PyObject*>st.profile
        st.request_p = <PyObject*>st.request
        st.has_now = False
        if now is not None:
            ok = True
            st.now = as_number(now, &ok)
            st.has_now = ok
        st.customer_id = customer_id
        if st.dyn_strs:
            st.dyn_ids.clear()
            del st.dyn_strs[:]
        return st

    cdef void _end(self, _State st):
        st.profile = None
        st.request = None
        st.customer_id = None
        self.state = st

    cpdef list run(self, profile, request, now, customer_id=None, wanted=None):
        """See PyKernel.run: one (winners, outputs, scores, variants, status) per decision.
        (cpdef: the compiled Decide calls it in C, without the method's lookup.)"""
        cdef _State st = self._begin(profile, request, now, customer_id)
        cdef _Decision D
        try:
            out = []
            for D in self.decisions:
                if wanted is not None and D.position not in wanted:
                    out.append(None)
                else:
                    out.append(self._result(st, D, self._decide(st, D)))
            return out
        finally:
            self._end(st)

    def run_primary(self, profile, request, now, customer_id=None):
        """The main value of every decision, cheaply: a value decision's value
        (its default when nothing fires; a list for pick all), the name of the
        rule that chose a record decision, the winning offer's name; None when
        there is none."""
        cdef _State st = self._begin(profile, request, now, customer_id)
        cdef _Decision D
        cdef int n, k, r
        cdef list out = []
        try:
            for D in self.decisions:
                n = self._decide(st, D)
                if D.kind != 0:
                    out.append(D.names[st.top_rank[0]] if n else None)
                elif n == 0:
                    out.append(D.default)
                elif D.policy == 2:
                    out.append([self._value(st, self.reqs[D.emit_start[st.top_rank[k]]]) for k in range(n)])
                else:
                    r = st.top_rank[0]
                    out.append(self._value(st, self.reqs[D.emit_start[r]]))
            return tuple(out)
        finally:
            self._end(st)


cdef inline double _apply(int op, double a, double b) noexcept:
    """One template operation on NaN-encoded values (see _score_batches)."""
    cdef double x
    if op == T_NEG:
        return -a
    if op == T_ABS:
        return fabs(a)
    if op == T_ADD:
        x = a + b
    elif op == T_SUB:
        x = a - b
    elif op == T_MUL:
        x = a * b
    else:
        x = a / b
    return x if isfinite(x) else NAN


cdef int _calendar(int op, double t, double *out) noexcept:
    """values.month / weekday / hour, operation for operation."""
    cdef double days_f
    cdef long long days, z, era, doe, yoe, doy, mp
    if not (-62135596800.0 <= t <= 253402300799.0):
        return 0
    days_f = floor(t / 86400.0)
    days = <long long>days_f
    if op == OP_WEEKDAY:
        out[0] = <double>(_pymod(days + 3, 7) + 1)
        return 1
    if op == OP_HOUR:
        out[0] = <double>_pymod(<long long>floor(t / 3600.0), 24)
        return 1
    z = days + 719468
    era = _pydiv(z if z >= 0 else z - 146096, 146097)
    doe = z - era * 146097
    yoe = _pydiv(doe - _pydiv(doe, 1460) + _pydiv(doe, 36524) - _pydiv(doe, 146096), 365)
    doy = doe - (365 * yoe + _pydiv(yoe, 4) - _pydiv(yoe, 100))
    mp = _pydiv(5 * doy + 2, 153)
    out[0] = <double>(mp + 3 if mp < 10 else mp - 9)
    return 1


cdef inline long long _pydiv(long long a, long long b) noexcept:
    """Python's floor division."""
    cdef long long q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline long long _pymod(long long a, long long b) noexcept:
    """Python's modulo (the sign of the divisor)."""
    cdef long long r = a % b
    if r != 0 and ((r < 0) != (b < 0)):
        r += b
    return r


cdef inline int _lower_bound(const double *th, int n, double x) noexcept nogil:
    """bisect_left over n sorted doubles, without unpredictable branches."""
    cdef const double *base = th
    cdef int half
    if n == 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if base[half] < x else base
        n -= half
    return <int>(base - th) + (1 if base[0] < x else 0)
