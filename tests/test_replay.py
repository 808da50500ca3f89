"""maple replay: what a rules change would change, on sample customers."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import ruleset
from engine.replay import ReplayInputError, read_samples, replay

RULES = Path(__file__).resolve().parents[1] / "rules"
NOW = "2026-11-23T10:00:00Z"


@pytest.fixture
def changed_rules(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(RULES, new)
    text = (new / "homepage.rules").read_text()
    (new / "homepage.rules").write_text(text.replace("rule winter_outerwear priority 20",
                                                     "rule winter_outerwear priority 65"))
    return new


@pytest.fixture
def customers(tmp_path):
    lines = [{"profile": {"lifecycle": "new", "customer_id": "n1"}, "request": {"channel": "web"}},
             {"profile": {"lifecycle": "new", "customer_id": "n2"}, "request": {"channel": "app"}},
             {"profile": {"lifecycle": "vip", "customer_id": "v1"}, "request": {"channel": "web"}},
             {"profile": {"lifecycle": "active"}, "request": {"channel": "pos"}, "now": NOW}]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_replay_counts_transitions_and_names_the_rules(changed_rules, customers):
    from engine.cli import parse_time
    old, new = ruleset.load(RULES), ruleset.load(changed_rules)
    report = replay(old, new, read_samples(customers, default_now=parse_time(NOW)))
    hp = report.decisions["homepage_category"]
    assert report.samples == 4 and hp.total == 4
    assert hp.changed == 2 and report.affected == ["n1", "n2"]
    assert hp.transitions == {('"bestsellers"', '"jackets"'): 2}
    ex = hp.examples[0]
    assert (ex["before_rule"], ex["after_rule"]) == ("onboarding", "winter_outerwear")
    assert ex["explanation"]["candidates"]
    assert report.decisions["next_best_offer"].changed == 0
    assert set(report.latency) == {"old", "new"}


def test_identical_rules_change_nothing(customers):
    rs = ruleset.load(RULES)
    report = replay(rs, rs, read_samples(customers))
    assert report.affected == [] and all(c.changed == 0 for c in report.decisions.values())


def test_bad_lines_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\n[1, 2]\n')
    with pytest.raises(ReplayInputError, match=r"bad.jsonl:2: each line must be a JSON object"):
        list(read_samples(path))


def test_a_bad_now_on_a_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"profile": {}, "now": "2026-11-23T10:00:00Z"}\n{"profile": {}, "now": "1795290000000"}\n')
    with pytest.raises(ReplayInputError, match=r"bad.jsonl:2: now: '1795290000000' looks like milliseconds"):
        list(read_samples(path))


def test_cli_json(changed_rules, customers):
    r = subprocess.run([sys.executable, "-m", "engine", "replay", "--rules", str(changed_rules), "--against",
                        str(RULES), "--profiles", str(customers), "--now", NOW, "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["customers_affected"] == 2
    assert out["decisions"]["homepage_category"]["transitions"] == [
        {"before": "bestsellers", "after": "jackets", "count": 2}]
