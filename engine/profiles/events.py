"""The event model: what channels tell Maple, checked before anything is stored.

An event is a JSON object::

    {"event_id": "e-123", "type": "purchase", "channel": "pos",
     "timestamp": "2025-03-01T10:12:00Z", "loyalty_card": "LC-9",
     "store_id": "riverside", "items": [{"sku": "RUN-1", "category": "running-shoes",
                                        "size": "42", "price": 89.0, "qty": 1}]}

Every event has an ``event_id`` (the idempotency key: the same id is applied
once), at least one customer identifier (:data:`IDENTIFIERS`), a ``type``
(:data:`SPECS`), a ``channel`` (:data:`CHANNELS`) and a ``timestamp`` (seconds
since the epoch or ISO-8601; UTC when no zone is given).  The remaining fields
depend on the type.  ``meta`` (any object) is accepted and ignored.

:func:`validate_batch` is pure: it takes the raw objects and the current time
and returns the good events as typed :class:`Event` values plus one
:class:`EventError` per problem, each naming the event's index in the batch
and the field (``events[3].items[0].price: must not be negative``).  Every
problem of every event is reported, not just the first; an event with any
problem is left out, the others are kept.
"""
from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

DAY = 86400.0
#: replicas' clocks may disagree by this much (see ValidationConfig.dedupe_horizon)
DEDUPE_CLOCK_SKEW = 3600.0

CHANNELS = ("web", "app", "email", "pos", "call_centre")

#: Customer identifiers, strongest first (a new customer without a
#: customer_id is named after the strongest identifier it arrives with).
IDENTIFIERS = ("customer_id", "loyalty_card", "email_hash", "device_id")

MAX_ID_LENGTH = 200
MAX_TEXT_LENGTH = 2000
MAX_ITEMS = 500
MAX_QTY = 10_000
MAX_MONEY = 1_000_000           # a price or an order total, in the currency's units


# ---------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class Item:
    """One line of a cart change or a purchase."""
    sku: str
    category: str | None = None
    size: str | None = None
    price: float | None = None
    qty: int | None = None          # None in remove_from_cart: remove the whole line

    @property
    def amount(self) -> float:
        return (self.price or 0.0) * (self.qty or 1)


def tie_of(event_id: str) -> int:
    """A compact, deterministic tie-breaker for events with equal timestamps:
    63 bits of BLAKE2b of the event id (what the fold's stamps store instead
    of the id itself, to keep profiles small)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event.  ``data`` holds the type's fields, already typed
    (items are :class:`Item` tuples, sizes strings, money floats).
    ``alias_keys`` (the identifiers as store keys, ``"email_hash:ab12"``) and
    ``tie`` (:func:`tie_of`) are derived when not given."""
    event_id: str
    type: str
    channel: str
    timestamp: float
    ids: tuple[tuple[str, str], ...]             # (identifier kind, value), strongest first
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    index: int = -1                              # position in its batch
    alias_keys: tuple[str, ...] = ()
    tie: int = -1

    def __post_init__(self):
        if not self.alias_keys and self.ids:
            object.__setattr__(self, "alias_keys", tuple(f"{k}:{v}" for k, v in self.ids))
        if self.tie < 0:
            object.__setattr__(self, "tie", tie_of(self.event_id))

    def get(self, name: str, default=None):
        return self.data.get(name, default)


def _event_maker() -> Callable[..., Event]:
    """``make(event_id, type, channel, timestamp, ids, data, index, alias_keys, tie)``:
    an :class:`Event` with every field given, built through its slots
    (the dataclass's frozen ``__init__`` costs ~4 µs, this ~0.6 µs)."""
    names = [f.name for f in fields(Event)]
    setters = [Event.__dict__[name].__set__ for name in names]
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = setters
    assert names == ["event_id", "type", "channel", "timestamp", "ids", "data", "index", "alias_keys", "tie"]

    def make(event_id, type_, channel, timestamp, ids, data, index, alias_keys, tie):
        e = new(Event)
        s0(e, event_id), s1(e, type_), s2(e, channel), s3(e, timestamp), s4(e, ids)
        s5(e, data), s6(e, index), s7(e, alias_keys), s8(e, tie)
        return e
    return make


_make_event = _event_maker()


@dataclass(frozen=True, slots=True)
class EventError:
    """One problem with one event: ``events[index].field: message``."""
    index: int
    field: str                   # "" when the event itself is the problem
    code: str
    message: str
    event_id: str | None = None

    def __str__(self) -> str:
        where = f"events[{self.index}]" + (f".{self.field}" if self.field else "")
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "code": self.code,
                "message": self.message, "event_id": self.event_id, "text": str(self)}


@dataclass(frozen=True)
class ValidationConfig:
    """How far from ``now`` an event's time may be, and the known stores
    (``None``: any store id is accepted)."""
    max_future: float = 1 * DAY
    max_past: float = 400 * DAY
    known_stores: frozenset[str] | None = None

    @property
    def dedupe_horizon(self) -> float:
        """How long after it was applied an event id must still be known.

        An event accepted at ``a`` has a timestamp ``t <= a + max_future``,
        and a copy of it is accepted while ``now - t <= max_past``, so
        until ``a + max_future + max_past`` at the latest.  The id is kept
        that long, and an hour more for clocks of replicas that disagree
        (each stamps ``a`` with its own)."""
        return self.max_past + self.max_future + DEDUPE_CLOCK_SKEW


@dataclass(frozen=True)
class Validated:
    events: tuple[Event, ...]
    errors: tuple[EventError, ...]


#: Stable codes, one message template each.
MESSAGES = {
    "V100": "must be a JSON object, not {kind}",
    "V101": "unknown event type {value!r}{hint}",
    "V102": "is required",
    "V103": "must be {what}",
    "V104": "missing customer identifier: give one of customer_id, loyalty_card, email_hash, device_id",
    "V105": "{value} is {amount} in the future (events may be at most {limit} ahead)",
    "V106": "{value} is {amount} in the past (events may be at most {limit} old)",
    "V107": "must not be negative",
    "V108": "unknown store {value!r}",
    "V109": "unknown field for {type} events{hint}",
    "V110": "unknown channel {value!r} (one of {choices})",
    "V111": "give at least one of {names}",
    "V112": "{what} is required on {channel} events",
    "V113": "at most {limit} items",
}


class _Collector:
    """Errors of one event, addressed relative to the event."""

    def __init__(self, index: int):
        self.index = index
        self.errors: list[EventError] = []
        self.event_id: str | None = None

    def add(self, path: str, code: str, **kw) -> None:
        self.errors.append(EventError(self.index, path, code, MESSAGES[code].format(**kw), self.event_id))


# ---------------------------------------------------------------- field checkers
# A checker takes (raw value, collector, path, config) and returns the typed
# value or None after reporting why it does not fit.
Checker = Callable[[Any, _Collector, str, ValidationConfig], Any]


def _text(raw, c, path, cfg, limit=MAX_TEXT_LENGTH, what="a non-empty string"):
    if type(raw) is not str or not raw or len(raw) > limit or raw.isspace():
        c.add(path, "V103", what=f"{what} of at most {limit} characters")
        return None
    return raw


def _ident(raw, c, path, cfg):
    return _text(raw, c, path, cfg, limit=MAX_ID_LENGTH)


def _money(raw, c, path, cfg):
    if type(raw) not in (int, float) or not math.isfinite(raw):
        c.add(path, "V103", what="a number")
        return None
    if raw < 0:
        c.add(path, "V107")
        return None
    if raw > MAX_MONEY:
        c.add(path, "V103", what=f"a number of at most {MAX_MONEY:,}")
        return None
    return float(raw)


def _quantity(raw, c, path, cfg):
    if type(raw) is float and raw.is_integer():
        raw = int(raw)
    if type(raw) is not int or not 1 <= raw <= MAX_QTY:
        c.add(path, "V103", what=f"a whole number from 1 to {MAX_QTY}")
        return None
    return raw


def _size(raw, c, path, cfg):
    """Sizes are text; numbers are accepted and written without a needless .0."""
    if type(raw) in (int, float) and math.isfinite(raw):
        return str(int(raw)) if float(raw).is_integer() else repr(float(raw))
    return _text(raw, c, path, cfg, limit=32, what="a size (text or number)")


def _flag(raw, c, path, cfg):
    if type(raw) is not bool:
        c.add(path, "V103", what="true or false")
        return None
    return raw


def _store(raw, c, path, cfg):
    store = _ident(raw, c, path, cfg)
    if store is not None and cfg.known_stores is not None and store not in cfg.known_stores:
        c.add(path, "V108", value=store)
        return None
    return store


def _geo(raw, c, path, cfg):
    if type(raw) is dict and set(raw) == {"lat", "lon"}:
        lat, lon = raw["lat"], raw["lon"]
        if all(type(v) in (int, float) for v in (lat, lon)) and -90 <= lat <= 90 and -180 <= lon <= 180:
            return {"lat": float(lat), "lon": float(lon)}
    c.add(path, "V103", what='a location {"lat": -90..90, "lon": -180..180}')
    return None


@dataclass(frozen=True)
class F:
    """A field of an event type or of an item: its checker and whether it is required."""
    check: Checker
    required: bool = False


def _item_checker(spec: Mapping[str, F]) -> Checker:
    def check(raw, c, path, cfg):
        if type(raw) is not dict:
            c.add(path, "V103", what="an object")
            return None
        values = _check_fields(raw, spec, c, path + ".", cfg, "item")
        return None if values is None else Item(**values)
    return check


def _items_checker(item: Checker) -> Checker:
    def check(raw, c, path, cfg):
        if type(raw) is not list or not raw:
            c.add(path, "V103", what="a non-empty list of items")
            return None
        if len(raw) > MAX_ITEMS:
            c.add(path, "V113", limit=MAX_ITEMS)
            return None
        items = [item(x, c, f"{path}[{i}]", cfg) for i, x in enumerate(raw)]
        return None if any(x is None for x in items) else tuple(items)
    return check


_LINE = {"sku": F(_ident, True), "category": F(_ident, True), "size": F(_size),
         "price": F(_money, True), "qty": F(_quantity)}
_REMOVED = {"sku": F(_ident, True), "category": F(_ident), "qty": F(_quantity)}
ITEMS = _items_checker(_item_checker(_LINE))
REMOVED_ITEMS = _items_checker(_item_checker(_REMOVED))

_CAMPAIGN = {"campaign_id": F(_ident)}

#: Every event type and its own fields.
SPECS: dict[str, dict[str, F]] = {
    "page_view": {"page": F(_ident), "category": F(_ident), "url": F(_text)},
    "product_view": {"sku": F(_ident, True), "category": F(_ident, True), "price": F(_money)},
    "search": {"query": F(_text), "category": F(_ident), "size": F(_size)},
    "add_to_cart": {"items": F(ITEMS, True)},
    "remove_from_cart": {"items": F(REMOVED_ITEMS, True)},
    "purchase": {"items": F(ITEMS, True), "order_id": F(_ident), "store_id": F(_store), "total": F(_money)},
    "store_visit": {"store_id": F(_store, True)},
    "email_open": dict(_CAMPAIGN),
    "email_click": {**_CAMPAIGN, "url": F(_text)},
    "push_open": dict(_CAMPAIGN),
    "offer_impression": {"offer_id": F(_ident, True), "placement": F(_ident)},
    "offer_redeemed": {"offer_id": F(_ident, True), "order_id": F(_ident), "store_id": F(_store)},
    "consent_change": {"email": F(_flag), "push": F(_flag), "sms": F(_flag)},
    "wishlist_add": {"sku": F(_ident, True), "category": F(_ident, True)},
    "wishlist_remove": {"sku": F(_ident, True), "category": F(_ident)},
    "profile_update": {"home": F(_geo), "loyalty_points": F(_money)},
}

#: Types that need at least one of their optional fields.
AT_LEAST_ONE = {"consent_change": ("email", "push", "sms"),
                "profile_update": ("home", "loyalty_points")}

#: Fields a channel makes required: a till always knows its store.
REQUIRED_ON_CHANNEL = {("purchase", "pos"): "store_id"}

_COMMON = frozenset(("event_id", "type", "channel", "timestamp", "meta") + IDENTIFIERS)


def _hint(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_fields(raw: dict, spec: Mapping[str, F], c: _Collector, prefix: str,
                  cfg: ValidationConfig, what: str, skip: frozenset = frozenset()) -> dict | None:
    """The typed values of ``spec``'s fields in ``raw``; None if any is wrong.
    Unknown fields are errors (with a suggestion), so typos never pass silently."""
    before = len(c.errors)
    out = {}
    for name, f in spec.items():
        value = raw.get(name)
        if value is None:
            if f.required:
                c.add(prefix + name, "V102")
            continue
        value = f.check(value, c, prefix + name, cfg)
        if value is not None:
            out[name] = value
    extra = raw.keys() - spec.keys() - skip
    for name in sorted(extra, key=list(raw).index) if extra else ():
        c.add(prefix + str(name), "V109", type=what, hint=_hint(str(name), [*spec, *skip]))
    return out if len(c.errors) == before else None


# ---------------------------------------------------------------- time
def parse_timestamp(raw) -> float | None:
    """Seconds since the epoch (int or float) or ISO-8601 text (UTC when
    naive) -> float seconds, or None."""
    if type(raw) in (int, float):
        return float(raw) if math.isfinite(raw) else None
    if type(raw) is not str:
        return None
    try:
        dt = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _span(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


def _timestamp(raw, c: _Collector, now: float, cfg: ValidationConfig) -> float | None:
    ts = parse_timestamp(raw)
    if ts is None:
        c.add("timestamp", "V103", what="seconds since the epoch or ISO-8601 text")
        return None
    shown = raw if type(raw) is str else f"{ts:.0f}"
    if ts - now > cfg.max_future:
        c.add("timestamp", "V105", value=shown, amount=_span(ts - now), limit=_span(cfg.max_future))
        return None
    if now - ts > cfg.max_past:
        c.add("timestamp", "V106", value=shown, amount=_span(now - ts), limit=_span(cfg.max_past))
        return None
    return ts


# ---------------------------------------------------------------- one event
def _identifiers(raw: dict, c: _Collector) -> tuple[tuple[str, str], ...]:
    ids = []
    for kind in IDENTIFIERS:
        if raw.get(kind) is not None:
            value = _ident(raw[kind], c, kind, None)
            if value is not None:
                ids.append((kind, value))
    if not ids and not any(raw.get(k) is not None for k in IDENTIFIERS):
        c.add("customer_id", "V104")
    return tuple(ids)


def _type_fields(raw: dict, etype: str, channel: str | None, c: _Collector,
                 cfg: ValidationConfig) -> dict | None:
    spec = SPECS[etype]
    values = _check_fields(raw, spec, c, "", cfg, etype, skip=_COMMON)
    if values is None:
        return None
    needed = AT_LEAST_ONE.get(etype)
    if needed and not any(n in values for n in needed):
        c.add(needed[0], "V111", names=", ".join(needed))
        return None
    required = REQUIRED_ON_CHANNEL.get((etype, channel))
    if required and required not in values:
        c.add(required, "V112", what=required, channel=channel)
        return None
    return values


def _required(raw: dict, name: str, c: _Collector, check: Callable[[Any], Any]):
    if raw.get(name) is None:
        c.add(name, "V102")
        return None
    return check(raw[name])


def validate_event(raw: Any, index: int, now: float, cfg: ValidationConfig = ValidationConfig()
                   ) -> tuple[Event | None, list[EventError]]:
    """One raw event -> (the typed event or None, its errors)."""
    c = _Collector(index)
    if type(raw) is not dict:
        c.add("", "V100", kind=type(raw).__name__ if raw is not None else "null")
        return None, c.errors
    event_id = _required(raw, "event_id", c, lambda v: _ident(v, c, "event_id", cfg))
    c.event_id = event_id
    etype = raw.get("type")
    if etype is None:
        c.add("type", "V102")
    elif type(etype) is not str or etype not in SPECS:
        c.add("type", "V101", value=etype, hint=_hint(str(etype), SPECS))
        etype = None
    channel = raw.get("channel")
    if channel is None:
        c.add("channel", "V102")
    elif channel not in CHANNELS:
        c.add("channel", "V110", value=channel, choices=", ".join(CHANNELS))
        channel = None
    ts = _required(raw, "timestamp", c, lambda v: _timestamp(v, c, now, cfg))
    ids = _identifiers(raw, c)
    if raw.get("meta") is not None and type(raw["meta"]) is not dict:
        c.add("meta", "V103", what="an object")
    data = _type_fields(raw, etype, channel, c, cfg) if etype is not None else None
    if c.errors:
        return None, c.errors
    return Event(event_id, etype, channel, ts, ids, MappingProxyType(data), index), []


# ---------------------------------------------------------------- the fast path
# Nearly every event a channel sends is well-formed.  fast_event() checks
# such an event in one pass with no error bookkeeping: the same checks as
# validate_event(), written as "is this value exactly right?".  At the first
# doubt it answers None and validate_batch() runs validate_event(), which
# stays the one definition of every answer (and of every error message).
# So the fast path may refuse more than it must, never accept more, and an
# event it accepts equals the one validate_event() would build (a test
# checks both on random and malformed events).

_BAD = object()          # a fast checker's "not exactly right"
_CHANNEL_SET = frozenset(CHANNELS)


def _fast_text(raw, cfg, limit=MAX_TEXT_LENGTH):
    if type(raw) is not str or not raw or len(raw) > limit or raw.isspace():
        return _BAD
    return raw


def _fast_ident(raw, cfg):
    if type(raw) is not str or not raw or len(raw) > MAX_ID_LENGTH or raw.isspace():
        return _BAD
    return raw


def _fast_money(raw, cfg):
    t = type(raw)
    if t is float:
        return raw if 0.0 <= raw <= MAX_MONEY else _BAD     # NaN fails the comparison
    if t is int and 0 <= raw <= MAX_MONEY:
        return float(raw)
    return _BAD


def _fast_quantity(raw, cfg):
    if type(raw) is float and raw.is_integer():
        raw = int(raw)
    return raw if type(raw) is int and 1 <= raw <= MAX_QTY else _BAD


def _fast_size(raw, cfg):
    if type(raw) in (int, float):
        return _size(raw, None, "", cfg) if math.isfinite(raw) else _BAD
    return _fast_text(raw, cfg, 32)


def _fast_flag(raw, cfg):
    return raw if type(raw) is bool else _BAD


def _fast_store(raw, cfg):
    store = _fast_ident(raw, cfg)
    if store is not _BAD and cfg.known_stores is not None and store not in cfg.known_stores:
        return _BAD
    return store


def _fast_geo(raw, cfg):
    c = _Collector(-1)
    value = _geo(raw, c, "", cfg)
    return _BAD if c.errors else value


def _fast_fields(spec: Mapping[str, F]) -> tuple:
    """(name, fast checker, required) for each field of ``spec``."""
    return tuple((name, _FAST[f.check], f.required) for name, f in spec.items())


def _fast_values(raw: dict, plan: tuple, cfg: ValidationConfig) -> dict | None:
    out = {}
    for name, check, required in plan:
        value = raw.get(name)
        if value is None:
            if required:
                return None
            continue
        value = check(value, cfg)
        if value is _BAD:
            return None
        out[name] = value
    return out


def _fast_items(spec: Mapping[str, F]):
    plan, allowed = _fast_fields(spec), frozenset(spec)

    def check(raw, cfg):
        if type(raw) is not list or not raw or len(raw) > MAX_ITEMS:
            return _BAD
        items = []
        for x in raw:
            if type(x) is not dict or not allowed.issuperset(x):
                return _BAD
            values = _fast_values(x, plan, cfg)
            if values is None:
                return _BAD
            items.append(Item(**values))
        return tuple(items)
    return check


_FAST: dict[Checker, Callable[[Any, ValidationConfig], Any]] = {
    _text: _fast_text, _ident: _fast_ident, _money: _fast_money, _quantity: _fast_quantity,
    _size: _fast_size, _flag: _fast_flag, _store: _fast_store, _geo: _fast_geo}
_FAST[ITEMS] = _fast_items(_LINE)
_FAST[REMOVED_ITEMS] = _fast_items(_REMOVED)

#: Per event type: (the fields an event may have, its fields' fast checks,
#: the fields of which it needs one, channel -> the field that channel needs).
_FAST_TYPES = {etype: (_COMMON | frozenset(spec), _fast_fields(spec), AT_LEAST_ONE.get(etype),
                       {ch: f for (t, ch), f in REQUIRED_ON_CHANNEL.items() if t == etype})
               for etype, spec in SPECS.items()}
_blake2b = hashlib.blake2b


def fast_event(raw: Any, index: int, now: float, cfg: ValidationConfig) -> Event | None:
    """The event, if ``raw`` is well-formed beyond doubt; otherwise None
    (then :func:`validate_event` decides)."""
    if type(raw) is not dict:
        return None
    etype = raw.get("type")
    known = _FAST_TYPES.get(etype) if type(etype) is str else None
    if known is None or not known[0].issuperset(raw):
        return None
    event_id, channel, ts = raw.get("event_id"), raw.get("channel"), raw.get("timestamp")
    if (type(event_id) is not str or not event_id or len(event_id) > MAX_ID_LENGTH or event_id.isspace()
            or type(channel) is not str or channel not in _CHANNEL_SET):
        return None
    if type(ts) is float:
        if not math.isfinite(ts):
            return None
    elif type(ts) is int and abs(ts) <= 2 ** 53:
        ts = float(ts)
    else:
        return None          # ISO text and the rest: validate_event parses it
    if ts - now > cfg.max_future or now - ts > cfg.max_past:
        return None
    meta = raw.get("meta")
    if meta is not None and type(meta) is not dict:
        return None
    ids, keys = [], []
    for kind in IDENTIFIERS:
        value = raw.get(kind)
        if value is not None:
            if type(value) is not str or not value or len(value) > MAX_ID_LENGTH or value.isspace():
                return None
            ids.append((kind, value))
            keys.append(kind + ":" + value)
    data = _fast_values(raw, known[1], cfg)
    if not ids or data is None:
        return None
    needed = known[2]
    if needed and not any(n in data for n in needed):
        return None
    required = known[3].get(channel)
    if required and required not in data:
        return None
    tie = int.from_bytes(_blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1   # tie_of
    return _make_event(event_id, etype, channel, ts, tuple(ids), MappingProxyType(data), index,
                       tuple(keys), tie)


# ---------------------------------------------------------------- the fast path, compiled
def _fast_kind(check) -> tuple[int, tuple | None]:
    """(the kind number _fastpaths codes ``check`` by, the item spec for items)."""
    kinds = {_fast_ident: 0, _fast_text: 1, _fast_money: 2, _fast_quantity: 3, _fast_size: 4, _fast_flag: 5,
             _fast_store: 6}
    for spec, fast in ((_LINE, _FAST[ITEMS]), (_REMOVED, _FAST[REMOVED_ITEMS])):
        if check is fast:
            return 7, (frozenset(spec), _compiled_plan(spec))
    return kinds.get(check, 8), None


def _compiled_plan(spec: Mapping[str, F]) -> tuple:
    """_fast_fields(spec) for _fastpaths: (name, kind, required, fast checker, item spec)."""
    out = []
    for name, f in spec.items():
        kind, items = _fast_kind(_FAST[f.check])
        out.append((name, kind, f.required, _FAST[f.check], items))
    return tuple(out)


try:
    from . import _fastpaths
except ImportError:             # not built (python setup.py build_ext --inplace): fast_event itself
    _fast_events = None
else:
    _fastpaths.setup(
        bad=_BAD, event=Event, item=Item, proxy=MappingProxyType, blake2b=_blake2b,
        types={etype: (allowed, _compiled_plan(SPECS[etype]), needed, by_channel)
               for etype, (allowed, _plan, needed, by_channel) in _FAST_TYPES.items()},
        channels=CHANNELS, identifiers=IDENTIFIERS, item_fields=[f.name for f in fields(Item)],
        event_fields=[f.name for f in fields(Event)], max_id=MAX_ID_LENGTH, max_text=MAX_TEXT_LENGTH,
        max_items=MAX_ITEMS, max_size_text=32, max_qty=MAX_QTY, max_money=MAX_MONEY)
    _fast_events = _fastpaths.fast_events


def validate_batch(raw_events: Sequence[Any], now: float,
                   cfg: ValidationConfig = ValidationConfig()) -> Validated:
    """Check every event of a batch.  ``now`` is injected (seconds since the
    epoch), so the time window is testable."""
    if not isinstance(raw_events, (list, tuple)):
        err = EventError(-1, "", "V103", "a batch must be a list of events")
        return Validated((), (err,))
    good, errors = [], []
    fast = _fast_events(raw_events, now, cfg) if _fast_events is not None else None
    for i, raw in enumerate(raw_events):
        event = fast[i] if fast is not None else fast_event(raw, i, now, cfg)
        if event is None:
            event, errs = validate_event(raw, i, now, cfg)
            errors.extend(errs)
        if event is not None:
            good.append(event)
    return Validated(tuple(good), tuple(errors))


def event_to_dict(e: Event) -> dict:
    """An event back as a JSON-able object (validate_event's input shape)."""
    out: dict[str, Any] = {"event_id": e.event_id, "type": e.type, "channel": e.channel,
                           "timestamp": e.timestamp}
    out.update(dict(e.ids))
    for name, value in e.data.items():
        if name == "items":
            value = [{f.name: getattr(it, f.name) for f in fields(Item) if getattr(it, f.name) is not None}
                     for it in value]
        out[name] = value
    return out
