"""The compiled kernel interns its slots' path keys and its strings, so that
its lookups in a cached profile (msgpack interns a stored profile's keys)
match by identity.  What it answers must not depend on that: not on whether
a profile's keys are interned (msgpack) or not (msgspec's JSON decoder),
nor on a program whose names are str subclasses, as a parser's tokens are
(which cannot be interned)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import msgpack
import msgspec

from bench.profiles import NOW, synthetic
from engine import ruleset
from engine.eval._kernel import Kernel

RULES = Path(__file__).resolve().parents[2] / "rules"


class Name(str):
    """A str subclass, as lark's Token is."""


def _renamed(program):
    def name(x):
        return Name(x) if type(x) is str else x
    slots = tuple(dataclasses.replace(s, path=tuple(Name(k) for k in s.path)) for s in program.slots)
    return dataclasses.replace(program, slots=slots, strings=tuple(name(x) for x in program.strings),
                               string_ids={name(k): v for k, v in program.string_ids.items()})


def test_answers_do_not_depend_on_interned_keys():
    program = ruleset.load(RULES).program
    kernel, renamed = Kernel(program), Kernel(_renamed(program))
    profiles = synthetic(60)
    stored = [msgpack.unpackb(msgpack.packb(p)) for p in profiles]
    inline = [msgspec.json.decode(msgspec.json.encode(p)) for p in profiles]
    assert any(sys.intern(k) is k for k in stored[0]) and not any(sys.intern(k) is k for k in inline[0])
    answered = 0
    for i, (a, b) in enumerate(zip(stored, inline)):
        view = a.get("last_view") or {}
        request = {"channel": ("web", "app", "pos", "email")[i % 4], "device": "mobile",
                   "category": view.get("category") or "boots", "sku": view.get("sku"),
                   "location": {"lat": 52.37, "lon": 4.89}}
        cid = a.get("customer_id")
        expected = kernel.run(a, request, float(NOW), cid)
        assert kernel.run(b, request, float(NOW), cid) == expected
        assert renamed.run(a, request, float(NOW), cid) == expected
        assert renamed.run(b, request, float(NOW), cid) == expected
        answered += sum(1 for r in expected if r is not None and r[0])
    assert answered > 0                     # the rules fired: the profiles' slots were read
