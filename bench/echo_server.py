"""The floor: a gRPC echo on Maple's own server stack.

Same ``grpc.server`` construction, thread pool, options (keepalive, message
sizes, SO_REUSEPORT) and worker processes as ``maple serve``; the handler
returns the request bytes unparsed.  The load generator sends it the very
bytes it sends Decide, so the difference is what deciding costs.

    python -m bench.echo_server --listen 127.0.0.1:0 --workers 1 [--cpu-affinity auto]

``--cpu-affinity`` keeps each worker on one CPU as ``maple serve
--cpu-affinity`` does (engine.server.affinity): the floor on the same
footing as the Decide it is compared with.

It answers ``DecisionService/Decide`` too, the same way, so it can stand
in for Decide in the load generator (``python -m bench.loadgen --target``
its address):

* as it is, the floor measured against itself (an A/A run): how far this
  machine's noise alone moves each ratio;
* with ``--spin-us X``, each Decide first spends X µs of compact CPU work
  (``sum(range(n))``, n set at start so that its median in process is X
  µs; the Echo method does not spin): a Decide that did nothing but its
  hot work, in a few cache lines, the best any decision path could do.
  Set X to the whole Decide's hot time in process (``python
  bench/profiles_bench.py --pack reference``'s bytes-to-bytes figure).
* with ``--spin-us X --spin-p99-us Q`` as well, each Decide's work is
  drawn instead from a log-normal of median X and p99 Q µs (each worker
  seeded alike): compact work that varies from call to call as the real
  Decide's server time does (its ``maple_decide_seconds`` p50 and p99),
  to tell what the spread of the work does to a queue from what its
  mean does.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import threading

import grpc

from bench.layers import hot_us
from engine.server import affinity
from engine.server.app import make_server, stop_event
from engine.server.workers import reserve_port

METHOD = "/maple.bench.Echo/Echo"


def _echo(request: bytes, context) -> bytes:
    return request


def spin_size(us: float, passes: int = 4) -> int:
    """n such that ``sum(range(n))`` takes ``us`` µs in process (its median,
    ``bench.layers.hot_us``), found in ``passes`` steps, each correcting n
    by the ratio found; 0 for ``us`` 0."""
    if us <= 0:
        return 0
    n = 1000
    for _ in range(passes):
        n = max(1, round(n * us / hot_us(lambda n=n: sum(range(n)))))
    return n


def spin_draw(n: int, p99_ratio: float, seed: int = 0):
    """A function giving each call's n: ``n`` times a log-normal factor of
    median 1 and p99 ``p99_ratio`` (>= 1; 1: always ``n``), from a
    generator seeded with ``seed``."""
    if p99_ratio <= 1 or n == 0:
        return lambda: n
    draw = random.Random(seed).lognormvariate
    sigma = math.log(p99_ratio) / 2.3263478740408408      # the standard normal's 99th percentile
    return lambda: round(n * draw(0.0, sigma))


def _decide(n: int, p99_ratio: float = 1.0):
    """The Decide stand-in: the request echoed, after ``sum(range(n))``,
    n drawn per call (``spin_draw``) when ``p99_ratio`` > 1."""
    if n == 0:
        return _echo
    if p99_ratio > 1:
        next_n = spin_draw(n, p99_ratio)

        def varied(request: bytes, context) -> bytes:
            sum(range(next_n()))
            return request
        return varied

    def decide(request: bytes, context) -> bytes:
        sum(range(n))
        return request
    return decide


def _serve_one(address: str, threads: int, ready=None, cpu: int | None = None, spin_n: int = 0,
               p99_ratio: float = 1.0) -> None:
    if cpu is not None:
        affinity.pin(cpu)                   # before the server starts its threads
    server = make_server(threads, 512, 4 * 1024 * 1024, reuseport=True)     # --workers share the port
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("maple.bench.Echo",
                                             {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}),
        grpc.method_handlers_generic_handler("maple.v1.DecisionService", {
            "Decide": grpc.unary_unary_rpc_method_handler(_decide(spin_n, p99_ratio))})))
    port = server.add_insecure_port(address)
    server.start()
    stop = stop_event()         # wakes for a signal whichever thread gets it (engine.server.app.Stop)
    if ready is not None:
        ready.send(port)
    stop.wait()
    server.stop(1).wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--cpu-affinity", default="off", help=f"each worker kept on one CPU: {affinity.SPEC_HELP}")
    p.add_argument("--spin-us", type=float, default=0.0,
                   help="µs of compact CPU work each Decide does before it echoes (default 0: none)")
    p.add_argument("--spin-p99-us", type=float, default=None,
                   help="draw each Decide's work from a log-normal of median --spin-us and this p99 (µs) "
                        "instead of the same every call")
    args = p.parse_args(argv)
    if not 0 <= args.spin_us <= 1e6:
        p.error(f"--spin-us {args.spin_us:g}: use 0 to 1000000 µs")
    if args.spin_p99_us is not None and not (args.spin_us > 0 and args.spin_us <= args.spin_p99_us <= 1e6):
        p.error(f"--spin-p99-us {args.spin_p99_us:g}: use --spin-us ({args.spin_us:g}) to 1000000 µs, "
                "with --spin-us above 0")
    p99_ratio = args.spin_p99_us / args.spin_us if args.spin_p99_us is not None else 1.0
    try:
        cpus = affinity.parse(args.cpu_affinity)
    except ValueError as err:
        p.error(f"--cpu-affinity {args.cpu_affinity}: {err}")
    cpu_of = (lambda i: None) if cpus is None else (lambda i: affinity.cpu_for(cpus, i))   # noqa: E731
    spin_n = spin_size(args.spin_us)
    address, holder = reserve_port(args.listen) if args.workers > 1 else (args.listen, None)
    if args.workers == 1:
        parent, child = multiprocessing.Pipe()
        t = threading.Thread(target=lambda: print(json.dumps({"event": "listening", "decisions":
                                                              f"{address.rpartition(':')[0]}:{parent.recv()}",
                                                              "spin_n": spin_n, "spin_p99_ratio": p99_ratio}),
                                                  flush=True), daemon=True)
        t.start()
        _serve_one(address, args.threads, child, cpu_of(0), spin_n, p99_ratio)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_serve_one,
                         args=(address, args.threads, None, cpu_of(i), spin_n, p99_ratio))
             for i in range(args.workers)]
    for proc in procs:
        proc.start()
    print(json.dumps({"event": "listening", "decisions": address, "pid": os.getpid(), "spin_n": spin_n,
                      "spin_p99_ratio": p99_ratio}),
          flush=True)
    stop = stop_event()
    stop.wait()
    for proc in procs:
        proc.terminate()
        proc.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
