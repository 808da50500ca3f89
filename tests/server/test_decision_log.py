"""The decision log: what is masked, pseudonyms, and that replay reads it."""
from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from engine.replay import read_samples
from engine.ruleset import load
from engine.service.decision_log import DecisionLog, Pseudonyms, load_key, mask
from engine.service.model import ProfileStatus

from .conftest import NOW, RUNNER

KEY = b"k" * 32
P = Pseudonyms(KEY)

CASES = [
    # (input, masked)
    ({"customer_id": "c-1"}, {"customer_id": P("c-1")}),
    ({"email_address": "a@b.co", "phone": "+44", "device_id": "d", "loyalty_card": "L1", "name": "Ann",
      "aliases": ["x"], "lifecycle": "vip"}, {"lifecycle": "vip"}),
    ({"email": "ann@example.com"}, {}),                                   # an address: gone
    ({"email": {"last_open_at": 1.0}, "consent": {"email": True}},        # the schema's record and flag: kept
     {"email": {"last_open_at": 1.0}, "consent": {"email": True}}),
    ({"_fold": {"seq": 1}, "cart": {"skus": ["a"], "_ops": [1]}}, {"cart": {"skus": ["a"]}}),
    ({"note": "mail me at ann@example.com", "tags": ["x", "b@c.de"]}, {"tags": ["x"]}),
    ({"home": {"lat": 51.507351, "lon": -0.127758}}, {"home": {"lat": 51.51, "lon": -0.13}}),
    ({"home": [51.507351, -0.127758]}, {"home": [51.51, -0.13]}),
    ({"location": {"lat": "51.5", "lon": 0}}, {}),                          # not a point we can round: gone
    ({"visits": {"app": [1700000000, 1700000100]}}, {"visits": {"app": [1700000000, 1700000100]}}),
    ({"sizes": {"shoes": "42"}, "loyalty_points": 1200}, {"sizes": {"shoes": "42"}, "loyalty_points": 1200}),
]


@pytest.mark.parametrize("given, masked", CASES)
def test_masking(given, masked):
    assert mask(given, P) == masked


def test_pseudonyms_are_stable_per_key_and_differ_across_keys():
    assert P("c-1") == Pseudonyms(KEY)("c-1") != Pseudonyms(b"o" * 32)("c-1")
    assert P("c-1").startswith("h-") and len(P("c-1")) == 22 and P(None) is None


def test_the_key_is_made_once_and_private(tmp_path):
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(load_key(tmp_path / "state"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 4 and len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "decision-log.key").st_mode) == 0o600


def test_log_lines_are_what_replay_reads(pack, tmp_path):
    rs = load(pack)
    path = tmp_path / "log.jsonl"
    log = DecisionLog(path, 1.0, KEY)
    profile = {**RUNNER, "email_address": "r@example.com"}
    request = {"channel": "web", "category": "shoes", "location": {"lat": 51.5145, "lon": -0.0983}}
    for _ in range(3):
        ds = rs.decide(profile, request, NOW, customer_id="c-runner")
        log.offer(rs.version, "c-runner", profile, request, ds, ProfileStatus.SNAPSHOT)
    never = DecisionLog(tmp_path / "none.jsonl", 0.0, KEY)
    never.offer(rs.version, "c-runner", profile, request, ds, ProfileStatus.SNAPSHOT)
    log.close()
    never.close()
    assert (tmp_path / "none.jsonl").read_text() == ""
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    assert len(lines) == 3 and log.written == 3 and log.dropped == 0
    assert rec["profile_status"] == "snapshot" and rec["decisions"]["next_best_offer"]["value"]
    samples = list(read_samples(path))
    assert [s.customer_id for s in samples] == [P("c-runner")] * 3
    again = rs.decide(samples[0].profile, samples[0].request, samples[0].now)
    assert again["prefill_size"].value == ds["prefill_size"].value == "42"
    assert again["homepage_category"].value == ds["homepage_category"].value
