"""`--store jsonl:PATH`: the file's profiles are checked against the pack's
schema profile at start and again after a reload that changes it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.server.app import ProfileRecheck, profile_schema
from engine.server.pb.maple.v1 import admin_pb2 as apb
from engine.server.pb.maple.v1 import admin_pb2_grpc

TIER = "\nschema profile {\n  tier: string\n}\n"


def ruleset(schema):
    return SimpleNamespace(checked=SimpleNamespace(schema={"profile": schema} if schema is not None else {}))


def test_a_check_runs_first_and_then_only_when_the_schema_changes():
    seen = []
    recheck = ProfileRecheck(seen.append)
    first, same, other, none, again = ruleset(("a",)), ruleset(("a",)), ruleset(("a", "b")), ruleset(None), \
        ruleset(None)
    for rs, checks in ((first, True), (same, False), (other, True), (none, True), (again, False)):
        t = recheck(rs)
        assert (t is not None) == checks
        if t is not None:
            t.join(30)
    assert seen == [first, other, none]
    assert profile_schema(first) == ("a",) and profile_schema(none) is None and profile_schema(object()) is None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_reload_that_drops_an_attribute_names_the_profiles_still_holding_it(pack, tmp_path, start_server,
                                                                               workers):
    (pack / "tier.rules").write_text(TIER)
    f = tmp_path / "profiles.jsonl"
    f.write_text('{"customer_id": "c1", "lifecycle": "vip"}\n{"customer_id": "c2", "tier": "gold"}\n')
    s = start_server(pack, "--store", f"jsonl:{f}", "--workers", workers, "--log-level", "INFO")
    s.wait_health()
    before = s.read_stderr(until=b"serving ruleset").decode()
    assert "no attribute" not in before
    (pack / "tier.rules").unlink()
    reply = admin_pb2_grpc.AdminServiceStub(s.admin_channel).ReloadRules(apb.ReloadRulesRequest(), timeout=60)
    assert reply.changed
    after = s.read_stderr(until=b"profile has no attribute `tier`").decode()
    assert f"{f}:2: profile has no attribute `tier`" in after
    assert s.terminate() == 0
