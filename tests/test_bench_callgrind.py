

def test_cython_names_readable():
    assert readable("__pyx_pw_6engine_7service_7_decide_1decide_one") == "engine.service._decide.decide_one"
    assert readable("__pyx_f_6engine_6server_5_wire__query") == "engine.server._wire._query"
    assert readable("__pyx_pf_6engine_7service_9_assemble_map_raw.constprop.0") == "engine.service._assemble.map_raw"
    assert readable("__pyx_pw_6engine_4eval_7_kernel_6Kernel_5run") == "engine.eval._kernel.Kernel.run"
    assert readable("JSONDecoder_decode") == "JSONDecoder_decode"


PY = "/tmp/python-build/Python-3.11.7"
ANNOTATE = f"""\
ILmr             DLmr             DLmw            Ir                   file:function
--------------------------------------------------------------------------------
63,915 (100.0%) 50,338 (100.0%) 16,877 (100.0%) 4,505,803 (100.0%)  PROGRAM TOTALS
148,875 (232.9%) 122,023 (242.4%) 39,637 (234.9%) 10,702,217 (237.5%)  {PY}/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/py/lib/libpython3.11.so.1.0]
 63,915 (100.0%)  50,338 (100.0%) 16,877 (100.0%)  4,505,803 (100.0%)  {PY}/Python/ceval.c:_PyEval_EvalFrameDefault [/py/lib/libpython3.11.so.1.0]
 63,915 (100.0%)  50,338 (100.0%) 16,877 (100.0%)  4,505,803 (100.0%)  {PY}/./Include/internal/pycore_ceval.h:PyEval_EvalCode
 39,933 (62.48%)  32,708 (64.98%)  8,194 (48.55%)  2,415,432 (53.61%)  /m/engine/service/_decide.c:__Pyx_CyFunction_Vectorcall_FASTCALL_KEYWORDS [/w/engine/service/_decide.cpython-311-x86_64-linux-gnu.so]
 39,873 (62.38%)  32,648 (64.86%)  8,194 (48.55%)  2,415,132 (53.60%)  /m/engine/service/_decide.c:__pyx_pw_6engine_7service_7_decide_1decide_one [/w/engine/service/_decide.cpython-311-x86_64-linux-gnu.so]
 39,000 (61.00%)  32,000 (64.00%)  8,000 (48.00%)  2,400,000 (53.00%)  /m/engine/service/_decide.c:__pyx_pf_6engine_7service_7_decide_decide_one [/w/engine/service/_decide.cpython-311-x86_64-linux-gnu.so]
  6,396 (10.01%)   4,694 ( 9.32%)  3,694 (21.89%)  1,019,600 (22.63%)  ???:JSONDecoder_decode [/v/site-packages/msgspec/_core.cpython-311-x86_64-linux-gnu.so]
  1,189 ( 1.86%)     546 ( 1.08%)      .              15,870 ( 0.35%)  /m/engine/eval/_kernel.c:__pyx_f_6engine_4eval_7_kernel_6Kernel__compute'2 [/w/engine/eval/_kernel.so]
"""


def test_annotate_compiled_functions_only():
    assert parse_annotate(ANNOTATE) == {
        "engine.service._decide.decide_one": {"ILmr": 39873, "DLmr": 32648, "DLmw": 8194, "Ir": 2415132},
        "JSONDecoder_decode [msgspec/_core]": {"ILmr": 6396, "DLmr": 4694, "DLmw": 3694, "Ir": 1019600},
    }
