"""Value semantics shared by the Python evaluators (and mirrored in the kernel).

Missing is ``None`` everywhere.  Inputs are plain JSON-like dicts; each
attribute is converted by its schema type, and anything that does not fit
the type counts as missing (never an exception):

========== ============================================================
number     int or float (not bool), finite
string     str
bool       True or False
timestamp  a number (seconds since the epoch) or ISO-8601 text
duration   a number of seconds; distance: a number of km
geo        {"lat": .., "lon": ..} or [lat, lon], in range
set        a list/tuple/set of strings (other items are ignored)
map        a dict with string keys; values converted by the map's type
timeline   a list of timestamps (invalid items are ignored)
========== ============================================================

Arithmetic on a missing value is missing; so are ``x / 0`` and any result
that is not a finite number.
"""
from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone

EARTH_RADIUS_KM = 6371.0088


def to_number(v):
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is int:
        try:
            f = float(v)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    return None


def to_string(v):
    return v if type(v) is str else None


def to_bool(v):
    return v if type(v) is bool else None


def parse_time(text: str):
    """ISO-8601 text -> seconds since the epoch (naive times are UTC)."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):  # pragma: no cover - extreme dates
        return None


def to_timestamp(v):
    if type(v) is str:
        return parse_time(v)
    return to_number(v)


def to_geo(v):
    if type(v) is tuple and len(v) == 2:         # the common case, a request's point: as it is
        lat, lon = v
        if type(lat) is float and type(lon) is float and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
            return v
    if type(v) is dict:
        lat, lon = to_number(v.get("lat")), to_number(v.get("lon"))
    elif type(v) in (list, tuple) and len(v) == 2:
        lat, lon = to_number(v[0]), to_number(v[1])
    else:
        return None
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
        return None
    return (lat, lon)


def to_set(v):
    if type(v) in (list, tuple, set, frozenset):
        return frozenset(x for x in v if type(x) is str)
    return None


def to_map(v):
    return v if type(v) is dict else None


def to_timeline(v):
    if type(v) in (list, tuple):
        out = []
        for x in v:
            t = to_timestamp(x)
            if t is not None:
                out.append(t)
        return out
    return None


def to_record(v):
    return v if type(v) is dict else None


def walk(root, path):
    """The raw value at ``path`` inside nested dicts, or None."""
    v = root
    for key in path:
        if type(v) is not dict:
            return None
        v = v.get(key)
    return v


# ---------------------------------------------------------------- arithmetic
def finite(x):
    return x if x is not None and math.isfinite(x) else None


def add(a, b):
    return None if a is None or b is None else finite(a + b)


def sub(a, b):
    return None if a is None or b is None else finite(a - b)


def mul(a, b):
    return None if a is None or b is None else finite(a * b)


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return finite(a / b)


def neg(a):
    return None if a is None else -a


def haversine_km(a, b):
    """Great-circle distance between two (lat, lon) points in km."""
    if a is None or b is None:
        return None
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    s1 = math.sin((lat2 - lat1) * 0.5)
    s2 = math.sin((lon2 - lon1) * 0.5)
    h = s1 * s1 + math.cos(lat1) * math.cos(lat2) * s2 * s2
    if h > 1.0:
        h = 1.0
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


# ---------------------------------------------------------------- calendar
#: timestamps of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z
MIN_TIME, MAX_TIME = -62135596800.0, 253402300799.0


#: a time in seconds beyond this (the year 5138) is taken for milliseconds
MILLISECONDS_FROM = 1e11


def iso_time(t, fraction: bool = False):
    """Seconds since the epoch as ISO-8601 UTC text (``2026-11-21T19:31:00Z``;
    with ``fraction``, the microseconds too, trailing zeros dropped:
    ``...:00.5Z``), for a person to read; anything else, or a time out of
    datetime's range, as it is."""
    if type(t) not in (int, float):          # a raw profile's map may hold ISO text already
        return t
    try:
        dt = datetime.fromtimestamp(t, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return t
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction and dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def time_problem(t: float) -> str | None:
    """Why ``t`` cannot be the time of a decision (a test's ``now``, ``--now``),
    or None: not a number, milliseconds, or outside 0001..9999."""
    if not math.isfinite(t):
        return "is not a number of seconds"
    if abs(t) >= MILLISECONDS_FROM and MIN_TIME <= t / 1000 <= MAX_TIME:
        seconds = math.floor(t / 1000)
        when = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"looks like milliseconds ({when}); give seconds since the epoch ({seconds}) "
                f"or an ISO-8601 time such as {when}")
    if not MIN_TIME <= t <= MAX_TIME:
        return ("is out of range: give seconds since the epoch (0001-01-01 to 9999-12-31) "
                "or an ISO-8601 time such as 2026-11-23T10:00:00Z")
    return None


def _days(t):
    return None if t is None or not (MIN_TIME <= t <= MAX_TIME) else math.floor(t / 86400.0)


def month(t):
    """Month 1..12 of a timestamp (UTC), by integer arithmetic (the
    days-to-civil algorithm), so every evaluator agrees to the bit."""
    days = _days(t)
    if days is None:
        return None
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    return float(mp + 3 if mp < 10 else mp - 9)


def weekday(t):
    """ISO weekday 1 (Monday) .. 7 (Sunday) of a timestamp (UTC)."""
    days = _days(t)
    return None if days is None else float((days + 3) % 7 + 1)


def hour(t):
    """Hour 0..23 of a timestamp (UTC)."""
    days = _days(t)
    return None if days is None else float(math.floor(t / 3600.0) % 24)


# ---------------------------------------------------------------- experiments
def bucket(salt: str, customer_id: str) -> int:
    """The experiment bucket of a customer, 0..9999 (basis points).

    ``sha256(utf8(salt + ":" + customer_id))``, first 8 bytes as an unsigned
    big-endian integer, modulo 10000.  The salt is the experiment's name
    unless it declares ``salt "..."``.  docs/experiments.md publishes test
    vectors so any client can reproduce assignments.
    """
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def assign_variant(salt: str, holdout_bp: int, variants, customer_id):
    """The variant name for a customer ("holdout" for the holdout group), or
    None when there is no customer id."""
    if type(customer_id) is not str or not customer_id:
        return None
    b = bucket(salt, customer_id)
    if b < holdout_bp:
        return "holdout"
    for name, upper in variants:
        if b < upper:
            return name
    return variants[-1][0] if variants else None  # pragma: no cover - weights add up to 100%


# ---------------------------------------------------------------- rendering
def render_value(v) -> str:
    """How a value appears inside a message: numbers without a needless .0,
    money-like fractions to two places; missing as nothing."""
    if v is None:
        return ""
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is float:
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.2f}"
    if type(v) is tuple:
        return f"{v[0]:.5f},{v[1]:.5f}"
    return str(v)
