"""The inventory's values: stores, catalogue items, stock, query answers.

All are frozen; a loaded data set (:class:`InventoryData`) is never changed
in place, so a reader holding one sees a consistent world.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import msgspec

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_DAY_INDEX = {d: i for i, d in enumerate(DAYS)}
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
DAY_MINUTES = 24 * 60
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_INDEX = {m: i + 1 for i, m in enumerate(MONTHS)}
_YEAR = re.compile(r"^\d{4}$")
_DAY_OF_MONTH = re.compile(r"^(\d{1,2})(?:-(\d{1,2}))?$")
_ONE_DAY = timedelta(days=1)
#: the most one (store, sku, size) row may hold.  A count is sent to clients
#: as StoreAvailability.quantity, an int32, and the compiled store index
#: holds it in 64 bits: a bound well inside both keeps every count
#: representable.  inventory.csv rows above it are refused (D105), absolute
#: counts above it rejected, and deltas clamp at it (docs/inventory.md).
MAX_QUANTITY = 1_000_000_000


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """A store's opening hours: the time ranges it opens on each weekday,
    Monday first, and the dates that differ (holidays, short days).

    Text form (the ``hours`` column), clauses separated by ``;``::

        Mo-Fr 09:00-20:00; Sa 10:00-18:00; Su closed
        Mo 12:00-18:00; Tu-We,Fr-Sa 10:00-18:00; Th 10:00-21:00
        Mo-Fr 09:00-12:30,14:00-19:00; Sa 09:00-13:00          (closed at lunch)
        Mo-Th 07:00-23:00; Fr-Sa 07:00-02:00; Su 09:00-20:00    (Friday until 2 am Saturday)
        Mo-Sa 09:00-20:00; Dec 24 09:00-14:00; Dec 25-26 closed; 2026 Nov 26 closed   (holidays)
        Mo-Sa 10:00-20:00; Dec 24 10:00-14:00; PH closed      (the region's public holidays)

    Each clause is a day set (``Mo``, a range ``Mo-Fr`` or a comma list of
    either) and either ``closed`` or one or more ``HH:MM-HH:MM`` ranges
    separated by commas, earliest first, not overlapping.  A day may appear
    once; days not named are closed; ``24:00`` closes at midnight; a range
    that closes at or before its opening time runs past midnight into the
    next day (``22:00-02:00``), as in OpenStreetMap's ``opening_hours``.
    Times are the store's local time, in its ``tz``
    (:meth:`Store.open_at_time`).

    Dated clauses replace the week's ranges on their dates: ``Dec 25``
    every year, ``Dec 25-26`` (days of one month), ``2026 Nov 26`` once;
    ``closed`` or ``off``, or ranges as above.  A one-year date wins over a
    yearly one.  The previous night's range still runs into a dated day
    (Friday until 1 am reaches into a Saturday that is Christmas).

    ``PH closed`` or ``PH`` and ranges: the store's hours on the public
    holidays of its region (``calendar``, from the store's ``country``:
    :mod:`engine.inventory.public_holidays`).  A date written out wins over
    ``PH`` (``Dec 24 10:00-14:00`` stands even where Dec 24 is a holiday),
    ``PH`` over the weekday's ranges.

    ``days[d]``: the ranges opening on weekday ``d`` as written, (open,
    close) in minutes after that day's midnight, close past 1440 for a
    range that runs into the next day; ``()`` when closed.  ``spans[d]``:
    the minutes of weekday ``d`` the store is open, the previous day's late
    range included, sorted and merged: what :meth:`open_at` and the
    compiled nearby query (``engine/service/_decide.pyx``) read for hours
    without dated clauses; with them (``by_date``: dated clauses or PH),
    :meth:`open_on` answers per date.
    """

    days: tuple[tuple[tuple[int, int], ...], ...]
    text: str
    spans: tuple[tuple[tuple[int, int], ...], ...] = ()
    #: the dated clauses: ((month, day) yearly or (year, month, day) once, ranges), sorted
    dated: tuple[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], ...] = ()
    #: the ranges on public holidays (``PH``); None when the text has no PH clause
    ph: tuple[tuple[int, int], ...] | None = None
    #: the region whose public holidays ``PH`` means ("DE-BY"); None without PH
    region: str | None = None
    calendar: object = field(default=None, compare=False, hash=False, repr=False)   # ``day in calendar``
    by_date: bool = field(default=False, init=False)        # answered per date: dated clauses or PH
    _by_date: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    _by_day: dict = field(default_factory=dict, compare=False, hash=False, repr=False)   # spans_on's memo

    def __post_init__(self):
        if not self.spans:
            object.__setattr__(self, "spans", _spans(self.days))
        self._by_date.update(self.dated)
        object.__setattr__(self, "by_date", bool(self.dated) or self.ph is not None)

    @classmethod
    def parse(cls, text: str, calendar=None) -> "OpeningHours":
        """Parse the text form; ValueError says what is wrong.  ``calendar``:
        the store's public holidays (``day in calendar``), needed by PH."""
        days: list[tuple[tuple[int, int], ...]] = [()] * 7
        dated: dict[tuple[int, ...], tuple[tuple[int, int], ...]] = {}
        ph = None
        seen: set[int] = set()
        clauses = [c.strip() for c in text.split(";")]
        if not any(clauses):
            raise ValueError("no opening hours given (e.g. 'Mo-Sa 09:00-20:00; Su closed')")
        for clause in clauses:
            if not clause:
                continue
            parts = clause.split()
            if parts[0] == "PH":
                if len(parts) != 2:
                    raise ValueError(f"'{clause}' should be PH and hours, e.g. 'PH closed' or 'PH 10:00-16:00'")
                if ph is not None:
                    raise ValueError("PH is given twice")
                if calendar is None:
                    raise ValueError("PH (public holidays) needs the store's region: give the store a "
                                     "country, e.g. DE-BY or GB-ENG (the country column of stores.csv)")
                ph = _hours_ranges(parts[1])
                continue
            if parts[0] in _MONTH_INDEX or _YEAR.match(parts[0]):
                keys, ranges = _dates(parts[:-1], clause), _hours_ranges(parts[-1])
                for key in keys:
                    if key in dated:
                        raise ValueError(f"{_date_text(key)} is given twice")
                    dated[key] = ranges
                continue
            if len(parts) != 2:
                hint = (" (a day's ranges are separated by a comma without spaces: '09:00-12:30,14:00-19:00')"
                        if len(parts) > 2 and "," in clause else
                        " or a date and hours, e.g. 'Dec 25 closed' (months are "
                        f"{' '.join(MONTHS)})" if len(parts) == 3 else "")
                raise ValueError(f"'{clause}' should be days and hours, e.g. 'Mo-Fr 09:00-20:00'{hint}")
            ranges = _hours_ranges(parts[1])
            for d in _day_set(parts[0]):
                if d in seen:
                    raise ValueError(f"{DAYS[d]} is given twice")
                seen.add(d)
                days[d] = ranges
        return cls(tuple(days), text, dated=tuple(sorted(dated.items())), ph=ph,
                   region=None if ph is None else getattr(calendar, "region", None),
                   calendar=None if ph is None else calendar)

    def open_at(self, weekday: int, minute: int) -> bool:
        """Open on ``weekday`` (0 = Monday) at ``minute`` after midnight, by
        the weekly ranges (dated clauses aside: :meth:`open_on`)?"""
        for a, b in self.spans[weekday]:
            if a <= minute < b:
                return True
        return False

    def ranges_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """The ranges opening on ``day``: its one-year clause, else its
        yearly one, else PH's on a public holiday, else its weekday's."""
        by_date = self._by_date
        if by_date:
            hit = by_date.get((day.year, day.month, day.day))
            if hit is None:
                hit = by_date.get((day.month, day.day))
            if hit is not None:
                return hit
        if self.ph is not None and day in self.calendar:
            return self.ph
        return self.days[day.weekday()]

    def spans_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """The minutes of the local date ``day`` the store is open: its
        ranges (dated or weekly) and the previous night's, sorted and
        merged.  Remembered per date (the requests of a day share it; the
        loader gives stores with the same hours text one OpeningHours)."""
        hit = self._by_day.get(day)
        if hit is None:
            if self.by_date:
                hit = _merged([(a, min(b, DAY_MINUTES)) for a, b in self.ranges_on(day)]
                              + [(0, b - DAY_MINUTES) for _a, b in self.ranges_on(day - _ONE_DAY)
                                 if b > DAY_MINUTES])
            else:
                hit = self.spans[day.weekday()]
            if len(self._by_day) >= 64:
                self._by_day.clear()
            self._by_day[day] = hit
        return hit

    def open_on(self, day: date, minute: int) -> bool:
        """Open on the local date ``day`` at ``minute`` after midnight,
        dated clauses included (the previous night's range too)?"""
        for a, b in self.spans_on(day):
            if a <= minute < b:
                return True
        return False

    def __str__(self) -> str:
        return self.text


def _spans(days) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per weekday, the open minutes: the day's own ranges up to midnight
    and the previous day's ranges past it, sorted and merged."""
    return tuple(_merged([(a, min(b, DAY_MINUTES)) for a, b in days[d]]
                         + [(0, b - DAY_MINUTES) for _a, b in days[d - 1] if b > DAY_MINUTES])  # d - 1: Su for Mo
                 for d in range(7))


def _merged(parts: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(parts):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def _day_set(text: str) -> list[int]:
    out = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        if first not in _DAY_INDEX or (last and last not in _DAY_INDEX):
            raise ValueError(f"'{item}' is not a day or day range (days are {' '.join(DAYS)})")
        a, b = _DAY_INDEX[first], _DAY_INDEX[last or first]
        if b < a:
            raise ValueError(f"'{item}' runs backwards; write the days Monday first")
        out.extend(range(a, b + 1))
    return out


def _dates(parts: list[str], clause: str) -> list[tuple[int, ...]]:
    """``Mon DD``, ``Mon DD-DD`` -> (month, day) keys; ``YYYY Mon DD[-DD]``
    -> (year, month, day) keys.  Each a real date (Feb 29 yearly)."""
    year = None
    if parts and _YEAR.match(parts[0]):
        year, parts = int(parts[0]), parts[1:]
    m = _DAY_OF_MONTH.match(parts[1]) if len(parts) == 2 else None
    if len(parts) != 2 or parts[0] not in _MONTH_INDEX or not m:
        raise ValueError(f"'{clause}' should be a date and hours, e.g. 'Dec 25 closed', "
                         "'Dec 24 09:00-14:00' or '2026 Nov 26 closed'")
    month, first, last = _MONTH_INDEX[parts[0]], int(m.group(1)), int(m.group(2) or m.group(1))
    if last < first:
        raise ValueError(f"'{parts[0]} {parts[1]}' runs backwards")
    out = []
    for d in range(first, last + 1):
        try:
            date(2024 if year is None else year, month, d)      # 2024: a leap year, for a yearly Feb 29
        except ValueError:
            raise ValueError(f"'{' '.join(([str(year)] if year else []) + [parts[0], str(d)])}' "
                             "is not a date") from None
        out.append((month, d) if year is None else (year, month, d))
    return out


def _date_text(key: tuple[int, ...]) -> str:
    *year, month, d = key
    return " ".join([str(y) for y in year] + [MONTHS[month - 1], str(d)])


def _hours_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``closed`` -> (); ``HH:MM-HH:MM[,HH:MM-HH:MM...]`` -> the ranges."""
    if text in ("closed", "off"):
        return ()
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        start, _, end = item.partition("-")
        a, b = _minutes(start), _minutes(end)
        if a is None or b is None:
            raise ValueError(f"'{item}' is not HH:MM-HH:MM or closed")
        if a == DAY_MINUTES:
            raise ValueError(f"'{item}' opens at 24:00: write 00:00 on the next day")
        if b == a:
            raise ValueError(f"'{item}' closes when it opens (all day is 00:00-24:00)")
        if b < a:
            b += DAY_MINUTES            # runs past midnight into the next day
        if out and a < out[-1][1]:
            prev = f"{_hhmm(out[-1][0])}-{_hhmm(out[-1][1] % DAY_MINUTES)}"
            raise ValueError(f"'{item}' overlaps or comes before '{prev}': write a day's ranges "
                             "earliest first, apart")
        out.append((a, b))
    if out[-1][1] - out[0][0] > DAY_MINUTES:
        raise ValueError(f"'{text}' spans more than 24 hours")
    return tuple(out)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(text: str) -> int | None:
    m = _TIME.match(text)
    if not m:
        return None
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    return minutes if minutes <= DAY_MINUTES else None


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    address: str
    city: str
    lat: float
    lon: float
    hours: OpeningHours
    tz: str | None = None           # IANA time zone of the hours ("Europe/London"); None: not known

    @property
    def position(self) -> tuple[float, float]:
        return (self.lat, self.lon)

    def open_at_time(self, t: float, local: dict | None = None) -> bool | None:
        """Open at ``t`` (seconds since the epoch), by its hours in its time
        zone, dated clauses included; None when the store has no time zone
        (its hours cannot be placed in time).  ``local`` memoises
        :func:`local_weekday_minute` per zone for one ``t`` across the
        stores of one query."""
        if self.tz is None:
            return None
        wm = local.get(self.tz) if local is not None else None
        if wm is None:
            wm = local_weekday_minute(self.tz, t)
            if local is not None:
                local[self.tz] = wm
        if self.hours.by_date:
            return self.hours.open_on(wm[2], wm[1])
        return self.hours.open_at(wm[0], wm[1])


_LOCAL: dict[tuple[str, int], tuple[int, int, date]] = {}


def local_weekday_minute(tz: str, t: float) -> tuple[int, int, date]:
    """(weekday with 0 = Monday, minute after midnight, the date) at ``t``
    in zone ``tz``.  Remembered per (zone, minute since the epoch): exact,
    since zone offsets change on whole minutes, and the requests of one
    minute share it (the conversion is ~2 us; a lookup ~0.1)."""
    key = (tz, int(t // 60))
    hit = _LOCAL.get(key)
    if hit is None:
        d = datetime.fromtimestamp(key[1] * 60, zone(tz))
        hit = d.weekday(), d.hour * 60 + d.minute, d.date()
        if len(_LOCAL) >= 4096:
            _LOCAL.clear()
        _LOCAL[key] = hit
    return hit


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (ZoneInfo caches too; this skips its key checks)."""
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    sku: str
    name: str
    category: str
    sizes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StockItem:
    """The count of one size of one sku in one store."""
    store_id: str
    sku: str
    size: str
    quantity: int


class StoreAvailability(msgspec.Struct):
    """One line of a nearby answer: "Riverside, 1.2 km, only 1 left"."""
    store_id: str
    name: str
    distance_km: float
    quantity: int
    low_stock: bool
    open_now: bool | None = None    # open at the query's time (None: not asked, or the store has no tz)


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class InventoryData:
    """One loaded data set.  Never changed in place: updates build a new one
    that shares every untouched part with the old (see availability.py)."""

    stores: dict[str, Store]                        # file order
    catalog: dict[str, CatalogItem]
    stock: dict[tuple[str, str], dict[str, int]]    # (sku, size) -> store id -> quantity

    def quantity(self, store_id: str, sku: str, size: str) -> int:
        """The count of one size of one sku in one store; 0 when not stocked."""
        return self.stock.get((sku, size), {}).get(store_id, 0)

    def items(self):
        """Every stock row as a StockItem, sorted by store, sku and size."""
        rows = [StockItem(store, sku, size, n) for (sku, size), by_store in self.stock.items()
                for store, n in by_store.items()]
        rows.sort(key=lambda r: (r.store_id, r.sku, r.size))
        return rows
