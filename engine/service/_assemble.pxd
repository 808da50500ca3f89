# The plan's per-decision part and the steps of mapping one decision's raw
# answer, shared by the typed results (map_raw) and the server's answer
# bytes written straight from the raw answers (engine/server/_wire.pyx).

cdef class DecisionMap:
    cdef public object ir, name, default, undecided, policies, defaults
    cdef public int how
    cdef public tuple rules, decided, reasons, commons, shapes, templates
    cdef public dict shared

cdef enum:
    GENERIC = 0
    TEXT = 1
    OFFERS = 2
    RECORD = 3

cdef object common_of(DecisionMap D, object ranks, object variants, object status)
cdef object text_value(DecisionMap D, object ranks, object outputs, list decided_by)
cdef object offer_message(DecisionMap D, object rank, object values)
cdef object offer_score(object score)
cdef tuple record_of(DecisionMap D, object ranks, object outputs, object variants, object status)
cdef tuple generic_of(object plan, DecisionMap D, object r)
