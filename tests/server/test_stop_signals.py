"""maple serve's Stop: a SIGTERM received by any thread of the process
wakes the main thread's wait (engine.server.app.Stop).

The kernel hands a signal sent to a process to any thread that does not
block it; Python runs the handler only in the main thread, and only when
it next runs bytecode.  Here the signal is sent to one idle thread on
purpose (``signal.pthread_kill``) while the main thread waits."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import signal, sys, threading
    sys.path.insert(0, {root!r})
    from engine.server.app import Stop
    stop = Stop()
    idle_forever, waiting = threading.Event(), threading.Event()
    other = threading.Thread(target=idle_forever.wait, daemon=True)
    other.start()

    def kill_other_thread(times):
        for _ in range(times):
            waiting.wait()
            waiting.clear()
            signal.pthread_kill(other.ident, signal.SIGTERM)   # not the main thread

    threading.Thread(target=kill_other_thread, args=({signals},), daemon=True).start()
    waiting.set()
    print("requested", stop.wait(), flush=True)            # the first SIGTERM: drain
    if {signals} > 1:
        waiting.set()
        print("hurry", stop.hurry.wait(600), flush=True)    # the second: cut the drain short
""")


def python(script: str) -> str:
    """What ``script`` prints, run in a process of its own (exit 0)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run(signals: int) -> str:
    return python(SCRIPT.format(root=str(ROOT), signals=signals))


def test_a_sigterm_to_another_thread_wakes_the_main_threads_wait():
    assert run(1) == "requested True\n"


def test_a_second_sigterm_to_another_thread_cuts_the_drain_short():
    assert run(2) == "requested True\nhurry True\n"


def test_a_flag_set_from_another_thread_wakes_the_wait_and_timeouts_hold():
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from engine.server.app import Stop
        stop = Stop()
        print(stop.wait(0.01), stop.hurry.wait(0), flush=True)          # nothing yet: timeouts
        threading.Thread(target=stop.requested.set).start()           # the supervisor gone (EOF)
        print(stop.wait(), stop.is_set(), flush=True)
    """)
    assert python(script) == "False False\nTrue True\n"


def test_the_supervisor_waiting_for_its_workers_wakes_for_a_signal_another_thread_got():
    """The operator's second SIGTERM reaches the workers at once while the
    supervisor waits for them to drain, whichever thread the kernel gave it
    to: the wait watches Stop's pipe, not only the workers' sentinels."""
    script = textwrap.dedent(f"""
        import multiprocessing, signal, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from engine.server.app import Stop
        from engine.server.config import ServeConfig
        from engine.server.workers import FanoutRules, Worker
        stop = Stop()
        fan = FanoutRules(ServeConfig(rules="rules"), "127.0.0.1:0")
        worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(300,))
        worker.start()                                   # a worker whose drain would outlast the test
        fan.workers = [Worker(worker, None, worker.pid, "")]
        stop.on_again = fan.signal_all                   # as supervise() wires it
        idle_forever, waiting = threading.Event(), threading.Event()
        other = threading.Thread(target=idle_forever.wait, daemon=True)
        other.start()

        def kill_other_thread():
            for _ in range(2):
                waiting.wait()
                waiting.clear()
                signal.pthread_kill(other.ident, signal.SIGTERM)   # not the main thread

        threading.Thread(target=kill_other_thread, daemon=True).start()
        waiting.set()
        stop.wait()                                      # the first SIGTERM: drain
        t0 = time.monotonic()
        waiting.set()                                    # the second, while the supervisor waits
        exited_0 = fan.wait(240, stop)
        print("worker ended", not worker.is_alive(), exited_0, time.monotonic() - t0 < 120, flush=True)
    """)
    assert python(script) == "worker ended True False True\n"      # SIGTERMed: exit code -15
