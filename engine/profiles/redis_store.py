"""Profiles in Redis, shared by many replicas.

Keys (``maple:`` is the default prefix; in a Redis Cluster ``{maple}:``, a
hash tag, so that a batch's keys share one slot: docs/profiles.md, "Redis
Cluster")::

    maple:p:<customer id>      the profile, MessagePack
    maple:a:<kind>:<value>     alias -> customer id ("maple:a:email_hash:ab12")
    maple:ca:<customer id>     set of the customer's alias keys (for merges)
    maple:e:<event id>         customer id; the dedupe record, expires after
                               ``dedupe_ttl`` (default: the validator's
                               dedupe_horizon, max_past + max_future + 1 h)
    maple:seq                  the customer creation counter
    maple:changes              the change feed: a stream, one entry per batch
                               holding the alias keys it changed (see below)

A batch is applied with optimistic locking: WATCH every key the batch reads
(its event ids, aliases, profiles), read, fold in Python, then write
everything in one MULTI/EXEC holding a single Lua call (WRITE_BATCH).  If
another replica changed a watched key
meanwhile, EXEC fails and the batch is planned again from fresh reads, so a
batch is applied atomically and exactly once however many replicas write.

The change feed (``maple:changes``): the same Lua call appends one stream
entry per batch, field ``k``: a JSON list of the alias keys the batch
changed (``customer_id:<id>`` for each profile written or deleted, and
every identifier it pointed), capped at about ``feed_length`` entries
(``MAXLEN ~``).  Each replica's cache reads it (:meth:`RedisStore.changes_since`,
``CachedStore.sync``) and drops what the others changed.  A reader whose
last entry has been trimmed away is told it missed some.  Only writers of
this version feed it: while replicas of an earlier Maple still write the
store (a rolling upgrade), run the new ones with ``--profile-cache-feed
off``.

Dedupe window: a dedupe record lives ``dedupe_ttl`` seconds, by default
the validator's ``dedupe_horizon`` (401 days and an hour).  An event
applied at time ``a`` has a timestamp ``t <= a + max_future`` (a day); a
later copy is only accepted while ``now - t <= max_past`` (400 days), hence
at the latest while ``now - a <= max_past + max_future``: the record is
still there (the hour more is for replicas whose clocks disagree).  So the
window loses no idempotency, at the price of one small key per event for
that long; shorten ``max_past`` if memory matters (the horizon follows).

Durability: Redis acknowledges a write before it is on disk unless it is
configured with ``appendonly yes`` and ``appendfsync always``; with
``everysec`` (its default) up to a second of acknowledged events can be
lost in a crash.  :meth:`RedisStore.health` reports which it is, and
the store logs one warning when it finds a server that is not fsyncing
every write: at open, or, when Redis could not be reached then, on the
first command that reaches it; again on the first contact after every
outage (a restarted or failed-over Redis may be configured differently).
"""
from __future__ import annotations

import logging
import threading
from typing import Sequence

import msgspec
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry

from .ingest import Changes, plan
from .store import Feed, Health, ProfileStore, StoreError, StoreUnavailable, decode, encode, own_alias, safe_url

log = logging.getLogger(__name__)

#: ``redis-cluster://HOST:PORT`` (any node; the client reads the rest of
#: the cluster from it) and its TLS twin: the scheme the client is given.
CLUSTER_SCHEMES = {"redis-cluster": "redis", "rediss-cluster": "rediss"}
#: In a cluster every key of a batch must be in one hash slot (WATCH, MULTI
#: and the script): the braces make ``maple`` the hash tag of every key.
CLUSTER_PREFIX = "{maple}:"

MAX_ATTEMPTS = 20            # optimistic-locking retries before giving up
SEQ_BLOCK = 100              # creation numbers reserved per INCRBY
FEED_LENGTH = 10_000         # change feed entries (batches) kept, about (MAXLEN ~)
FEED_READ = 1_000            # entries one read of the feed returns at most (more: incomplete)

#: One planned batch's writes, run inside MULTI/EXEC (so only if no watched
#: key changed).  Sent with EVAL, not EVALSHA: a restarted server has no
#: script cache, and the text is small next to the batch.  On Redis 7+ the
#: ``#!lua`` line makes the server refuse the whole script up front when it
#: is out of memory, instead of failing halfway through its writes.
WRITE_BATCH = """
-- KEYS: deleted | profiles | aliases | alias sets | events | the change feed   (counts in ARGV[1..4])
-- ARGV: counts, dedupe ttl, feed length, feed entry | profiles | alias targets | alias names | event customers
local nd, np, na, ne, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[6], '*', 'k', ARGV[7])
local k, a = 0, 7
for i = 1, nd do redis.call('DEL', KEYS[k + i]) end
k = k + nd
for i = 1, np do redis.call('SET', KEYS[k + i], ARGV[a + i]) end
k, a = k + np, a + np
for i = 1, na do redis.call('SET', KEYS[k + i], ARGV[a + i]) end
for i = 1, na do redis.call('SADD', KEYS[k + na + i], ARGV[a + na + i]) end
k, a = k + 2 * na, a + 2 * na
for i = 1, ne do redis.call('SET', KEYS[k + i], ARGV[a + i], 'EX', ttl) end
return np
"""

#: The store cannot answer now (retrying later is safe): the connection, or a
#: cluster that is failing over or moving the slot (CLUSTERDOWN, TRYAGAIN).
_DOWN = (redis.ConnectionError, redis.TimeoutError, RedisClusterException, ClusterDownError, TryAgainError)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _position(position: str) -> tuple[str, int]:
    """A feed position, "<entry id>/<entries ever added>" -> its parts."""
    entry_id, _, added = position.partition("/")
    return entry_id, int(added or -1)


def _entry_id(text) -> tuple[int, int]:
    """A stream entry id ("1700000000000-3", str or bytes), comparable."""
    ms, _, seq = _text(text).partition("-")
    return int(ms), int(seq or 0)


def _stream_entries(read) -> list[tuple[bytes, bytes]]:
    """(entry id, field ``k``) of XREAD's entries of its one stream, as a
    client parses them ([[stream, [(id, {field: value})]]]) or as a
    cluster's transaction hands them over ({stream: [[id, [field, value]]]})."""
    if not read:
        return []
    entries = next(iter(read.values())) if isinstance(read, dict) else read[0][1]
    out = []
    for entry_id, fields in entries:
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2]))
        out.append((entry_id, fields[b"k"]))
    return out


def _durable(conf: dict | None) -> bool | None:
    if conf is None:
        return None
    return conf.get("appendonly") == "yes" and conf.get("appendfsync") == "always"


def _unavailable(url: str, err: Exception, writing: bool = False) -> StoreUnavailable:
    tail = ("; the batch was not acknowledged (it may or may not be stored: retrying it is safe)"
            if writing else "")
    return StoreUnavailable(f"{url}: {type(err).__name__}: {err}{tail}")


class _Reader:
    """A watched pipeline's view of the store (see ingest.Reader): every key
    read is WATCHed first, so EXEC fails if another client changed it."""

    def __init__(self, pipe, store: "RedisStore"):
        self.pipe, self.k = pipe, store.key
        self._seq, self._seq_end = 0, 0

    def _get(self, keys: list[str]) -> list:
        self.pipe.watch(*keys)
        return self.pipe.execute_command("MGET", *keys)

    def seen(self, event_ids):
        values = self._get([self.k("e", e) for e in event_ids])
        return {e for e, v in zip(event_ids, values) if v is not None}

    def aliases(self, keys):
        values = self._get([self.k("a", a) for a in keys])
        return {a: v.decode() for a, v in zip(keys, values) if v is not None}

    def profiles(self, customer_ids):
        values = self._get([self.k("p", c) for c in customer_ids])
        return {c: decode(v) for c, v in zip(customer_ids, values) if v is not None}

    def aliases_of(self, customer_id):
        key = self.k("ca", customer_id)
        self.pipe.watch(key)
        return [m.decode() for m in self.pipe.smembers(key)]

    def next_seq(self):
        """Creation numbers are reserved SEQ_BLOCK at a time (gaps are fine:
        only their order matters), so new customers cost no round trip each."""
        if self._seq == self._seq_end:
            self._seq_end = int(self.pipe.incrby(self.k("seq"), SEQ_BLOCK))
            self._seq = self._seq_end - SEQ_BLOCK
        self._seq += 1
        return self._seq


class RedisStore(ProfileStore):
    """Profiles in Redis (see the module docstring for keys and guarantees)."""

    warns_durability = True     # it logs its own durability warning (see _check_durability)

    has_change_feed = True      # maple:changes, appended by WRITE_BATCH (see the module docstring)

    def __init__(self, client: redis.Redis | RedisCluster, url: str, *, prefix: str | None = None,
                 dedupe_ttl: float | None = None, feed_length: int = FEED_LENGTH, **options):
        super().__init__(url, **options)
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.prefix = prefix if prefix is not None else CLUSTER_PREFIX if self.cluster else "maple:"
        if self.cluster and not self.prefix.startswith("{"):
            raise StoreError(f"{self.url}: in a Redis Cluster the key prefix must be a hash tag "
                             f"(like {CLUSTER_PREFIX!r}): a batch's keys must share one slot")
        self.dedupe_ttl = int(dedupe_ttl if dedupe_ttl is not None else self.validation.dedupe_horizon)
        self.feed_length = int(feed_length)
        self._script: str | None = None
        self._write_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._unchecked = True      # durability not seen since open or since the last outage
        try:
            self._check_durability()
        except _DOWN:
            pass                    # not reachable yet: checked on the first command that reaches it

    @classmethod
    def from_url(cls, url: str, *, create: bool = True, socket_timeout: float = 2.0,
                 connect_timeout: float = 0.5, **options) -> "RedisStore":
        """``redis://``, ``rediss://``, ``unix://``: one Redis server (or
        whatever one address answers for, e.g. a Sentinel-managed primary
        behind a proxy).  ``redis-cluster://HOST:PORT`` (``rediss-cluster``
        with TLS): a Redis Cluster, reached through any of its nodes, which
        must answer now (the client reads the cluster's layout at open).
        ``create`` is accepted for symmetry with SQLite and ignored."""
        retry = Retry(ExponentialBackoff(cap=0.1, base=0.01), 2)
        scheme, _, rest = url.partition("://")
        if scheme not in CLUSTER_SCHEMES:
            client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                          socket_connect_timeout=connect_timeout, retry=retry)
            return cls(client, url, **options)
        plain = f"{CLUSTER_SCHEMES[scheme]}://{rest}"
        path = urlsplit(plain).path
        if path not in ("", "/", "/0"):
            raise StoreError(f"{safe_url(url)}: a Redis Cluster has database 0 only (the URL names {path[1:]!r})")
        try:
            client = RedisCluster.from_url(plain, socket_timeout=socket_timeout,
                                           socket_connect_timeout=connect_timeout, retry=retry)
        except (RedisClusterException, redis.RedisError) as err:
            raise StoreUnavailable(f"{safe_url(url)}: cannot read the cluster's layout from that node: "
                                   f"{type(err).__name__}: {err}") from err
        try:
            return cls(client, url, **options)
        except BaseException:
            client.close()
            raise

    def _node(self) -> dict:
        """Where a per-server command goes: in a cluster, the primary of the
        slot holding Maple's keys (its settings are the ones that count)."""
        return {"target_nodes": self.client.get_node_from_key(self.key("seq"))} if self.cluster else {}

    def key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}:{name}" if name else f"{self.prefix}{kind}"

    # -- writes
    def _commit(self, events) -> Changes:
        """One batch at a time per store object: threads of one process (the
        server's RPC threads) would only make each other's WATCHes fail on
        the busy customers and plan again (measured with 4 threads: 1,700
        events/s instead of ~6,000).  Other replicas are still kept apart by
        WATCH."""
        with self._write_lock:
            for _attempt in range(MAX_ATTEMPTS):
                try:
                    if self._unchecked:
                        self._check_durability()        # before the batch is acknowledged
                    with self.client.pipeline(transaction=True) as pipe:
                        changes = plan(events, _Reader(pipe, self), self.fold_config)
                        if self._has_writes(changes):     # (a batch of duplicates writes nothing)
                            pipe.multi()
                            self._queue(pipe, changes)
                            pipe.execute()
                        return changes
                except redis.WatchError:
                    continue            # another writer (or a dropped connection): plan again
                except _DOWN as err:
                    self._unchecked = True
                    raise _unavailable(self.url, err, writing=True) from err
                except redis.ResponseError as err:
                    raise StoreError(f"{self.url}: {err}; the batch was not acknowledged") from err
        raise StoreError(f"{self.url}: a batch kept conflicting with other writers "
                         f"({MAX_ATTEMPTS} attempts); nothing was acknowledged, retry it")

    @staticmethod
    def _has_writes(changes: Changes) -> bool:
        return bool(changes.deleted or changes.profiles or changes.aliases or changes.applied)

    def _queue(self, pipe, changes: Changes) -> None:
        """All of a batch's writes as ONE command (WRITE_BATCH), queued
        between MULTI and EXEC."""
        k = self.key
        deleted = [key for cid in changes.deleted for key in (k("p", cid), k("ca", cid))]
        aliases = list(changes.aliases.items())
        keys = (deleted + [k("p", cid) for cid in changes.profiles] + [k("a", a) for a, _ in aliases]
                + [k("ca", cid) for _, cid in aliases] + [k("e", e) for e, _ in changes.applied]
                + [k("changes")])
        changed = list(dict.fromkeys([*(own_alias(cid) for cid in changes.deleted),
                                      *(own_alias(cid) for cid in changes.profiles), *changes.aliases]))
        args = ([len(deleted), len(changes.profiles), len(aliases), len(changes.applied), self.dedupe_ttl,
                 self.feed_length, msgspec.json.encode(changed)]
                + [encode(p) for p in changes.profiles.values()] + [cid for _, cid in aliases]
                + [a for a, _ in aliases] + [cid for _, cid in changes.applied])
        pipe.execute_command("EVAL", self._write_script(), len(keys), *keys, *args)

    def _write_script(self) -> str:
        if self._script is None:
            major = int(str(self.client.info("server", **self._node()).get("redis_version", "6")).split(".")[0])
            self._script = ("#!lua\n" if major >= 7 else "") + WRITE_BATCH
        return self._script

    # -- reads
    def _call(self, fn, *args):
        try:
            if self._unchecked:
                self._check_durability()
            return fn(*args)
        except _DOWN as err:
            self._unchecked = True
            raise _unavailable(self.url, err) from err

    def get(self, customer_id: str) -> dict | None:
        raw = self.get_encoded(customer_id)
        return None if raw is None else decode(raw)

    def get_encoded(self, customer_id: str) -> bytes | None:
        raw = self._call(self.client.get, self.key("p", customer_id))
        if raw is None:
            cid = self.resolve("customer_id", customer_id)
            if cid is None or cid == customer_id:
                return None
            raw = self._call(self.client.get, self.key("p", cid))
        return raw

    def get_many_encoded(self, customer_ids: Sequence[str]) -> dict[str, bytes | None]:
        """As ``get_encoded`` for each id, in at most three MGETs: the
        profiles by id, the own alias of the ids without one (merged away),
        their survivors' profiles."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        blobs = {c: raw for c, raw in zip(ids, self._call(self.client.mget, [self.key("p", c) for c in ids]))
                 if raw is not None}
        missing = [c for c in ids if c not in blobs]
        moved: dict[str, str] = {}
        if missing:
            targets = self._call(self.client.mget, [self.key("a", own_alias(c)) for c in missing])
            moved = {c: t.decode() for c, t in zip(missing, targets) if t is not None and t.decode() != c}
            wanted = [cid for cid in dict.fromkeys(moved.values()) if cid not in blobs]
            if wanted:
                blobs.update((cid, raw) for cid, raw in zip(
                    wanted, self._call(self.client.mget, [self.key("p", cid) for cid in wanted])) if raw is not None)
        return {cid: blobs.get(moved.get(cid, cid)) for cid in ids}

    def changes_since(self, position: str | None) -> Feed:
        """The change feed (``maple:changes``) after ``position``, in one
        MULTI: XINFO STREAM and XREAD of up to FEED_READ entries.  A
        position is ``<last entry id>/<entries ever added>`` as XINFO said
        then, so the entries since are counted (Redis 7+): fewer read than
        added means some were trimmed away (the reader is more than
        ``feed_length`` batches behind) and the feed is incomplete, as it is
        for None, past FEED_READ entries, for a stream gone or recreated
        (fewer entries ever added), and for ids that went back (a restore,
        or a failover to a replica that lagged: the last id is below the
        position).  Redis 6 (no count): incomplete when the first entry
        left is past the position."""
        key = self.key("changes")
        after = _position(position)[0] if position is not None else "$"
        try:
            if self._unchecked:
                self._check_durability()
            with self.client.pipeline(transaction=True) as pipe:
                pipe.exists(key)
                pipe.xinfo_stream(key)
                pipe.xread({key: after}, count=FEED_READ + 1)
                exists, info, read = pipe.execute(raise_on_error=False)
            if isinstance(exists, Exception):
                raise exists
            if not exists:
                last, added, first = "0-0", 0, None
            elif isinstance(info, Exception):
                raise info
            else:
                info = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
                last = _text(info["last-generated-id"])
                added = info.get("entries-added")           # (Redis 7+)
                first = info.get("first-entry")
            head = f"{last}/{-1 if added is None else added}"
            if position is None:
                return Feed(head, [], False)
            if isinstance(read, Exception):
                raise read
            entries = _stream_entries(read)
            since, counted = _position(position)
            if _entry_id(last) < _entry_id(since) or len(entries) > FEED_READ:
                return Feed(head, [], False)
            if added is not None and counted >= 0:
                if added - counted != len(entries):         # trimmed past us, or recreated
                    return Feed(head, [], False)
            elif since != "0-0" and (first is None or _entry_id(first[0]) > _entry_id(since)):
                return Feed(head, [], False)
            return Feed(head, [k for _id, changed in entries for k in msgspec.json.decode(changed)], True)
        except _DOWN as err:
            self._unchecked = True
            raise _unavailable(self.url, err) from err

    def resolve(self, kind: str, value: str) -> str | None:
        raw = self._call(self.client.get, self.key("a", f"{kind}:{value}"))
        return raw.decode() if raw is not None else None

    def applied(self, event_id: str) -> str | None:
        raw = self._call(self.client.get, self.key("e", event_id))
        return raw.decode() if raw is not None else None

    # -- health
    def durability(self) -> bool | None:
        """True when every write is fsynced before it is acknowledged;
        None when the server does not say (CONFIG disabled)."""
        return _durable(self._append_config())

    def _append_config(self) -> dict | None:
        try:
            return self.client.config_get("append*", **self._node())
        except redis.ResponseError:
            return None

    def health(self) -> Health:
        try:
            self.client.ping()
            if self._unchecked:
                self._check_durability()
            durable = self.durability()
        except _DOWN as err:
            self._unchecked = True
            return Health(False, self.url, f"{type(err).__name__}: {err}", None)
        detail = {True: "appendonly yes, appendfsync always",
                  False: "NOT durable: set appendonly yes and appendfsync always",
                  None: "durability unknown (CONFIG GET is disabled)"}[durable]
        return Health(True, self.url, detail, durable)

    def _check_durability(self) -> None:
        """The first contact since open or since an outage: one CONFIG GET,
        and one warning if this server does not fsync every write.  Raises
        the connection error when Redis is (still) down.  One thread checks;
        the others go on meanwhile (never queued behind a connect timeout)."""
        if not self._check_lock.acquire(blocking=False):
            return                      # another thread is checking
        try:
            if not self._unchecked:
                return                  # another thread just did
            conf = self._append_config()
            self._unchecked = False
        finally:
            self._check_lock.release()
        if _durable(conf) is False:
            log.warning("profile store %s is not durable: appendonly %s, appendfsync %s (needs appendonly "
                        "yes and appendfsync always): acknowledged events can be lost if Redis crashes",
                        self.url, conf.get("appendonly"), conf.get("appendfsync"))

    def close(self) -> None:
        self.client.close()
