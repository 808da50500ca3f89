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


# ---------------------------------------------------------------- the compiled kernel's own SHA-256
import hashlib  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _head64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_the_kernel_s_sha256_is_hashlib_s(a, b):
    from engine.eval._kernel import sha256_head64
    assert sha256_head64(a, b) == _head64(a + b)


def test_the_kernel_s_sha256_at_every_padding_boundary():
    from engine.eval._kernel import sha256_head64
    for n in range(0, 200):                  # 55/56 and 63/64 bytes: where the length spills into a second block
        data = bytes(range(256))[:n] if n <= 256 else b""
        for cut in {0, n // 2, n}:
            assert sha256_head64(data[:cut], data[cut:]) == _head64(data), (n, cut)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=120))
def test_the_compiled_kernel_assigns_as_the_published_function(customer_id):
    """Every evaluator's variant for any id (non-ASCII, longer than a block)
    is values.assign_variant's; the compiled kernel hashes in C."""
    result = compile_ok(PACK)
    want = assign_variant("copy", 2000, [("short", 6000), ("long", 10000)], customer_id)
    for name, ev in evaluators(result).items():
        assert dict(ev.run({}, {}, 0.0, customer_id)[1][3])["copy"] == want, name


def test_a_declared_salt_and_a_non_ascii_one_are_hashed_as_published():
    for salt in ("spring-2027", "été☕"):
        result = compile_ok(PACK.replace("experiment copy on nbo", f'experiment copy on nbo salt "{salt}"'))
        ev = evaluators(result)["compiled"]
        for i in range(300):
            cid = f"c{i}é" if i % 2 else f"customer-{i:08d}-" + "x" * (i % 70)
            want = assign_variant(salt, 2000, [("short", 6000), ("long", 10000)], cid)
            assert dict(ev.run({}, {}, 0.0, cid)[1][3])["copy"] == want, (salt, cid)
