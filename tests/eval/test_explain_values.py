"""The values an explanation shows are the rules' view: times as ISO-8601
UTC text wherever they sit (a timeline inside a map included), and text
that is already a time passes through."""
from __future__ import annotations

import json
from pathlib import Path

from engine.ruleset import load

ROOT = Path(__file__).resolve().parents[2]


def _values(explanation) -> dict:
    found = {}

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("values"), dict):
                found.update(x["values"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(explanation)
    return found


def test_a_map_of_timelines_shows_iso_times_like_a_single_timeline():
    rs = load(ROOT / "rules")
    profile = json.loads((ROOT / "rules/data/sample_profiles/runner.json").read_text())
    profile["visits"] = {"app": [1795400000.0, 1795300000.0], "web": ["2026-11-20T10:00:00Z"]}
    shown = _values(rs.explain(profile, {"channel": "app"}, 1795420000.0, "c-1001"))
    assert shown["profile.visits"] == {"app": ["2026-11-23T02:13:20Z", "2026-11-21T22:26:40Z"],
                                       "web": ["2026-11-20T10:00:00Z"]}
    assert shown['profile.visits["app"]'] == ["2026-11-23T02:13:20Z", "2026-11-21T22:26:40Z"]
