# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-request path of ``maple serve``'s handler and metrics, compiled.

* :class:`Counts` is what ``metrics.Recorder`` counts between two flushes
  (each RPC's status and time, Decide's time, the answers' (decision,
  rule) pairs, degraded answers), under one lock, and :meth:`Counts.take`
  hands it over to the flush.  ``Recorder.request``, ``decided`` and
  ``decided_results`` are its methods: a C call each, not a Python frame
  and a ``with`` block.
* :class:`RawUnary` is ``app.raw_unary``'s handler: it parses the
  request's bytes, calls the method, and records the status and the time
  from the bytes to the answer.
* :class:`DecideBytes` is ``DecisionServicer.decide_bytes``, the method
  ``RawUnary`` calls for a Decide, with ``status.translated``'s error
  handling: one C call where there were two Python frames.

A Decide in the server runs with cold caches, and each Python function on
its path costs the cache lines of its code object, bytecode, globals and
frame (``python -m bench.decide_cost --cold --stages served,handled``:
what the handler and the metrics added).  The tests hold the metrics'
exposition equal to observing each request through prometheus-client
(tests/server/test_metrics.py) and the handler's statuses through real
servers (tests/server/test_integration.py and others).
"""
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_release_lock, PyThread_type_lock)
from libc.stdlib cimport calloc, free
from .._sorted cimport first_at_or_above
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double _now() nogil:
    """time.perf_counter's clock on Linux (CLOCK_MONOTONIC), in seconds."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Timings:
    """A histogram's observations since the last flush: their sum and how
    many fell in each bucket (prometheus-client's buckets: the first upper
    bound >= the value)."""
    cdef public double sum
    cdef long long *counts
    cdef readonly int n

    def __cinit__(self, int n):
        self.counts = <long long *> calloc(max(n, 1), sizeof(long long))
        if self.counts == NULL:
            raise MemoryError()
        self.n = n
        self.sum = 0.0

    def __dealloc__(self):
        free(self.counts)

    @property
    def buckets(self) -> list:
        return [self.counts[i] for i in range(self.n)]

    cdef inline void add(self, int i, double seconds):
        self.sum += seconds
        self.counts[i] += 1


cdef class Counts:
    """What the per-request metrics counted since the last :meth:`take`.
    ``bounds``: the histograms' upper bounds, +Inf last; ``on_first``: called
    once, after the first request is counted (the Recorder starts its
    flusher); ``item_error``: the type of a batch item that failed (not
    counted by :meth:`decided_results`)."""
    cdef double *bounds
    cdef int nb
    cdef PyThread_type_lock lock
    cdef dict requests                  # (rpc, code) -> Timings
    cdef Timings decide
    cdef dict answers                   # a Decide's decided_by -> count
    cdef long long degraded
    cdef object on_first
    cdef object item_error

    def __cinit__(self, bounds, on_first=None, item_error=None):
        bounds = [float(b) for b in bounds]
        if not bounds or bounds[len(bounds) - 1] != float("inf"):     # (no negative index: wraparound is off)
            bounds.append(float("inf"))     # every value falls in a bucket (the counts are indexed unchecked)
        self.nb = len(bounds)
        self.bounds = <double *> calloc(max(self.nb, 1), sizeof(double))
        self.lock = PyThread_allocate_lock()
        if self.bounds == NULL or self.lock == NULL:
            raise MemoryError()
        for i, b in enumerate(bounds):
            self.bounds[i] = b
        self.requests = {}
        self.decide = Timings(self.nb)
        self.answers = {}
        self.degraded = 0
        self.on_first = on_first
        self.item_error = item_error

    def __dealloc__(self):
        free(self.bounds)
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef inline void _acquire(self):
        """The lock, waiting for it without the GIL (as threading.Lock
        does), so that a holder waiting for the GIL can finish."""
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline int _bucket(self, double x):
        """bisect.bisect_left(bounds, x), as prometheus-client's observe."""
        return first_at_or_above(self.bounds, self.nb, x)

    cdef inline void _started(self) except *:
        if self.on_first is not None:
            first, self.on_first = self.on_first, None
            first()

    def request(self, str rpc, str code, double seconds, double decide_seconds=-1.0):
        """An RPC answered with ``code`` in ``seconds`` (maple_request_seconds:
        from its bytes); ``decide_seconds`` >= 0: an answered Decide's time
        from its request parsed to the response ready (maple_decide_seconds)."""
        cdef int i = self._bucket(seconds)
        key = (rpc, code)
        cdef Timings t
        cdef int j = self._bucket(decide_seconds) if decide_seconds >= 0.0 else -1
        self._acquire()
        try:
            found = self.requests.get(key)
            if found is None:
                found = self.requests[key] = Timings(self.nb)
            t = <Timings> found
            t.add(i, seconds)
            if j >= 0:
                self.decide.add(j, decide_seconds)
        finally:
            PyThread_release_lock(self.lock)
        if self.on_first is not None:
            self._started()

    def decided(self, decided_by, bint degraded=False):
        """A Decide's answers: ``decided_by`` is its (decision, rule or None)
        pairs, counted whole (one dict update; a pack's rules make few
        distinct answers) and split per decision at the flush."""
        if type(decided_by) is not tuple:
            decided_by = tuple(decided_by)
        self._acquire()
        try:
            answers = self.answers
            answers[decided_by] = answers.get(decided_by, 0) + 1
            if degraded:
                self.degraded += 1
        finally:
            PyThread_release_lock(self.lock)

    def decided_results(self, results):
        """:meth:`decided` for each result of a batch, under one lock; a
        batch item that failed is skipped."""
        cdef dict counts = {}
        cdef long long degraded = 0
        item_error = self.item_error
        for r in results:
            if item_error is not None and isinstance(r, item_error):
                continue
            decided_by = r.decided_by
            if type(decided_by) is not tuple:
                decided_by = tuple(decided_by)
            counts[decided_by] = counts.get(decided_by, 0) + 1
            if r.degraded:
                degraded += 1
        self._acquire()
        try:
            answers = self.answers
            for decided_by, n in counts.items():
                answers[decided_by] = answers.get(decided_by, 0) + n
            self.degraded += degraded
        finally:
            PyThread_release_lock(self.lock)

    def take(self):
        """(requests, decide, answers, degraded) counted since the last
        take, and start again from nothing."""
        cdef Timings fresh = Timings(self.nb)
        cdef dict requests_now = {}, answers_now = {}
        self._acquire()
        requests, self.requests = self.requests, requests_now
        decide, self.decide = self.decide, fresh
        answers, self.answers = self.answers, answers_now
        degraded, self.degraded = self.degraded, 0
        PyThread_release_lock(self.lock)
        return requests, decide, answers, degraded


cdef class RawUnary:
    """``app.raw_unary``'s handler (see there): ``parse`` the request's
    bytes (``unparsed(raw, err)`` when it raises), ``method(request,
    context)``, and ``record(rpc, code, seconds, decide_seconds)`` at the
    end, whatever happened: the status gRPC will send (``context.code()``'s
    name, INTERNAL for an exception the method did not turn into one), the
    time from the bytes to the answer, and for an answered Decide (``decide``)
    the time from the request parsed to the answer (else -1)."""
    cdef object parse, method, record, unparsed, status_code
    cdef str rpc
    cdef bint decide

    def __cinit__(self, str rpc, parse, method, record, bint decide, unparsed, status_code):
        self.rpc = rpc
        self.parse = parse
        self.method = method
        self.record = record
        self.decide = decide
        self.unparsed = unparsed
        self.status_code = status_code

    def __call__(self, raw, context):
        cdef double t0 = _now(), t1 = -1.0, t
        cdef str code = "OK"
        try:
            try:
                request = self.parse(raw)
            except Exception as err:              # DecodeError, recursion limit, bad UTF-8
                request = self.unparsed(raw, err, context)
            if self.decide:
                t1 = _now()                       # parsed: issue 3's span of maple_decide_seconds starts
            return self.method(request, context)
        except BaseException:
            c = context.code()
            code = c.name if isinstance(c, self.status_code) else "INTERNAL"
            raise
        finally:
            if self.record is not None:
                t = _now()
                self.record(self.rpc, code, t - t0, t - t1 if t1 >= 0.0 and code == "OK" else -1.0)


cdef class DecideBytes:
    """``DecisionServicer.decide_bytes(request, context)``, as
    ``status.translated`` wraps a servicer method, compiled: the request
    (the DecideQuery ``wire.decide_request`` read, else a DecideRequest
    for ``query_from_pb``) answered by ``answer``
    (``engine.service._decide.answer``) with the call's remaining time,
    the metrics (``on_result``) and the encoders; a ``service_error``
    answered with its status (``abort``), any other exception logged and
    answered INTERNAL (``internal_error``).  In the server a Decide runs
    with cold caches, and the two Python frames this replaces (the
    decorator's and the method's) cost their code, bytecode, globals and
    attribute lookups (``python -m bench.decide_cost --cold --stages
    handled``)."""
    cdef object decider, on_result, answer, encode, encode_raw, query_type, query_from_pb
    cdef object service_error, abort, internal_error

    def __cinit__(self, decider, on_result, answer, encode, encode_raw, query_type, query_from_pb,
                  service_error, abort, internal_error):
        self.decider, self.on_result, self.answer = decider, on_result, answer
        self.encode, self.encode_raw = encode, encode_raw
        self.query_type, self.query_from_pb = query_type, query_from_pb
        self.service_error, self.abort, self.internal_error = service_error, abort, internal_error

    def __call__(self, request, context):
        try:
            q = request if type(request) is self.query_type else self.query_from_pb(request)
            return self.answer(self.decider, q, context.time_remaining(), self.on_result, self.encode,
                               self.encode_raw)
        except Exception as err:
            if isinstance(err, self.service_error):
                self.abort(context, err)
            else:
                self.internal_error(context, "decide_bytes")
