"""Maple's adapter for the neutral peer benchmark (../shared/peers).

``Maple(workload)`` translates any peer workload into Maple rule files (a
schema, a first-match ``homepage`` decision, a best-score ``offer``
decision), compiles them once, and ``decide(profile)`` evaluates one profile
dict with the compiled kernel.  Nothing is precomputed per profile: the dict
is read by the kernel inside the timed call, like every other adapter.

    PYTHONPATH=../shared/peers python ../shared/peers/crosscheck.py w.json \\
        --engines py-codegen --adapter bench.peer_adapter:Maple
"""
from __future__ import annotations

import json
import os

from engine.compile import compile_sources
from engine.diagnostics import render_all
from engine.source import SourceFile

_TYPES = {"str": "string", "str_nullable": "string", "enum": "string", "enum_nullable": "string",
          "int": "number", "float": "number", "bool": "bool", "str_set": "set<string>"}


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def _condition(preds) -> str:
    parts = []
    for p in preds:
        op, f = p["op"], "profile." + p["field"]
        if op == "eq":
            parts.append(f"{f} == {_literal(p['value'])}")
        elif op == "neq":
            parts.append(f"{f} != {_literal(p['value'])}")
        elif op == "in":
            parts.append(f"{f} in [{', '.join(_literal(v) for v in p['values'])}]")
        elif op == "range":
            if p["min"] is not None:
                parts.append(f"{f} >= {_literal(p['min'])}")
            if p["max"] is not None:
                parts.append(f"{f} <= {_literal(p['max'])}")
        elif op == "bool":
            parts.append(f"{f} == {_literal(p['value'])}")
        elif op == "seg":
            parts.append(f"{_literal(p['value'])} in {f}")
        else:
            raise ValueError(f"unknown predicate {op}")
    return "\n    and ".join(parts) if parts else "true"


def offer_name(offer_id: str) -> str:
    return "o_" + "".join(ch if ch.isalnum() else "_" for ch in offer_id)


def translate(wl: dict) -> dict[str, str]:
    """The workload as Maple rule files: {file name: text}."""
    schema = ["schema profile {"]
    schema += [f"  {field}: {_TYPES[kind]}" for field, kind in wl["schema"].items()]
    schema += ["}", ""]
    schema.append(f"decision homepage: string pick first default {_literal(wl['homepage_default'])}")
    schema.append("decision offer: offer pick best")
    rules = []
    for r in wl["homepage_rules"]:
        # peers: the lowest priority number wins; Maple: the highest priority wins
        rules.append(f"rule {r['id']} priority {-r['priority']}\n"
                     f"  when {_condition(r['predicates'])}\n"
                     f"  then homepage = {_literal(r['output'])}\n")
    offers = []
    for o in sorted(wl["offers"], key=lambda o: o["id"]):   # ties: the smallest id comes first
        offers.append(f"offer {offer_name(o['id'])}\n"
                      f"  when {_condition(o['predicates'])}\n"
                      f"  score {o['weight']} * (10000 + profile.loyalty_points)"
                      f" + {o['boost']} * profile.orders_count * 100\n")
    files = {"schema.rules": "\n".join(schema) + "\n"}
    # at most 1,000 declarations a file, like a pack people maintain (and
    # below the per-file size limit); files are read in path order
    for i in range(0, max(1, len(rules)), 1000):
        files[f"homepage_{i // 1000:03d}.rules"] = "\n".join(rules[i:i + 1000])
    for i in range(0, max(1, len(offers)), 1000):
        files[f"offers_{i // 1000:03d}.rules"] = "\n".join(offers[i:i + 1000])
    return files


class Maple:
    name = "maple"
    note = "Maple rule files compiled once: rule index + Cython kernel; dict read inside the call"

    def __init__(self, wl: dict):
        from engine.eval import load_kernel
        files = translate(wl)
        dump = os.environ.get("MAPLE_PEER_DUMP")
        if dump:
            os.makedirs(dump, exist_ok=True)
            for name, text in files.items():
                with open(os.path.join(dump, name), "w") as f:
                    f.write(text)
        result = compile_sources([SourceFile(name, text) for name, text in files.items()])
        if not result.ok:
            raise RuntimeError("Maple rejected the translated pack:\n" + render_all(result.diagnostics.errors))
        self.program = result.program
        self.compile_s = sum(result.timings.values())
        self.kernel = load_kernel(result.program)
        self._ids = {offer_name(o["id"]): o["id"] for o in wl["offers"]}
        self._run = self.kernel.run_primary
        self._empty: dict = {}

    def decide(self, p):
        homepage, offer = self._run(p, self._empty, None)
        return homepage, (self._ids[offer] if offer is not None else None)
