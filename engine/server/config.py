"""``maple serve`` configuration: flags, each with an environment variable.

A flag wins over its variable, the variable over the default.  The table
:data:`OPTIONS` is the single list: the CLI builds its flags from it and
docs/service.md documents it.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, fields

from ..profiles.cache import MAX_BYTES, MAX_ENTRIES, TTL


@dataclass(frozen=True)
class ServeConfig:
    rules: str
    listen: str = "0.0.0.0:50051"
    admin_listen: str = "127.0.0.1:50052"
    workers: int = 0                     # 0: one per core
    store: str = ""                      # profile store URL ("" / none, sqlite:///PATH, redis://..., jsonl:PATH)
    profile_cache_ttl: float = TTL       # seconds a cached profile is served: the staleness bound
    profile_cache_size: int = MAX_ENTRIES  # profiles cached per worker
    profile_cache_mib: float = MAX_BYTES / 2**20   # and their memory, at most (engine.profiles.cache.held_size)
    profile_cache_feed: str = "on"       # keep cached profiles until the store's change feed says they changed
    data: str = ""                       # stores/catalogue/inventory files ("": RULES/data; "none")
    metrics_port: int | None = None      # None: no metrics endpoint
    metrics_host: str = "0.0.0.0"
    threads: int = 8                     # handler threads per worker
    max_concurrent_rpcs: int = 512       # per worker; beyond: RESOURCE_EXHAUSTED
    max_message_bytes: int = 4 * 1024 * 1024
    drain_seconds: float = 1.0           # NOT_SERVING but still answering, after SIGTERM
    grace_seconds: float = 10.0          # then at most this long for in-flight calls
    admin_token: str = ""                # when set, AdminService needs "authorization: Bearer <token>"
    log_level: str = "INFO"
    state: str = ".maple/state"          # every live version kept here (rollback, restart fallback)
    watch: str = "on"                    # reload when the rules directory changes: on, poll or off
    watch_debounce_ms: int = 300         # group a burst of edits for at most this long
    decision_log: str = ""               # sampled, masked decision log (JSON Lines); "" = none
    decision_log_rate: float = 0.01      # fraction of decisions logged
    cpu_latency_us: int | None = None    # None: leave the kernel's CPU idle states alone
    cpu_affinity: str = "off"            # off, auto or a CPU list: each decision process kept on one CPU

    @property
    def cpus(self) -> tuple[int, ...] | None:
        """The CPUs ``--cpu-affinity`` pins the decision processes to, in
        order (worker i on the i-th, round robin); None for off."""
        from .affinity import parse
        return parse(self.cpu_affinity)

    @property
    def data_dir(self) -> str:
        """Where the store data is: --data, else RULES/data when it exists."""
        if self.data == "none":
            return ""
        if self.data:
            return self.data
        default = os.path.join(self.rules, "data")
        return default if os.path.isfile(os.path.join(default, "stores.csv")) else ""

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else cores()


def cores() -> int:
    """The CPUs this process may run on (``taskset``, a container's cpuset):
    what "one worker per core" counts.  ``os.cpu_count()`` counts the
    host's, so a container given 2 CPUs of 64 would start 64 workers."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:                  # no sched_getaffinity (not Linux)
        return os.cpu_count() or 1


#: (field, flag, type, help); the environment variable is MAPLE_<FIELD>.
STORE_SCHEMES = ("jsonl", "sqlite", "redis", "rediss", "unix", "redis-cluster", "rediss-cluster")

OPTIONS = [
    ("rules", "--rules", str, "rules directory (required)"),
    ("listen", "--listen", str, "decision service address HOST:PORT (port 0: any free port)"),
    ("admin_listen", "--admin-listen", str, "admin service address HOST:PORT; 'off' disables it"),
    ("workers", "--workers", int,
     "processes sharing the decision port (SO_REUSEPORT); 0: one per core this process may run on"),
    ("store", "--store", str, "profile store URL: sqlite://PATH (sqlite://.maple/profiles.db is relative, sqlite:///var/... absolute), redis://HOST:PORT/DB, redis-cluster://HOST:PORT, jsonl:PATH or none"),
    ("profile_cache_ttl", "--profile-cache-ttl", float,
     "seconds a cached profile is served without asking the store (the staleness bound across replicas)"),
    ("profile_cache_size", "--profile-cache-size", int, "profiles cached per worker, at most"),
    ("profile_cache_mib", "--profile-cache-mib", float,
     "memory the cached profiles of one worker take, at most, in MiB (their bytes, ~4x while decoded, and "
     "~300 bytes each of bookkeeping)"),
    ("profile_cache_feed", "--profile-cache-feed", str,
     "on: with a SQLite or Redis store, a cached profile stays valid until another process changes it (the "
     "store's change feed, read every quarter ttl, at most 1 s apart), within the same staleness bound; off: for "
     "one ttl"),
    ("data", "--data", str, "directory of stores.csv, catalog.csv, inventory.csv, or none (default: RULES/data)"),
    ("metrics_port", "--metrics-port", int, "serve Prometheus metrics over HTTP on this port"),
    ("metrics_host", "--metrics-host", str,
     "host of the metrics endpoint, without a port: a name or an address (IPv6 with or without brackets)"),
    ("threads", "--threads", int, "handler threads per worker"),
    ("max_concurrent_rpcs", "--max-concurrent-rpcs", int,
     "RPCs one worker handles at once; beyond it answers RESOURCE_EXHAUSTED"),
    ("max_message_bytes", "--max-message-bytes", int, "largest request or response (RESOURCE_EXHAUSTED beyond)"),
    ("drain_seconds", "--drain-seconds", float, "after SIGTERM: report NOT_SERVING but keep answering this long"),
    ("grace_seconds", "--grace-seconds", float, "then wait at most this long for in-flight calls"),
    ("admin_token", "--admin-token", str, "bearer token AdminService requires"),
    ("log_level", "--log-level", str.upper, "DEBUG, INFO, WARNING or ERROR"),
    ("state", "--state", str, "state directory: every live ruleset version, for rollback and restarts"),
    ("watch", "--watch", str, "reload when the rules directory changes: on (file events), poll, or off"),
    ("watch_debounce_ms", "--watch-debounce-ms", int, "group a burst of edits for at most this many ms"),
    ("decision_log", "--decision-log", str, "append a sampled decision log (JSON Lines, personal fields masked)"),
    ("decision_log_rate", "--decision-log-rate", float, "fraction of decisions the decision log keeps"),
    ("cpu_latency_us", "--cpu-latency-us", int,
     "while serving, hold the kernel's CPU wake-up latency limit (/dev/cpu_dma_latency) at this many µs; "
     "0: idle cores poll instead of halting (lowest latency, idle cores spin; needs root)"),
    ("cpu_affinity", "--cpu-affinity", str,
     "keep each decision process on one CPU (worker i on the i-th CPU of the list; the supervisor and the "
     "rules compiler stay free): off, auto (the CPUs this process may run on) or a list such as 0,2-3. "
     "For a host that runs one maple serve"),
]


#: the values a flag may take (argparse ``choices``; the variable is checked the same)
CHOICES = {
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "watch": ("on", "poll", "off"),
    "profile_cache_feed": ("on", "off"),
}

#: the smallest --max-message-bytes: health checks and reflection must still fit
MIN_MESSAGE_BYTES = 1024


class ConfigError(SystemExit):
    """A setting ``maple serve`` refuses before anything starts.  The message
    names the flag (or the variable it came from); ``maple serve`` prints it
    and exits 2, as argparse does for a bad flag."""

    exit_code = 2


def env_name(field: str) -> str:
    return "MAPLE_" + field.upper()


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:50051``) as (host,
    port); ValueError saying what is wrong.  The port is required, 0 to
    65535 (0: any free port)."""
    if address.startswith("["):
        inside, sep, rest = address[1:].partition("]")
        if not sep:
            raise ValueError("an IPv6 address needs its closing bracket: [::1]:PORT")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"[{inside}] is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError("the port is missing: use HOST:PORT, e.g. [::1]:50051")
        host, port = address[:len(inside) + 2], rest[1:]
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError("the port is missing: use HOST:PORT, e.g. 0.0.0.0:50051")
        if ":" in host:
            raise ValueError("an IPv6 address goes in brackets: [::1]:PORT")
        if not host or host != host.strip():
            raise ValueError("the host is missing: use HOST:PORT, e.g. 0.0.0.0:50051")
    if not port.isascii() or not port.isdigit():
        raise ValueError(f"the port {port!r} is not a number from 0 to 65535")
    if int(port) > 65535:
        raise ValueError(f"the port {port} is not from 0 to 65535")
    return host, int(port)


_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def parse_host(host: str) -> str:
    """A host alone (``--metrics-host``): a name, an IPv4 address or an IPv6
    address, in brackets or not; returned without the brackets (what the
    HTTP server binds).  ValueError saying what is wrong."""
    bracketed = host.startswith("[") and host.endswith("]")
    inside = host[1:-1] if bracketed else host
    if not inside.strip():
        raise ValueError("the host is missing: use a name or an address, e.g. 0.0.0.0 or [::]")
    if ":" in inside or bracketed or host.startswith("["):
        try:
            ipaddress.IPv6Address(inside)
            return inside
        except ValueError:
            pass
        name, _, port = inside.rpartition(":")
        if not bracketed and port.isascii() and port.isdigit() and name and (":" not in name or name.endswith("]")):
            raise ValueError("give the host alone: the port is --metrics-port (MAPLE_METRICS_PORT)")
        raise ValueError(f"{inside} is not an IPv6 address" if bracketed
                         else "not a host name or address (an IPv6 address: :: or [::])")
    if not _HOST_NAME.fullmatch(inside):
        raise ValueError("not a host name or address (letters, digits, '.', '-')")
    return inside


def _checks(values: dict, name) -> None:
    """Refuse values the server cannot start (or run) with.  ``name(field)``:
    the flag or variable the value came from, for the message."""
    def bad(field, why):
        where = name(field)
        shown = f"{where} {values[field]!r}" if where.startswith("--") else f"{where}={values[field]!r}"
        raise ConfigError(f"maple serve: {shown}: {why}")

    for field in ("listen", "admin_listen"):
        value = values.get(field)
        if value is None or (field == "admin_listen" and value == "off"):
            continue
        try:
            parse_address(value)
        except ValueError as err:
            bad(field, f"{err}" + (" (or off)" if field == "admin_listen" else ""))
    if values.get("metrics_host") is not None:
        try:
            parse_host(values["metrics_host"])
        except ValueError as err:
            bad("metrics_host", str(err))
    port = values.get("metrics_port")
    if port is not None and not 0 <= port <= 65535:
        bad("metrics_port", "the port must be from 0 to 65535 (0: any free port)")
    for field, choices in CHOICES.items():
        if field in values and values[field] not in choices:
            bad(field, f"use one of {', '.join(choices)}")
    if values.get("workers", 0) < 0:
        bad("workers", "use 1 or more, or 0 for one per core")
    for field in ("threads", "max_concurrent_rpcs", "profile_cache_size"):
        if values.get(field, 1) < 1:
            bad(field, "must be 1 or more")
    if values.get("max_message_bytes", MIN_MESSAGE_BYTES) < MIN_MESSAGE_BYTES:
        bad("max_message_bytes", f"must be at least {MIN_MESSAGE_BYTES} (health checks must fit)")
    mib = values.get("profile_cache_mib", 1.0)
    if not (math.isfinite(mib) and mib >= 1.0):
        bad("profile_cache_mib", "must be a number of MiB >= 1")
    for field in ("drain_seconds", "grace_seconds", "profile_cache_ttl"):
        value = values.get(field, 0.0)
        if not (math.isfinite(value) and value >= 0):
            bad(field, "must be a number of seconds >= 0")
    if values.get("cpu_latency_us") is not None and not 0 <= values["cpu_latency_us"] <= 0x7FFFFFFF:
        bad("cpu_latency_us", "must be a whole number of microseconds >= 0 (0: idle cores poll)")
    if values.get("cpu_affinity") is not None:
        from .affinity import parse
        try:
            parse(values["cpu_affinity"])
        except ValueError as err:
            bad("cpu_affinity", str(err))
    if values.get("watch_debounce_ms", 0) < 0:
        bad("watch_debounce_ms", "must be >= 0")
    rate = values.get("decision_log_rate", 0.01)
    if not 0.0 <= rate <= 1.0:             # NaN too
        bad("decision_log_rate", "must be from 0 to 1")
    store = values.get("store", "")
    if store and store != "none" and store.partition(":")[0] not in STORE_SCHEMES:
        bad("store", "use sqlite://PATH, redis://HOST:PORT/DB, redis-cluster://HOST:PORT, jsonl:PATH or none")
    data = values.get("data", "")
    if data and data != "none" and not os.path.isdir(data):
        bad("data", "not a directory" if os.path.exists(data) else "no such directory (none: no store data)")


def from_args(args, environ=os.environ) -> ServeConfig:
    """Flags (None when not given) over MAPLE_* variables over defaults.
    ConfigError (exit 2) for a value the server cannot use."""
    values, source = {}, {}
    types = {f: t for f, _flag, t, _h in OPTIONS}
    flags = {f: flag for f, flag, _t, _h in OPTIONS}
    for f in fields(ServeConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name], source[f.name] = given, flags[f.name]
        elif env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            source[f.name] = env_name(f.name)
            try:
                values[f.name] = types[f.name](raw)
            except ValueError:
                kind = {int: "whole number", float: "number"}.get(types[f.name], "value")
                raise ConfigError(f"maple serve: {env_name(f.name)}={raw!r} is not a {kind}") from None
    if "rules" not in values:
        raise ConfigError("maple serve: --rules DIR (or MAPLE_RULES) is required")
    _checks(values, lambda field: source.get(field, flags[field]))
    if "metrics_host" in values:
        values["metrics_host"] = parse_host(values["metrics_host"])
    return ServeConfig(**values)
