"""The types of the rule language.

Values are scalars (bool, number, string, timestamp, duration, distance,
geo), string sets, maps with string keys, timelines (lists of timestamps,
for frequency caps), list literals and records (nested schema attributes).
An enum is a string type that also knows its allowed values.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Type:
    kind: str
    elem: "Type | None" = None                           # set/list element, map value
    members: tuple[str, ...] | None = None               # enum values (kind "string")
    fields: tuple[tuple[str, "Type"], ...] | None = None  # record fields

    # -- classification
    @property
    def is_error(self) -> bool:
        return self.kind == "error"

    @property
    def is_scalar(self) -> bool:
        return self.kind in SCALAR_KINDS

    @property
    def is_enum(self) -> bool:
        return self.kind == "string" and self.members is not None

    @property
    def is_ordered(self) -> bool:
        return self.kind in ORDERED_KINDS

    def field(self, name: str) -> "Type | None":
        for n, t in self.fields or ():
            if n == name:
                return t
        return None

    def describe(self) -> str:
        k = self.kind
        if k == "string" and self.members is not None:
            shown = ", ".join(self.members[:6]) + (", …" if len(self.members) > 6 else "")
            return f"one of ({shown})"
        if k in ("set", "list"):
            return f"a {k} of {_plural(self.elem)}" if self.elem and self.elem.kind != "any" else f"a {k}"
        if k == "map":
            return f"a map of {_plural(self.elem)}"
        return _ARTICLE.get(k, k)

    def __str__(self) -> str:
        k = self.kind
        if k == "string" and self.members is not None:
            return "enum(" + ", ".join(self.members) + ")"
        if k in ("set", "list", "map"):
            return f"{k}<{self.elem}>"
        if k == "record":
            return "{" + ", ".join(f"{n}: {t}" for n, t in self.fields or ()) + "}"
        return k


_ARTICLE = {
    "bool": "true/false", "number": "a number", "string": "a string", "timestamp": "a timestamp",
    "duration": "a duration", "distance": "a distance", "geo": "a location (geo)",
    "timeline": "a timeline", "record": "a group of attributes", "offer": "an offer",
    "any": "anything", "error": "an invalid value",
}
_PLURAL = {"string": "strings", "number": "numbers", "bool": "true/false values",
           "timestamp": "timestamps", "duration": "durations", "distance": "distances",
           "geo": "locations", "timeline": "timelines"}


def _plural(t: "Type | None") -> str:
    return _PLURAL.get(t.kind, t.kind) if t is not None else "values"


SCALAR_KINDS = frozenset({"bool", "number", "string", "timestamp", "duration", "distance", "geo"})
ORDERED_KINDS = frozenset({"number", "timestamp", "duration", "distance"})

BOOL = Type("bool")
NUMBER = Type("number")
STRING = Type("string")
TIMESTAMP = Type("timestamp")
DURATION = Type("duration")
DISTANCE = Type("distance")
GEO = Type("geo")
TIMELINE = Type("timeline")
OFFER = Type("offer")
ANY = Type("any")
ERROR = Type("error")

#: Type names a schema or decision may use.
SIMPLE_TYPES = {t.kind: t for t in (BOOL, NUMBER, STRING, TIMESTAMP, DURATION, DISTANCE, GEO, TIMELINE)}

#: What people type for a type, mapped to ours (for "did you mean").
TYPE_ALIASES = {"int": "number", "integer": "number", "float": "number", "double": "number",
                "decimal": "number", "str": "string", "text": "string", "boolean": "bool",
                "datetime": "timestamp", "date": "timestamp", "time": "timestamp",
                "location": "geo", "point": "geo"}


def set_of(elem: Type) -> Type:
    return Type("set", elem=elem)


def list_of(elem: Type) -> Type:
    return Type("list", elem=elem)


def map_of(value: Type) -> Type:
    return Type("map", elem=value)


def enum(members) -> Type:
    return Type("string", members=tuple(members))


def record(fields) -> Type:
    return Type("record", fields=tuple(fields))


def plain(t: Type) -> Type:
    """The type without enum members (an enum is a string)."""
    return STRING if t.kind == "string" else t


def same_kind(a: Type, b: Type) -> bool:
    """Whether two values can be compared for equality / assigned."""
    if a.is_error or b.is_error or a.kind == "any" or b.kind == "any":
        return True
    if a.kind != b.kind:
        return False
    if a.kind in ("set", "list", "map"):
        return same_kind(a.elem or ANY, b.elem or ANY)
    return True


def assignable(target: Type, value: Type) -> bool:
    """Whether a value of type ``value`` may be stored where ``target`` is declared."""
    if target.kind in ("set", "list") and value.kind in ("set", "list"):
        return same_kind(target.elem or ANY, value.elem or ANY)
    return same_kind(target, value)
