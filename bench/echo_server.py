"""The floor: a gRPC echo on Maple's own server stack.

Same ``grpc.server`` construction, thread pool, options (keepalive, message
sizes, SO_REUSEPORT) and worker processes as ``maple serve``; the handler
returns the request bytes unparsed.  The load generator sends it the very
bytes it sends Decide, so the difference is what deciding costs.

    python -m bench.echo_server --listen 127.0.0.1:0 --workers 1 [--cpu-affinity auto]

``--cpu-affinity`` keeps each worker on one CPU as ``maple serve
--cpu-affinity`` does (engine.server.affinity): the floor on the same
footing as the Decide it is compared with.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading

import grpc

from engine.server import affinity
from engine.server.app import make_server, stop_event
from engine.server.workers import reserve_port

METHOD = "/maple.bench.Echo/Echo"


def _echo(request: bytes, context) -> bytes:
    return request


def _serve_one(address: str, threads: int, ready=None, cpu: int | None = None) -> None:
    if cpu is not None:
        affinity.pin(cpu)                   # before the server starts its threads
    server = make_server(threads, 512, 4 * 1024 * 1024, reuseport=True)     # --workers share the port
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "maple.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}),))
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
    args = p.parse_args(argv)
    try:
        cpus = affinity.parse(args.cpu_affinity)
    except ValueError as err:
        p.error(f"--cpu-affinity {args.cpu_affinity}: {err}")
    cpu_of = (lambda i: None) if cpus is None else (lambda i: affinity.cpu_for(cpus, i))   # noqa: E731
    address, holder = reserve_port(args.listen) if args.workers > 1 else (args.listen, None)
    if args.workers == 1:
        parent, child = multiprocessing.Pipe()
        t = threading.Thread(target=lambda: print(json.dumps({"event": "listening", "decisions":
                                                              f"{address.rpartition(':')[0]}:{parent.recv()}"}),
                                                  flush=True), daemon=True)
        t.start()
        _serve_one(address, args.threads, child, cpu_of(0))
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_serve_one, args=(address, args.threads, None, cpu_of(i)))
             for i in range(args.workers)]
    for proc in procs:
        proc.start()
    print(json.dumps({"event": "listening", "decisions": address, "pid": os.getpid()}), flush=True)
    stop = stop_event()
    stop.wait()
    for proc in procs:
        proc.terminate()
        proc.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
