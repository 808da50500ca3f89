"""``maple serve`` configuration: flags, each with an environment variable.

A flag wins over its variable, the variable over the default.  The table
:data:`OPTIONS` is the single list: the CLI builds its flags from it and
docs/service.md documents it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ServeConfig:
    rules: str
    listen: str = "0.0.0.0:50051"
    admin_listen: str = "127.0.0.1:50052"
    workers: int = 0                     # 0: one per core
    store: str = ""                      # profile store URL ("" / none, sqlite:///PATH, redis://..., jsonl:PATH)
    profile_cache_ttl: float = 1.0       # seconds a cached profile is served: the staleness bound
    profile_cache_size: int = 100_000    # profiles cached per worker
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
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


#: (field, flag, type, help); the environment variable is MAPLE_<FIELD>.
STORE_SCHEMES = ("jsonl", "sqlite", "redis", "rediss", "unix")

OPTIONS = [
    ("rules", "--rules", str, "rules directory (required)"),
    ("listen", "--listen", str, "decision service address HOST:PORT (port 0: any free port)"),
    ("admin_listen", "--admin-listen", str, "admin service address HOST:PORT; 'off' disables it"),
    ("workers", "--workers", int, "processes sharing the decision port (SO_REUSEPORT); 0: one per core"),
    ("store", "--store", str, "profile store URL: sqlite://PATH (sqlite://.maple/profiles.db is relative, sqlite:///var/... absolute), redis://HOST:PORT/DB, jsonl:PATH or none"),
    ("profile_cache_ttl", "--profile-cache-ttl", float,
     "seconds a cached profile is served without asking the store (the staleness bound across replicas)"),
    ("profile_cache_size", "--profile-cache-size", int, "profiles cached per worker"),
    ("data", "--data", str, "directory of stores.csv, catalog.csv, inventory.csv (default RULES/data; none)"),
    ("metrics_port", "--metrics-port", int, "serve Prometheus metrics over HTTP on this port"),
    ("metrics_host", "--metrics-host", str, "address of the metrics endpoint"),
    ("threads", "--threads", int, "handler threads per worker"),
    ("max_concurrent_rpcs", "--max-concurrent-rpcs", int,
     "RPCs one worker handles at once; beyond it answers RESOURCE_EXHAUSTED"),
    ("max_message_bytes", "--max-message-bytes", int, "largest request or response (RESOURCE_EXHAUSTED beyond)"),
    ("drain_seconds", "--drain-seconds", float, "after SIGTERM: report NOT_SERVING but keep answering this long"),
    ("grace_seconds", "--grace-seconds", float, "then wait at most this long for in-flight calls"),
    ("admin_token", "--admin-token", str, "bearer token AdminService requires (default: none)"),
    ("log_level", "--log-level", str, "DEBUG, INFO, WARNING or ERROR"),
    ("state", "--state", str, "state directory: every live ruleset version, for rollback and restarts"),
    ("watch", "--watch", str, "reload when the rules directory changes: on (file events), poll, or off"),
    ("watch_debounce_ms", "--watch-debounce-ms", int, "group a burst of edits for at most this many ms"),
    ("decision_log", "--decision-log", str, "append a sampled decision log (JSON Lines, personal fields masked)"),
    ("decision_log_rate", "--decision-log-rate", float, "fraction of decisions the decision log keeps"),
]


def env_name(field: str) -> str:
    return "MAPLE_" + field.upper()


def from_args(args, environ=os.environ) -> ServeConfig:
    """Flags (None when not given) over MAPLE_* variables over defaults."""
    values = {}
    types = {f: t for f, _flag, t, _h in OPTIONS}
    for f in fields(ServeConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
        elif env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            try:
                values[f.name] = types[f.name](raw)
            except ValueError:
                raise SystemExit(f"maple serve: {env_name(f.name)}={raw!r} is not a valid {types[f.name].__name__}")
    if "rules" not in values:
        raise SystemExit("maple serve: --rules DIR (or MAPLE_RULES) is required")
    if values.get("watch", "on") not in ("on", "poll", "off"):
        raise SystemExit(f"maple serve: --watch must be on, poll or off, not {values['watch']!r}")
    if not 0.0 <= values.get("decision_log_rate", 0.01) <= 1.0:
        raise SystemExit("maple serve: --decision-log-rate must be from 0 to 1")
    store = values.get("store", "")
    if store and store != "none" and store.partition(":")[0] not in STORE_SCHEMES:
        raise SystemExit(f"maple serve: --store {store!r}: use sqlite://PATH, redis://HOST:PORT/DB, "
                         "jsonl:PATH or none")
    if values.get("profile_cache_ttl", 1.0) < 0 or values.get("profile_cache_size", 1) < 1:
        raise SystemExit("maple serve: --profile-cache-ttl must be >= 0 and --profile-cache-size >= 1")
    return ServeConfig(**values)
