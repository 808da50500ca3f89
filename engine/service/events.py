"""Recording events: one RecordEvents call, independent of the wire.

:class:`EventRecorder` takes a batch of raw events (the JSON-like objects of
docs/profiles.md, as the gRPC layer translated them) and hands them to the
profile store, which validates them, folds the good ones into profiles and
commits durably before it returns.  The answer is one :class:`EventOutcome`
per event, in request order:

* ``stored``: applied by this call; durable before the answer is sent;
* ``duplicate``: its event id was applied before (or earlier in this batch):
  stored once, nothing changed; also an acknowledgement;
* ``rejected``: invalid, not stored; every problem named by field.

One bad event never costs the others: the good events of a batch are
stored.  When the store cannot be reached the whole call fails with
:class:`~.errors.Unavailable` and nothing is acknowledged (retrying the batch
is safe: event ids are applied once); never "acknowledged and dropped".

A translation layer may already know that an event is malformed (an
invalid Timestamp, say): it passes :class:`Rejected` in that event's place,
which keeps the indices of every other event as the client sent them.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from ..profiles.store import BatchResult, StoreError, StoreUnavailable
from .errors import DeadlineExceeded, FailedPrecondition, ResourceExhausted, Unavailable

MAX_EVENTS = 1000          # events in one RecordEvents call


class EventStatus(str, enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class EventProblem:
    """One problem with one event: ``events[index].field: message``.
    ``field`` is relative to the event ("items[0].price", "" for the event
    itself); ``code`` is the stable code of docs/profiles.md (V100...)."""
    index: int
    field: str
    code: str
    message: str

    @property
    def path(self) -> str:
        return f"events[{self.index}]" + (f".{self.field}" if self.field else "")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Rejected:
    """An event the translation layer already found malformed: (field,
    code, message) per problem, fields relative to the event."""
    problems: tuple[tuple[str, str, str], ...]
    event_id: str | None = None


@dataclass(frozen=True)
class EventOutcome:
    status: EventStatus
    event_id: str | None
    customer_id: str | None = None            # stored: the customer it was folded into
    problems: tuple[EventProblem, ...] = ()    # rejected: why


@dataclass(frozen=True)
class RecordResult:
    outcomes: tuple[EventOutcome, ...]

    def count(self, status: EventStatus) -> int:
        return sum(1 for o in self.outcomes if o.status is status)


@runtime_checkable
class EventSink(Protocol):
    """Where events go: a profile store (through its cache)."""

    def apply(self, raw_events: Sequence[Any]) -> BatchResult:
        """Validate, fold and durably commit; return only once committed.
        Raise StoreUnavailable when the store cannot be reached."""


class EventRecorder:
    """RecordEvents' domain: see the module docstring.  ``sink`` is None
    when the server has no profile store (every call is refused)."""

    def __init__(self, sink: EventSink | None):
        self.sink = sink

    @classmethod
    def for_source(cls, source) -> "EventRecorder":
        """The recorder of a profile source: stores that take events are
        sinks; the others (none, jsonl:) have nowhere to put them."""
        return cls(source if isinstance(source, EventSink) else None)

    def record(self, events: Sequence[dict | Rejected], deadline: float | None = None) -> RecordResult:
        if len(events) > MAX_EVENTS:
            raise ResourceExhausted(f"events: at most {MAX_EVENTS} events in one RecordEvents, got {len(events)}")
        if self.sink is None:
            raise FailedPrecondition("this server has no profile store to record events in "
                                     "(start it with --store sqlite:///PATH or --store redis://HOST:PORT/DB)")
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed before the events were recorded; nothing was stored")
        positions = [i for i, e in enumerate(events) if not isinstance(e, Rejected)]
        raw = [events[i] for i in positions]
        try:
            result = self.sink.apply(raw) if raw else BatchResult()
        except StoreUnavailable as err:
            raise Unavailable(f"the profile store is unavailable; the batch is not acknowledged (retrying it "
                              f"is safe: event ids are applied once): {err}") from None
        except StoreError as err:           # e.g. SQLite: disk full, I/O error: the batch was rolled back
            raise Unavailable(f"the profile store failed; the batch is not acknowledged (retrying it "
                              f"is safe: event ids are applied once): {err}") from None
        return RecordResult(outcomes(events, positions, result))


def outcomes(events: Sequence[dict | Rejected], positions: list[int], result: BatchResult
             ) -> tuple[EventOutcome, ...]:
    """One outcome per event, in order.  ``positions[k]`` is the index in
    ``events`` of the k-th event the store was given (its errors are indexed
    by k).  Of several events with one id, the first valid one is the one
    applied (the store applies them in batch order); the rest are duplicates."""
    problems: dict[int, list[EventProblem]] = {}
    for err in result.errors:
        i = positions[err.index]
        problems.setdefault(i, []).append(EventProblem(i, err.field, err.code, err.message))
    accepted = set(result.accepted)
    seen: set[str] = set()
    out = []
    for i, e in enumerate(events):
        if isinstance(e, Rejected):
            out.append(EventOutcome(EventStatus.REJECTED, e.event_id,
                                    problems=tuple(EventProblem(i, f, c, m) for f, c, m in e.problems)))
        elif i in problems:
            out.append(EventOutcome(EventStatus.REJECTED, _event_id(e), problems=tuple(problems[i])))
        else:
            eid = e["event_id"]
            if eid in accepted and eid not in seen:
                out.append(EventOutcome(EventStatus.STORED, eid, result.assigned.get(eid)))
            else:
                out.append(EventOutcome(EventStatus.DUPLICATE, eid))
            seen.add(eid)
    return tuple(out)


def _event_id(raw) -> str | None:
    eid = raw.get("event_id") if isinstance(raw, dict) else None
    return eid if isinstance(eid, str) else None
