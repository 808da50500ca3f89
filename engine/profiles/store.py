"""The profile store: where folded profiles live, selected by URL.

    sqlite:///var/lib/maple/profiles.db   one file (the default; see sqlite_store)
    redis://localhost:6379/0              shared by many replicas (see redis_store)

Every store does the same four things (:class:`ProfileStore`):

* ``apply(events)``: validate a batch (bad events are reported by index and
  field, the rest go on), then in ONE transaction skip event ids already
  applied, resolve identities, fold, and record the event ids.  It returns
  only after the transaction is durable: the result is the acknowledgement.
  Applying the same event id again changes nothing (it is a duplicate).
* ``get(customer_id)``: the stored profile (a merged-away id finds the survivor).
* ``resolve(kind, value)``: the customer id behind an identifier.
* ``health()``: can it be reached, and is it configured to be durable.

A store that cannot be reached raises :class:`StoreUnavailable`, from reads
and writes alike; nothing is acknowledged then, and retrying the batch is
safe (event ids make it idempotent).
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .events import EventError, ValidationConfig, validate_batch
from .fold import DEFAULT_CONFIG, FoldConfig
from .identity import alias_key
from .ingest import Changes


class StoreError(Exception):
    """A profile store problem that is not bad input."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; nothing was acknowledged."""


@dataclass(frozen=True)
class BatchResult:
    """The acknowledgement of one batch.

    ``accepted``: event ids applied by this call; ``duplicates``: ids applied
    before (or twice in the batch): also stored, so also acknowledged;
    ``errors``: the invalid events, by index and field; ``customers``: the
    profiles written; ``merged``: (merged-away, survivor) pairs.
    """
    accepted: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    errors: tuple[EventError, ...] = ()
    customers: tuple[str, ...] = ()
    merged: tuple[tuple[str, str], ...] = ()
    assigned: dict[str, str] = field(default_factory=dict)   # event id -> customer id
    linked: tuple[str, ...] = ()                             # alias keys (re)pointed

    @property
    def acknowledged(self) -> tuple[str, ...]:
        return self.accepted + self.duplicates

    @property
    def touched(self) -> tuple[str, ...]:
        """Every customer id whose stored profile changed or went away, or
        that now names a customer (a customer id that became an alias)."""
        named = tuple(key.split(":", 1)[1] for key in self.linked if key.startswith("customer_id:"))
        return self.customers + tuple(loser for loser, _ in self.merged) + named

    def to_dict(self) -> dict:
        return {"accepted": list(self.accepted), "duplicates": list(self.duplicates),
                "errors": [e.to_dict() for e in self.errors], "customers": list(self.customers),
                "merged": [list(m) for m in self.merged]}


@dataclass(frozen=True)
class Health:
    ok: bool
    store: str                      # the URL, password hidden
    detail: str
    durable: bool | None = None     # None: could not tell


class Feed(NamedTuple):
    """One read of a store's change feed (:meth:`ProfileStore.changes_since`)."""
    head: int | str             # the position to read from next time (SQLite: a row number; Redis: an entry id)
    keys: list[str]             # alias keys changed after the position asked for, oldest first
    complete: bool              # False: the keys since then are not all known (a first read, or
                                # the feed was pruned past it): trust nothing cached before


# ---------------------------------------------------------------- encoding
#: One of each for the process: msgspec's encoder and decoder keep no state
#: between calls (they hold the GIL while they work), so threads share them.
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def encode(profile: dict) -> bytes:
    """A profile as stored: MessagePack (compact, and several times faster
    than JSON both ways; ``maple profile show`` prints it as JSON).

    msgspec writes and reads it.  For a profile (dicts with text keys,
    lists, text, int, float, bool, None) the bytes are the ones
    msgpack-python's ``packb`` wrote before (a property test holds them
    equal), so stores written earlier read the same.  The codec was half
    of the instructions of ingesting a batch; msgspec encodes ~2-3x and
    decodes ~1.8x faster (docs/profiles.md)."""
    return _ENCODER.encode(profile)


def decode(data: bytes) -> dict:
    return _DECODER.decode(data)


def without_bookkeeping(profile):
    """A profile without the fold's bookkeeping (its top-level text keys
    starting with ``_``, as ``fold.public`` drops them); the same object
    when it holds none, or is not a dict (None: nobody)."""
    if type(profile) is not dict or not any(type(k) is str and k.startswith("_") for k in profile):
        return profile
    return {k: v for k, v in profile.items() if not (type(k) is str and k.startswith("_"))}


def reference_public_bytes(data: bytes) -> bytes:
    """A stored profile's bytes without the fold's bookkeeping (the
    top-level keys starting with ``_``, as ``fold.public`` drops them):
    what the profile cache keeps, for the decision path, which never reads
    it.  Bytes that do not decode to a map, or hold no such key, come back
    as they are.  The definition of the compiled ``_fastpaths.public_bytes``
    (which cuts the entries out of the bytes without decoding them); the
    two decode alike (tests/profiles/test_profile_public_bytes.py)."""
    try:
        profile = _DECODER.decode(data)
    except (msgspec.DecodeError, TypeError):
        return data
    public = without_bookkeeping(profile)
    return data if public is profile else _ENCODER.encode(public)


try:
    from ._fastpaths import public_bytes, setup_public_bytes
except ImportError:             # not built (python setup.py build_ext --inplace)
    public_bytes = reference_public_bytes
else:
    setup_public_bytes(reference_public_bytes)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# ---------------------------------------------------------------- the interface
class ProfileStore(abc.ABC):
    """What every profile store offers; subclasses supply the transaction."""

    url: str
    #: True when the store logs a warning itself on finding it is not durable
    warns_durability = False
    #: True when applied event ids stay until prune_applied deletes them (False:
    #: they expire by themselves, or prune_applied does it all)
    keeps_dedupe_rows = False

    def __init__(self, url: str, validation: ValidationConfig | None = None,
                 fold_config: FoldConfig | None = None, clock: Callable[[], float] = time.time):
        self.url = safe_url(url)
        self.validation = validation or ValidationConfig()
        self.fold_config = fold_config or DEFAULT_CONFIG
        self.clock = clock

    # -- writes
    def apply(self, raw_events: Sequence[Any], now: float | None = None) -> BatchResult:
        """Validate and durably apply one batch; see the module docstring."""
        checked = validate_batch(raw_events, self.clock() if now is None else now, self.validation)
        if not checked.events:
            return BatchResult(errors=checked.errors)
        changes = self._commit(checked.events)
        return BatchResult(
            accepted=tuple(eid for eid, _ in changes.applied),
            duplicates=tuple(changes.duplicates),
            errors=checked.errors,
            customers=tuple(changes.profiles),
            merged=tuple(changes.merged),
            assigned=dict(changes.applied),
            linked=tuple(changes.aliases))

    @abc.abstractmethod
    def _commit(self, events) -> Changes:
        """Plan (:func:`.ingest.plan`) and write ``events`` in one durable
        transaction; return the changes once committed."""

    # -- reads
    @abc.abstractmethod
    def get(self, customer_id: str) -> dict | None:
        """The profile of a customer (or of the survivor it was merged into)."""

    def get_many(self, customer_ids: Sequence[str]) -> dict[str, dict | None]:
        """``{id: self.get(id)}`` for each distinct id (None: nobody), each
        profile its own object, read in as few round trips as the store
        allows (SQLite: one read transaction; Redis: an MGET or three).
        DecideBatch reads the profiles of its items this way."""
        return {cid: None if raw is None else decode(raw)
                for cid, raw in self.get_many_encoded(customer_ids).items()}

    # The same reads, each profile as the store holds it (its encoding, see
    # encode): the cache keeps these bytes for when the decoded copy is no
    # longer fresh, instead of encoding the profile again.  The SQLite and
    # Redis stores hand out what they read; these defaults encode get()'s.
    def get_encoded(self, customer_id: str) -> bytes | None:
        """``get``, encoded."""
        profile = self.get(customer_id)
        return None if profile is None else encode(profile)

    def get_by_encoded(self, kind: str, value: str) -> bytes | None:
        """``get_by``, encoded."""
        if kind == "customer_id":
            return self.get_encoded(value)
        cid = self.resolve(kind, value)
        return None if cid is None else self.get_encoded(cid)

    def get_many_encoded(self, customer_ids: Sequence[str]) -> dict[str, bytes | None]:
        """``get_many``, encoded."""
        return {cid: self.get_encoded(cid) for cid in dict.fromkeys(customer_ids)}

    @abc.abstractmethod
    def resolve(self, kind: str, value: str) -> str | None:
        """The customer id an identifier points at, or None."""

    def get_by(self, kind: str, value: str) -> dict | None:
        """The profile of the customer an identifier (``kind``: one of
        events.IDENTIFIERS) points at, or None."""
        if kind == "customer_id":
            return self.get(value)
        cid = self.resolve(kind, value)
        return None if cid is None else self.get(cid)

    @abc.abstractmethod
    def applied(self, event_id: str) -> str | None:
        """The customer an applied event went to (at the time), or None."""

    def prune_applied(self, now: float | None = None, chunk: int = 5_000, progress=None, stop=None) -> int:
        """Forget the event ids no copy of which can be accepted any more
        (applied more than ``validation.dedupe_horizon`` ago); the rows
        deleted.  This default deletes nothing: a Redis store's dedupe
        records expire on their own (``dedupe_ttl``)."""
        return 0

    #: True when :meth:`changes_since` reads a change feed (SQLite); caches of
    #: other stores keep their entries for one ttl
    has_change_feed = False

    def changes_since(self, position: int | str | None) -> Feed:
        """What changed in the store after ``position`` (a :attr:`Feed.head`
        of an earlier call; None: only the head): the alias key of each
        profile written or deleted (``customer_id:<id>``) and of each
        identifier (re)pointed, in commit order, from every process that
        writes the store.  Raises StoreUnavailable.  Only stores with
        :attr:`has_change_feed` have one."""
        raise NotImplementedError(f"{type(self).__name__} has no change feed")

    @abc.abstractmethod
    def health(self) -> Health:
        """Whether the store answers, and whether it is set up to be durable."""

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def own_alias(customer_id: str) -> str:
    """The alias every customer has: their own id."""
    return alias_key("customer_id", customer_id)


# ---------------------------------------------------------------- selection
SCHEMES = {"sqlite": "engine.profiles.sqlite_store:SQLiteStore",
           "redis": "engine.profiles.redis_store:RedisStore",
           "rediss": "engine.profiles.redis_store:RedisStore",
           "unix": "engine.profiles.redis_store:RedisStore",
           "redis-cluster": "engine.profiles.redis_store:RedisStore",
           "rediss-cluster": "engine.profiles.redis_store:RedisStore"}


def open_store(url: str, **options) -> ProfileStore:
    """The store a URL names: ``sqlite:///path/to/file.db`` (the path is
    everything after ``sqlite://``; a relative path is relative to the
    working directory), ``redis://host:port/db`` or
    ``redis-cluster://host:port`` (a Redis Cluster).  ``options``:
    ``validation``, ``fold_config``, ``clock``, and ``create`` (SQLite: make
    the file if it does not exist; default True)."""
    scheme = urlsplit(url).scheme
    target = SCHEMES.get(scheme)
    if target is None:
        raise StoreError(f"unknown profile store URL {url!r}: use sqlite:///path/to/file.db, "
                         "redis://host:port/db or redis-cluster://host:port")
    module_name, _, class_name = target.partition(":")
    import importlib
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_url(url, **options)
