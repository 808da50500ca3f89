"""Profiles: events -> one folded profile per customer, in a durable store.

    events.py        the event model; batch validation with errors by index and field
    fold.py          fold(profile, event, config) -> profile, one function per event type
    identity.py      aliases -> one customer; merging two customers' profiles
    ingest.py        one batch -> the changes a store writes in one transaction; group commit
    store.py         the ProfileStore interface, results, open_store(url)
    sqlite_store.py  the default store: one SQLite file (WAL, synchronous=FULL), its tables
    sqlite_writer.py its writer: state kept between transactions, reads, background checkpoints
    redis_store.py   the shared store: Redis, optimistic MULTI/EXEC batches
    cache.py         hot profiles cached in front of a store; degraded reads
    commands.py      maple profile show

docs/profiles.md describes the behaviour; the modules' docstrings the details.
"""
from .cache import CachedStore, ProfileRead
from .events import CHANNELS, IDENTIFIERS, Event, EventError, Item, ValidationConfig, validate_batch
from .fold import DEFAULT_CONFIG, FoldConfig, fold, fold_all, new_profile, public, refresh
from .identity import merge, resolve
from .store import BatchResult, Health, ProfileStore, StoreError, StoreUnavailable, open_store

__all__ = [
    "CachedStore", "ProfileRead",
    "CHANNELS", "IDENTIFIERS", "Event", "EventError", "Item", "ValidationConfig", "validate_batch",
    "DEFAULT_CONFIG", "FoldConfig", "fold", "fold_all", "new_profile", "public", "refresh",
    "merge", "resolve",
    "BatchResult", "Health", "ProfileStore", "StoreError", "StoreUnavailable", "open_store",
]
