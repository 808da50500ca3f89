"""One batch of valid events -> the changes a store must write, atomically;
and many callers' batches -> one transaction (group commit).

This is the part of applying a batch that both stores share: drop event ids
already applied (or repeated in the batch), resolve each event's customer
(creating and merging customers, see :mod:`.identity`), fold the event in.
The store supplies a :class:`Reader` that sees its state *inside* its
transaction and writes the resulting :class:`Changes` in that same
transaction; :func:`plan` itself reads nothing else and writes nothing.
The profiles the reader returns are freshly decoded, so the plan owns them
and folds in place (:func:`.fold.fold_into`).

Group commit (:class:`GroupCommit`): the server calls ``store.apply``
from several threads at once (one per RPC).  Every durable transaction pays a fixed price (taking the write lock,
the commit, its fsync, the pages every batch changes such as the B-tree
roots), and while one transaction commits the next callers wait anyway.
:class:`GroupCommit` lets them wait usefully: each caller queues its batch
and either becomes the *leader*, which takes every batch queued so far and
commits them together, or is a *follower*, whose batch a leader commits.
Each caller returns only when the transaction holding its batch has
committed (or failed), with its own result: acknowledgements stay exactly
as strong as one transaction per batch.

A lone caller is its own leader at once: no waiting, no timer.  Batches
queue only while a transaction is running, so the groups grow with the
load and the latency of a batch is at most the transaction before it plus
its own.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

from .events import Event
from .fold import FoldConfig, fold_into, new_profile
from .identity import merge, resolve


class Reader(Protocol):
    """A store's state as seen by the running transaction."""

    def seen(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among ``event_ids`` that were already applied."""

    def aliases(self, keys: Sequence[str]) -> dict[str, str]:
        """alias key -> customer id, for the known ones among ``keys``."""

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, dict]:
        """customer id -> stored profile, for the existing ones."""

    def aliases_of(self, customer_id: str) -> list[str]:
        """Every alias key pointing at ``customer_id``."""

    def next_seq(self) -> int:
        """A creation number greater than every one handed out before."""


@dataclass
class Changes:
    """What one batch changes; written by the store in one transaction."""
    profiles: dict[str, dict] = field(default_factory=dict)       # customer id -> new profile
    deleted: set[str] = field(default_factory=set)                # merged-away customers
    aliases: dict[str, str] = field(default_factory=dict)         # alias key -> customer id
    applied: list[tuple[str, str]] = field(default_factory=list)  # (event id, customer id)
    duplicates: list[str] = field(default_factory=list)
    merged: list[tuple[str, str]] = field(default_factory=list)   # (merged away, survivor)

    def aliases_by_customer(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, cid in self.aliases.items():
            out.setdefault(cid, []).append(key)
        return out


class _Batch:
    """The working state of one plan: what the reader said, as changed so far."""

    def __init__(self, reader: Reader, cfg: FoldConfig):
        self.reader, self.cfg = reader, cfg
        self.known: dict[str, str] = {}
        self.profiles: dict[str, dict] = {}
        self.changes = Changes()

    def load(self, events: Sequence[Event]) -> None:
        keys = list(dict.fromkeys([k for e in events for k in e.alias_keys]))
        self.known = dict(self.reader.aliases(keys)) if keys else {}
        cids = list(dict.fromkeys(self.known.values()))
        self.profiles = dict(self.reader.profiles(cids)) if cids else {}
        for cid in cids:        # an alias without a profile (should not happen): start afresh
            if cid not in self.profiles:
                self.profiles[cid] = new_profile(cid, self.reader.next_seq())

    def seq_of(self, cid: str) -> int:
        return self.profiles[cid]["_fold"].get("seq", 0)

    def point(self, key: str, cid: str) -> None:
        self.known[key] = cid
        self.changes.aliases[key] = cid

    def absorb(self, survivor: str, loser: str) -> None:
        self.profiles[survivor] = merge(self.profiles[survivor], self.profiles.pop(loser), self.cfg)
        keys = set(self.reader.aliases_of(loser))
        keys.update(k for k, c in self.known.items() if c == loser)
        for key in keys:
            self.point(key, survivor)
        self.changes.profiles.pop(loser, None)
        self.changes.deleted.add(loser)
        self.changes.merged.append((loser, survivor))

    def apply(self, e: Event) -> None:
        keys, known = e.alias_keys, self.known
        cid = known.get(keys[0]) if keys else None
        if cid is not None:
            for key in keys:
                if known.get(key) != cid:
                    break
            else:   # every identifier known, all of one customer: resolve()'s common case, without
                    # its Resolution (nothing to create, merge or link)
                changes = self.changes
                self.profiles[cid] = changes.profiles[cid] = fold_into(self.profiles[cid], e, self.cfg)
                changes.applied.append((e.event_id, cid))
                return
        r = resolve(e.ids, known, self.seq_of, keys)
        cid = r.customer_id
        if r.new:
            self.profiles[cid] = new_profile(cid, self.reader.next_seq())
            self.changes.deleted.discard(cid)
        for loser in r.losers:
            self.absorb(cid, loser)
        for key in r.link:
            self.point(key, cid)
        self.profiles[cid] = self.changes.profiles[cid] = fold_into(self.profiles[cid], e, self.cfg)
        self.changes.applied.append((e.event_id, cid))


def plan(events: Sequence[Event], reader: Reader, cfg: FoldConfig) -> Changes:
    """The changes that apply ``events`` (in batch order) to the store behind
    ``reader``.  Event ids already applied, or repeated within the batch,
    are listed as duplicates and change nothing."""
    ids = list(dict.fromkeys([e.event_id for e in events]))
    seen = set(reader.seen(ids)) if ids else set()
    fresh = []
    batch = _Batch(reader, cfg)
    duplicates = batch.changes.duplicates
    for e in events:
        eid = e.event_id
        if eid in seen:
            duplicates.append(eid)
            continue
        seen.add(eid)
        fresh.append(e)
    if fresh:
        batch.load(fresh)
        apply = batch.apply
        for e in fresh:
            apply(e)
    return batch.changes


# ---------------------------------------------------------------- group commit
T = TypeVar("T")


class Ticket(Generic[T]):
    """One caller's batch in a group, and how its transaction ended."""

    __slots__ = ("work", "size", "done", "value", "error")

    def __init__(self, work: Any, size: int):
        self.work, self.size = work, size
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def succeed(self, value: T) -> None:
        self.value, self.done = value, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value


class GroupCommit(Generic[T]):
    """Runs ``commit_group(tickets)`` for queued batches, one group at a
    time.  ``commit_group`` must settle (succeed or fail) every ticket it is
    given; ``max_size`` bounds the work (e.g. events) in one group."""

    def __init__(self, commit_group: Callable[[Sequence[Ticket[T]]], None], max_size: int):
        self._commit_group = commit_group
        self.max_size = max_size
        self._cond = threading.Condition()
        self._queue: list[Ticket[T]] = []
        self._leading = False

    def submit(self, work: Any, size: int) -> T:
        """Commit ``work`` (in a group); its result once committed."""
        ticket: Ticket[T] = Ticket(work, size)
        with self._cond:
            self._queue.append(ticket)
        while True:
            with self._cond:
                while self._leading and not ticket.done:
                    self._cond.wait()
                if ticket.done:
                    return ticket.result()
                self._leading = True
                group = self._take()
            try:
                self._run(group)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()

    def _take(self) -> list[Ticket[T]]:
        """The oldest queued tickets, up to ``max_size`` of work (at least one)."""
        size, n = 0, 0
        for t in self._queue:
            if n and size + t.size > self.max_size:
                break
            size += t.size
            n += 1
        group, self._queue = self._queue[:n], self._queue[n:]
        return group

    def _run(self, group: list[Ticket[T]]) -> None:
        """Commit one group; whatever happens, every ticket in it is settled."""
        try:
            self._commit_group(group)
        except BaseException as err:        # commit_group failed as a whole: nobody may hang
            for t in group:
                if not t.done:
                    t.fail(err)
        for t in group:
            if not t.done:
                t.fail(RuntimeError("group commit left a batch unsettled"))
