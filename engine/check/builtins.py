"""Built-in functions of the rule language: one table, read by the checker,
the compiler, the reference interpreter and the documentation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import types as T


@dataclass(frozen=True)
class Builtin:
    name: str
    signature: str
    doc: str
    #: (argument types) -> result type, or a str describing the problem
    typer: Callable[[list[T.Type]], "T.Type | str"]


def _distance(args):
    if len(args) != 2:
        return "takes two locations"
    if any(a.kind != "geo" for a in args):
        return "takes two locations (geo attributes or geo(lat, lon))"
    return T.DISTANCE


def _geo(args):
    if len(args) != 2 or any(a.kind != "number" for a in args):
        return "takes a latitude and a longitude (numbers)"
    return T.GEO


def _size(args):
    if len(args) != 1 or args[0].kind not in ("set", "list", "map", "timeline"):
        return "takes one set, list, map or timeline"
    return T.NUMBER


def _min_max(args):
    if len(args) < 2:
        return "takes two or more values"
    kinds = {a.kind for a in args}
    if len(kinds) != 1 or not args[0].is_ordered:
        return "takes values of one kind: numbers, timestamps, durations or distances"
    return args[0]


def _abs(args):
    if len(args) != 1 or args[0].kind not in ("number", "duration", "distance"):
        return "takes one number, duration or distance"
    return args[0]


def _count(args):
    if len(args) != 2 or args[0].kind != "timeline" or args[1].kind != "duration":
        return "takes a timeline and a duration: count(profile.offer_impressions[\"x\"], 7 days)"
    return T.NUMBER


def _latest(args):
    if len(args) != 1 or args[0].kind != "timeline":
        return "takes one timeline"
    return T.TIMESTAMP


def _calendar(args):
    if len(args) != 1 or args[0].kind != "timestamp":
        return "takes one timestamp, e.g. month(now)"
    return T.NUMBER


BUILTINS: dict[str, Builtin] = {b.name: b for b in [
    Builtin("distance", "distance(a: geo, b: geo) -> distance",
            "great-circle distance between two locations", _distance),
    Builtin("geo", "geo(lat: number, lon: number) -> geo", "a location from its coordinates", _geo),
    Builtin("size", "size(x: set | list | map | timeline) -> number",
            "how many items; a missing value counts 0", _size),
    Builtin("min", "min(a, b, ...) -> same kind", "the smallest value that is set", _min_max),
    Builtin("max", "max(a, b, ...) -> same kind", "the largest value that is set", _min_max),
    Builtin("abs", "abs(x) -> same kind", "absolute value", _abs),
    Builtin("count", "count(t: timeline, window: duration) -> number",
            "how many times in the timeline fall within the window before now", _count),
    Builtin("latest", "latest(t: timeline) -> timestamp",
            "the most recent time in a timeline; missing when it is empty", _latest),
    Builtin("month", "month(t: timestamp) -> number", "the month, 1 (January) to 12, in UTC", _calendar),
    Builtin("weekday", "weekday(t: timestamp) -> number", "the day of the week, 1 (Monday) to 7, in UTC",
            _calendar),
    Builtin("hour", "hour(t: timestamp) -> number", "the hour of the day, 0 to 23, in UTC", _calendar),
]}
