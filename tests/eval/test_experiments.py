"""Experiment assignment: the published hash, its test vectors, and its use."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from engine.eval.values import assign_variant, bucket
from tests.conftest import compile_ok, evaluators

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "experiment_vectors.json").read_text())


def test_buckets_match_the_published_vectors():
    for v in VECTORS["buckets"]:
        assert bucket(v["salt"], v["customer_id"]) == v["bucket"], v


def test_assignments_match_the_published_vectors():
    x = VECTORS["experiment"]
    holdout = x["holdout_percent"] * 100
    upper, bands = holdout, []
    for name, pct in x["variants"]:
        upper += pct * 100
        bands.append((name, upper))
    for a in VECTORS["assignments"]:
        assert assign_variant(x["salt"], holdout, bands, a["customer_id"]) == a["variant"]


def test_the_vectors_in_the_docs_are_the_tested_ones():
    doc = (Path(__file__).parents[2] / "docs" / "experiments.md").read_text()
    for v in VECTORS["buckets"]:
        assert f"| {v['salt']} | {v['customer_id']} | {v['bucket']} |" in doc


def test_split_follows_the_weights():
    counts = Counter(assign_variant("exp", 1000, [("a", 5500), ("b", 10000)], f"c{i}") for i in range(20000))
    assert abs(counts["holdout"] / 20000 - 0.10) < 0.01
    assert abs(counts["a"] / 20000 - 0.45) < 0.015


def test_no_customer_means_no_assignment():
    assert assign_variant("exp", 1000, [("a", 10000)], None) is None
    assert assign_variant("exp", 1000, [("a", 10000)], "") is None


PACK = """
decision hero: string pick first default "generic"
decision nbo: offer pick best
experiment copy on nbo holdout 20% variant short 40% variant long 40%
rule personal when experiment.copy == long then hero = "long-hero"
offer o1 score 1 message "One"
"""


def test_holdout_gets_the_default_and_everyone_is_told_their_variant():
    result = compile_ok(PACK)
    for name, ev in evaluators(result).items():
        seen = Counter()
        for i in range(400):
            hero, nbo = ev.run({}, {}, 0.0, f"c{i}")
            variants = dict(nbo[3])
            seen[variants["copy"]] += 1
            if variants["copy"] == "holdout":
                assert nbo[0] == () and nbo[4] == "holdout"
            else:
                assert nbo[0] == (0,)
            assert (hero[0] == (0,)) == (variants["copy"] == "long")
        assert set(seen) == {"holdout", "short", "long"}, name


def test_same_variant_on_every_channel():
    result = compile_ok(PACK)
    ev = evaluators(result)["compiled"]
    for i in range(50):
        variants = {tuple(ev.run({}, {"channel": ch}, 0.0, f"c{i}")[1][3]) for ch in ("web", "app", "email", "pos")}
        assert len(variants) == 1
