"""Load stores.csv, catalog.csv and inventory.csv, with validation.

Policy: **a bad row is reported and skipped; a bad file rejects the load.**

* A row with any problem is left out, and every problem in it (not just the
  first) becomes a :class:`DataError` naming ``file:line:col``, the column
  and the offending text.  The good rows of the same file load as usual, so
  one typo never hides a city's stock.  Stock rows of a store (or sku) whose
  own row was skipped are skipped too, with one error per store saying how
  many.
* A file that cannot be used at all (missing, not UTF-8, no header, a
  required column missing) raises :class:`InventoryLoadError`; nothing is
  loaded and a running :class:`~engine.inventory.availability.Inventory`
  keeps serving its last good data.

Errors render like rule diagnostics (``path:line:col: error[D103]: ...``,
the line and a caret) through :func:`engine.diagnostics.render`.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator
from zoneinfo import ZoneInfoNotFoundError, available_timezones

from ..diagnostics import Diagnostic, Severity, did_you_mean, q, render_all, render_one_line
from ..source import SourceFile, Span
from .model import MAX_QUANTITY, CatalogItem, InventoryData, OpeningHours, Store, zone
from .public_holidays import NoHolidays, public_holidays

STORES, CATALOG, INVENTORY = "stores.csv", "catalog.csv", "inventory.csv"
COLUMNS = {
    STORES: ("id", "name", "address", "city", "lat", "lon", "hours"),       # and optionally tz, country
    CATALOG: ("sku", "name", "category", "sizes"),
    INVENTORY: ("store", "sku", "size", "quantity"),
}
MAX_REPORTED = 200          # errors kept per load; the rest are counted
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# a row split in its opening hours: two fields with times, or one that is only days ("Tu-We,Fr-Sa ...")
_CLOCK = re.compile(r"\b\d\d:\d\d\b")
_DAYS_ONLY = re.compile(r"^(Mo|Tu|We|Th|Fr|Sa|Su)(-(Mo|Tu|We|Th|Fr|Sa|Su))?$")

#: Stable codes (docs/inventory.md lists them).  D0xx reject the whole load;
#: D1xx skip one row.  Never renumber or reuse one.
CODES = {
    "D001": "cannot read the file",
    "D002": "no header row",
    "D003": "required column missing from the header",
    "D004": "column named twice in the header",
    "D101": "wrong number of fields",
    "D102": "empty value",
    "D103": "not a number",
    "D104": "not a whole number",
    "D105": "value out of range",
    "D106": "duplicate key",
    "D107": "bad opening hours",
    "D108": "unknown reference",
    "D109": "size not offered",
    "D110": "malformed value",
    "D111": "malformed CSV line",
    "D112": "unknown time zone",
    "D113": "unknown country or region",
}


@dataclass(frozen=True)
class DataError:
    """One problem in a data file.  Quacks like a rule Diagnostic, so the
    project's one renderer prints it."""

    code: str
    message: str
    span: Span | None
    column: str | None = None
    help: str | None = None
    notes: tuple[str, ...] = ()

    severity = Severity.ERROR
    is_error = True

    @property
    def location(self) -> str:
        return self.span.location() if self.span is not None else ""

    def to_dict(self) -> dict:
        """``Diagnostic.to_dict`` (``maple check --format json``; a DataError
        has every field it reads), with the column."""
        d = Diagnostic.to_dict(self)
        if self.column:
            d["column"] = self.column
        return d

    def __str__(self) -> str:
        return render_one_line(self)


class InventoryLoadError(Exception):
    """The files were rejected as a whole; carries every file-level error."""

    def __init__(self, errors: list[DataError]):
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(str(errors[0]) + more)


@dataclass
class LoadReport:
    """What a load read and what it skipped."""

    errors: list[DataError] = field(default_factory=list)
    dropped: int = 0                                  # errors beyond MAX_REPORTED
    rows: dict[str, int] = field(default_factory=dict)     # file -> rows loaded
    skipped: dict[str, int] = field(default_factory=dict)  # file -> rows skipped (orphaned ones included)
    orphaned: dict[str, int] = field(default_factory=dict)  # file -> rows skipped only because they refer
                                                            # to a store or sku whose own row was skipped

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rows_with_errors(self) -> int:
        """Rows skipped for a problem of their own."""
        return sum(self.skipped.values()) - self.rows_orphaned

    @property
    def rows_orphaned(self) -> int:
        """Rows skipped because the store or sku they refer to was skipped."""
        return sum(self.orphaned.values())

    def summary(self) -> str:
        """What was left out, in rows: "skipped 2 rows with errors (stores.csv: 1,
        inventory.csv: 1) and 115 stock rows that refer to a skipped store or
        sku"; "" when every row loaded."""
        parts = []
        if self.rows_with_errors:
            per_file = ", ".join(f"{name}: {n - self.orphaned.get(name, 0)}" for name, n in self.skipped.items()
                                 if n - self.orphaned.get(name, 0))
            n = self.rows_with_errors
            parts.append(f"{n} row{'s' * (n != 1)} with errors ({per_file})")
        if self.rows_orphaned:
            n = self.rows_orphaned
            parts.append(f"{n} stock row{'s' * (n != 1)} that refer{'s' * (n == 1)} to a skipped store or sku")
        return "skipped " + " and ".join(parts) if parts else ""

    def add(self, err: DataError) -> None:
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(err)
        else:
            self.dropped += 1

    def render(self) -> str:
        text = render_all(self.errors)
        return text + (f"\n({self.dropped} more errors not shown)" if self.dropped else "")


@dataclass(frozen=True)
class LoadResult:
    data: InventoryData
    report: LoadReport


# ------------------------------------------------------------------ CSV rows
class _Bad(Exception):
    def __init__(self, code: str, message: str, help: str | None = None):
        super().__init__(message)
        self.code, self.message, self.help = code, message, help


class _Row:
    """One data row: raw values by column, and where each came from."""

    __slots__ = ("table", "line", "values", "errors")

    def __init__(self, table: "_Table", line: int, fields: list[str]):
        self.table, self.line = table, line
        self.values = dict(zip(table.header, fields))
        self.errors = 0

    def get(self, column: str, convert: Callable[[str], object] = str):
        """The converted value of ``column``, or None after reporting why."""
        raw = self.values[column]
        try:
            if raw == "":
                raise _Bad("D102", "a value is required")
            return convert(raw)
        except _Bad as bad:
            self.error(column, bad.code, f"{q(raw)}: {bad.message}" if raw else bad.message, bad.help)
            return None

    def error(self, column: str | None, code: str, message: str, help: str | None = None) -> None:
        self.errors += 1
        self.table.report.add(DataError(code, f"column {q(column)}: {message}" if column else message,
                                        self.table.span(self.line, column), column, help))

    @property
    def location(self) -> str:
        return f"{self.table.source.path}:{self.line}"


class _Table:
    """One CSV file, read line by line so every row knows its line."""

    def __init__(self, path: str, name: str, report: LoadReport):
        self.name, self.report = name, report
        self.source = SourceFile(path, _read_text(path))
        self.lines = self.source.text.split("\n")
        self.header = self._header()

    def _header(self) -> list[str]:
        first = next((i for i, line in enumerate(self.lines) if line.strip()), None)
        if first is None:
            raise InventoryLoadError([DataError("D002", f"{self.name} is empty; the first line must be the "
                                                f"header {','.join(COLUMNS[self.name])}", self.span(1, None))])
        self.header_line = first + 1
        header = [h.strip() for h in _split(self.lines[first].rstrip("\r"))]
        errors = [DataError("D004", f"column {q(h)} is named twice in the header", self.span(first + 1, None))
                  for i, h in enumerate(header) if h in header[:i]]
        missing = [c for c in COLUMNS[self.name] if c not in header]
        if missing:
            errors.append(DataError("D003", f"the header lacks {', '.join(map(q, missing))}",
                                    self.span(first + 1, None),
                                    help=f"the header of {self.name} is {','.join(COLUMNS[self.name])}"))
        if errors:
            raise InventoryLoadError(errors)
        return header

    def rows(self) -> Iterator[_Row]:
        """Every non-blank data row; malformed lines are reported and skipped."""
        self.report.rows.setdefault(self.name, 0)
        self.report.skipped.setdefault(self.name, 0)
        for i in range(self.header_line, len(self.lines)):
            line = self.lines[i].rstrip("\r")
            if not line.strip():
                continue
            row = self._row(i + 1, line)
            if row is None:
                self.report.skipped[self.name] += 1
                continue
            yield row

    def _row(self, lineno: int, line: str) -> _Row | None:
        try:
            fields = _split(line)
        except csv.Error as err:
            self.report.add(DataError("D111", f"cannot read this line as CSV: {err}", self.span(lineno, None),
                                      help="a quoted field must close on the same line; write \"\" for a quote"))
            return None
        if len(fields) != len(self.header):
            hours = len(fields) > len(self.header) and (sum(bool(_CLOCK.search(f)) for f in fields) > 1
                                                         or any(_DAYS_ONLY.match(f.strip()) for f in fields))
            self.report.add(DataError("D101", f"this row has {len(fields)} fields; the header has "
                                      f"{len(self.header)}", self.span(lineno, None),
                                      help="quote opening hours that contain a comma, e.g. "
                                           "\"Tu-Sa 10:00-13:00,14:00-19:00\"" if hours else
                                           "quote a value that contains a comma: \"12, High Street\""))
            return None
        return _Row(self, lineno, [f.strip() for f in fields])

    def skip_orphan(self, row: _Row) -> None:
        """Skip a row that refers to a skipped store or sku."""
        self.report.skipped[self.name] += 1
        self.report.orphaned[self.name] = self.report.orphaned.get(self.name, 0) + 1

    def done(self, row: _Row) -> bool:
        """Count the row as loaded (True) or skipped (False)."""
        ok = row.errors == 0
        self.report.rows[self.name] += ok
        self.report.skipped[self.name] += not ok
        return ok

    def span(self, line: int, column: str | None) -> Span:
        """The span of ``column`` on ``line`` (the whole line when None);
        computed only when an error is reported."""
        start = self.source.line_starts[line - 1] if line <= len(self.source.line_starts) else len(self.source.text)
        text = self.source.line_text(line).rstrip("\r")
        if column is None or column not in self.header:
            return Span(self.source, start, start + max(1, len(text)))
        a, b = _field_bounds(text, self.header.index(column))
        return Span(self.source, start + a, start + max(b, a + 1))


def _read_text(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InventoryLoadError([DataError("D001", f"cannot read {path}: {err.strerror or err}", None)])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise InventoryLoadError([DataError("D001", f"cannot read {path}: not UTF-8 text "
                                            f"({err.reason} at byte {err.start})", None)])


def _split(line: str) -> list[str]:
    return next(csv.reader((line,), strict=True))


def _field_bounds(line: str, index: int) -> tuple[int, int]:
    """[start, end) of field ``index`` in one CSV line (quotes respected)."""
    start, quoted = 0, False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            if index == 0:
                return start, i
            index, start = index - 1, i + 1
    return (start, len(line)) if index == 0 else (len(line), len(line))


# ------------------------------------------------------------------ converters
def _ident(raw: str) -> str:
    if not _ID.match(raw):
        raise _Bad("D110", "an id is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return raw


def _category(raw: str) -> str:
    if not _CATEGORY.match(raw):
        raise _Bad("D110", "a category is lower-case letters, digits and '-', e.g. running-shoes")
    return raw


def _number_in(low: float, high: float) -> Callable[[str], float]:
    def convert(raw: str) -> float:
        try:
            v = float(raw)
        except ValueError:
            raise _Bad("D103", "not a number") from None
        if not math.isfinite(v) or not low <= v <= high:
            raise _Bad("D105", f"must be between {low:g} and {high:g}")
        return v
    return convert


_QUANTITY_DIGITS = len(str(MAX_QUANTITY))


def _count(raw: str) -> int:
    if raw.startswith("-") and raw[1:].isdigit():
        raise _Bad("D105", "a quantity cannot be negative")
    if not raw.isascii() or not raw.isdigit():
        raise _Bad("D104", "a quantity is a whole number of items, e.g. 3")
    digits = raw.lstrip("0") or "0"
    if len(digits) > _QUANTITY_DIGITS or int(digits) > MAX_QUANTITY:    # int() never sees a long text
        raise _Bad("D105", f"a quantity is at most {MAX_QUANTITY}")
    return int(digits)


@lru_cache(maxsize=4096)
def _hours(raw: str, calendar=None) -> OpeningHours:
    """One OpeningHours per hours text and region: stores of a format share
    it, and its per-date memo (OpeningHours.spans_on)."""
    try:
        hours = OpeningHours.parse(raw, calendar)
    except ValueError as err:
        raise _Bad("D107", str(err), help="e.g. Mo-Fr 09:00-20:00; Sa 10:00-18:00; Su closed") from None
    if hours.ph is not None and hasattr(calendar, "warm"):
        calendar.warm()                     # at load, not on the first Decide of the year
    return hours


def _region(raw: str):
    """A store's region for public holidays (``DE-BY``, ``FR``): its calendar."""
    try:
        return public_holidays(raw)
    except ValueError as err:
        raise _Bad("D113", str(err)) from None


def _tz(raw: str) -> str:
    """An IANA time zone name, checked against the time zone database."""
    try:
        zone(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Bad("D112", "not a time zone name",
                   help=did_you_mean(raw, available_timezones())
                   or "an IANA name such as Europe/London or America/New_York") from None
    return raw


def _sizes(raw: str) -> tuple[str, ...]:
    sizes = tuple(raw.split())
    dup = next((s for i, s in enumerate(sizes) if s in sizes[:i]), None)
    if dup is not None:
        raise _Bad("D110", f"size {q(dup)} is listed twice")
    return sizes


# ------------------------------------------------------------------ the three files
class _Loader:
    def __init__(self, directory: str):
        self.dir = directory
        self.report = LoadReport()
        self.skipped_keys: dict[str, dict[str, str]] = {STORES: {}, CATALOG: {}}  # key -> location

    def table(self, name: str) -> _Table:
        return _Table(os.path.join(self.dir, name), name, self.report)

    def unique(self, row: _Row, column: str, key, seen: dict, what: str) -> bool:
        if key in seen:
            row.error(column, "D106", f"{what} {q(key)} is given twice (first at line {seen[key]})")
            return False
        return True

    def stores(self, t: _Table) -> dict[str, Store]:
        out, lines = {}, {}
        lat_of, lon_of = _number_in(-90.0, 90.0), _number_in(-180.0, 180.0)
        for row in t.rows():
            sid = row.get("id", _ident)
            vals = [row.get(c) for c in ("name", "address", "city")]
            lat, lon = row.get("lat", lat_of), row.get("lon", lon_of)
            # optional column, may be empty; a bad one is reported, and PH then reads no holidays
            calendar = (row.get("country", _region) or NoHolidays()) if row.values.get("country") else None
            hours = row.get("hours", lambda raw: _hours(raw, calendar))
            tz = row.get("tz", _tz) if row.values.get("tz") else None      # optional column, may be empty
            if sid is not None and not self.unique(row, "id", sid, lines, "store"):
                sid = None
            if t.done(row):
                out[sid] = Store(sid, *vals, lat, lon, hours, tz)
                lines[sid] = row.line
                self.skipped_keys[STORES].pop(sid, None)
            elif sid is not None:
                self.skipped_keys[STORES].setdefault(sid, row.location)
        return out

    def catalog(self, t: _Table) -> dict[str, CatalogItem]:
        out, lines = {}, {}
        for row in t.rows():
            sku = row.get("sku", _ident)
            name, category, sizes = row.get("name"), row.get("category", _category), row.get("sizes", _sizes)
            if sku is not None and not self.unique(row, "sku", sku, lines, "sku"):
                sku = None
            if t.done(row):
                out[sku] = CatalogItem(sku, name, category, sizes)
                lines[sku] = row.line
                self.skipped_keys[CATALOG].pop(sku, None)
            elif sku is not None:
                self.skipped_keys[CATALOG].setdefault(sku, row.location)
        return out

    def inventory(self, t: _Table, stores: dict[str, Store], catalog: dict[str, CatalogItem]):
        stock, lines, orphans = {}, {}, {}
        for row in t.rows():
            orphan = self.orphan(row)
            if orphan is not None:               # refers to a skipped store or sku: one error per key
                orphans.setdefault(orphan, [row.line, 0])[1] += 1
                t.skip_orphan(row)
                continue
            store = row.get("store", lambda raw: self.known(raw, stores, STORES, "store"))
            sku = row.get("sku", lambda raw: self.known(raw, catalog, CATALOG, "sku"))
            size = row.get("size")
            qty = row.get("quantity", _count)
            if sku is not None and size is not None and size not in catalog[sku].sizes:
                row.error("size", "D109", f"{q(size)}: {sku} comes in {' '.join(catalog[sku].sizes)}",
                          did_you_mean(size, catalog[sku].sizes))
            key = f"{store} {sku} {size}"
            if None not in (store, sku, size):
                self.unique(row, "size", key, lines, "stock row")
            if t.done(row):
                stock.setdefault((sku, size), {})[store] = qty
                lines[key] = row.line
        for (column, file, key), (line, count) in orphans.items():
            rows = f"its {count} stock rows are" if count > 1 else "its stock row is"
            self.report.add(DataError(
                "D108", f"column {q(column)}: {column} {key} was skipped (its row {self.skipped_keys[file][key]} "
                f"has errors), so {rows} skipped too", t.span(line, column), column))
        return stock

    def orphan(self, row: _Row) -> tuple[str, str, str] | None:
        for column, file in (("store", STORES), ("sku", CATALOG)):
            if row.values[column] in self.skipped_keys[file]:
                return column, file, row.values[column]
        return None

    @staticmethod
    def known(raw: str, table: dict, file: str, what: str) -> str:
        if raw in table:
            return raw
        raise _Bad("D108", f"unknown {what} (not in {file})", did_you_mean(raw, table))


def load_dir(directory: str | os.PathLike) -> LoadResult:
    """Load the three files of ``directory``: the good rows and a report of
    the skipped ones; raises InventoryLoadError when a file is unusable."""
    loader = _Loader(os.fspath(directory))
    tables, problems = {}, []
    for name in (STORES, CATALOG, INVENTORY):   # every unusable file is reported at once
        try:
            tables[name] = loader.table(name)
        except InventoryLoadError as err:
            problems.extend(err.errors)
    if problems:
        raise InventoryLoadError(problems)
    stores = loader.stores(tables[STORES])
    catalog = loader.catalog(tables[CATALOG])
    stock = loader.inventory(tables[INVENTORY], stores, catalog)
    order = {t.source.path: i for i, t in enumerate(tables.values())}
    loader.report.errors.sort(key=lambda e: (order.get(e.span.path, -1), e.span.start) if e.span else (-1, 0))
    return LoadResult(InventoryData(stores, catalog, stock), loader.report)
