# The compiled kernel's C-level layout (see _kernel.pyx; the Python face is _kernel.pyi).
cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t


@cython.final
cdef class _State:
    cdef int64_t epoch
    cdef int n_nodes, n_slots
    # node results (valid when n_epoch[i] == epoch)
    cdef int64_t *n_epoch
    cdef int8_t *n_ok
    cdef double *n_num
    cdef double *n_num2
    cdef int64_t *n_sid
    # slot values (loaded on first use in a call)
    cdef int64_t *s_epoch
    cdef int8_t *s_ok
    cdef double *s_num
    cdef double *s_num2
    cdef int64_t *s_sid
    cdef list s_obj
    # scratch for the index scan and top-k
    cdef uint64_t **rows         # this call's bitset row per index attribute
    cdef int n_rows
    cdef uint64_t *setacc
    cdef uint64_t *mask
    cdef int32_t *top_rank
    cdef double *top_score
    # best score: candidates collected, their scores, template batches (32 rows of max_top)
    cdef int32_t *cand_rank
    cdef double *cand_score
    cdef int8_t *cand_ok
    cdef int32_t *batch_pos
    cdef int32_t *batch_pbase
    cdef double *bv
    cdef double *pv              # the template prologue's registers
    # the call's inputs
    cdef object profile
    cdef object request
    cdef PyObject *profile_p
    cdef PyObject *request_p
    cdef double now
    cdef bint has_now
    cdef object customer_id
    cdef dict dyn_ids
    cdef list dyn_strs
    cdef list variants
    cdef int status


@cython.final
cdef class _Decision:
    cdef int position
    cdef int kind              # 0 value, 1 record, 2 offer
    cdef int policy            # 0 first, 1 best, 2 all
    cdef int top
    cdef int n_cands
    cdef int32_t *cond
    cdef int32_t *residual
    cdef int8_t *exact
    cdef int32_t *score
    cdef int32_t *tpl             # score template per candidate (-1: evaluate the node)
    cdef int32_t *tpl_params      # where its parameters start in Kernel.params
    cdef int32_t *req_start
    cdef int32_t *req_count
    cdef int32_t *emit_start
    cdef int32_t *emit_count
    cdef int n_caps
    cdef int32_t *caps
    cdef int n_exps
    cdef int32_t *exps
    # index
    cdef int n_words
    cdef int n_attrs
    cdef int32_t *attr_slot
    cdef int8_t *attr_kind        # 0 str, 1 num, 2 bool, 3 set
    cdef int32_t *attr_missing
    cdef int32_t *attr_other
    cdef int32_t *attr_cls_start  # into class_offsets
    cdef int32_t *attr_strcls     # n_attrs * n_strings (str attrs), -1 = other
    cdef int32_t *attr_th_start
    cdef int32_t *attr_th_count
    cdef int32_t *attr_base       # set attrs
    cdef list attr_postings       # set attrs: dict str -> offset
    cdef int32_t *class_offsets
    cdef double *thresholds
    cdef uint64_t *bits
    cdef object default
    cdef tuple names
    cdef tuple exp_names


@cython.final
cdef class Kernel:
    cdef readonly object program
    cdef readonly bint use_index
    cdef int n_nodes, n_slots, n_strings, n_decisions
    cdef int32_t *op
    cdef int32_t *a
    cdef int32_t *b
    cdef int32_t *c
    cdef double *k
    cdef int8_t *kind
    cdef int32_t *args
    cdef int32_t *reqs          # required / emitted node ids of every candidate
    cdef list param_list
    cdef double *params         # score template parameters of every candidate
    cdef int n_templates
    cdef int32_t *tpl_start
    cdef int32_t *tpl_len
    cdef int32_t *tpl_res
    cdef int32_t *tpl_pro
    cdef double *tc_k
    cdef int32_t *tc_op
    cdef int32_t *tc_a
    cdef int32_t *tc_b
    cdef int8_t *slot_kind
    cdef int8_t *slot_vkind
    cdef int8_t *slot_ts
    cdef int8_t *slot_root
    cdef list slot_paths
    cdef list path_key_list
    cdef PyObject **path_keys
    cdef int32_t *path_start
    cdef int32_t *path_len
    cdef list strings
    cdef dict string_ids
    cdef PyObject *string_ids_p
    cdef int64_t **list_sids
    cdef double **list_nums
    cdef int32_t *list_len
    cdef int8_t *list_kind
    cdef int n_lists
    cdef double *geo_lat
    cdef double *geo_lon
    cdef list decisions
    cdef list experiments        # (salt, holdout_bp, variants) per experiment
    cdef list assignments        # per experiment: customer id -> variant string id (a bounded cache)
    cdef list exp_prefix         # per experiment: (salt + ":") as UTF-8 bytes, what its bucket hashes first
    cdef object assign_variant
    cdef object parse_time
    cdef int max_attrs, max_words, max_top, max_set_words
    cdef _State state

    cdef _Decision _pack_decision(self, d, list reqs)
    cdef _State _new_state(self)
    cdef inline int64_t _sid(self, _State st, object s) except -1
    cdef inline object _str(self, _State st, int64_t sid)
    cdef PyObject* _walk(self, _State st, int s) except? NULL
    cdef bint _geo(self, object v, double *lat, double *lon) except -1
    cdef inline double _time(self, object v, bint *ok) except? -1.0
    cdef int _scalar(self, _State st, object v, int kind, bint ts, double *num, double *num2, int64_t *sid) except -1
    cdef int _load(self, _State st, int s) except -1
    cdef inline bint _truth(self, _State st, int n) except -1
    cdef int _ev(self, _State st, int n) except -1
    cdef inline int _set_bool(self, _State st, int n, bint v)
    cdef inline int _set_num(self, _State st, int n, double v)
    cdef int _compute(self, _State st, int n) except -1
    cdef int _experiment(self, _State st, int n, int x) except -1
    cdef object _assign(self, int x, cid)
    cdef bint _in_list(self, _State st, int a, int li)
    cdef object _map_get(self, _State st, int s, int key)
    cdef object _timeline(self, _State st, int s, int key)
    cdef double _count_since(self, object tl, double since) except? -1.0
    cdef int _latest(self, object tl, double *out) except -1
    cdef double _size(self, _State st, int s, int key) except? -1.0
    cdef object _value(self, _State st, int n)
    cdef bint _accept(self, _State st, _Decision D, int r, double *score) except -1
    cdef int _decide_best(self, _State st, _Decision D, int limit) except -1
    cdef int _score_batches(self, _State st, _Decision D, int m) except -1
    cdef int _attr_offsets(self, _State st, _Decision D) except -1
    cdef inline uint64_t _word(self, _State st, _Decision D, int w)
    cdef int _decide(self, _State st, _Decision D) except -1
    cdef bint _seen_value(self, _State st, _Decision D, int r, int found) except -1
    cdef tuple _result(self, _State st, _Decision D, int n)
    cdef _State _begin(self, profile, request, now, customer_id)
    cdef void _end(self, _State st)
    cpdef list run(self, profile, request, now, customer_id=*, wanted=*)
