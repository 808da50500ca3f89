"""Servicer units with grpcio-testing: protobuf in, status and protobuf out."""
from __future__ import annotations

import grpc
import grpc_testing
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from engine.ruleset import load
from engine.server.pb.maple.v1 import admin_pb2 as apb
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server import wire
from engine.server.servicers import AdminServicer, DecisionServicer
from engine.service import Decider, LocalRules, RulesetHolder
from engine.server.status import to_status
from engine.service.errors import FieldViolation, InvalidArgument
from engine.service.sources import StaticProfiles, StaticStores

from .conftest import NOW, RUNNER, write_pack

DECISION = pb.DESCRIPTOR.services_by_name["DecisionService"]
ADMIN = apb.DESCRIPTOR.services_by_name["AdminService"]


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory):
    return load(write_pack(tmp_path_factory.mktemp("pack")))


def decision_server(holder, **kw):
    stores = StaticStores([("s-riverside", "Riverside", 51.51, -0.12, {"sku-1/42": 1}),
                           ("s-city", "City", 51.50, -0.13, {"sku-1/42": 9}),
                           ("s-far", "Far away", 53.0, -2.0, {"sku-1/42": 5})])
    decider = Decider(holder, profiles=StaticProfiles({"c-runner": RUNNER}), stores=stores, **kw)
    return grpc_testing.server_from_dictionary({DECISION: DecisionServicer(decider)},
                                               grpc_testing.strict_real_time())


def call(server, method: str, request, timeout=5):
    rpc = server.invoke_unary_unary(DECISION.methods_by_name[method], (), request, timeout)
    return rpc.termination()


def ctx(**kw) -> pb.RequestContext:
    kw.setdefault("timestamp", timestamp_pb2.Timestamp(seconds=NOW))
    return pb.RequestContext(**kw)


def bad_request_fields(err) -> list[str]:
    """The fields a BadRequest detail of ``err``'s status names."""
    md = dict(to_status(err).trailing_metadata)
    st = status_pb2.Status.FromString(md["grpc-status-details-bin"])
    br = error_details_pb2.BadRequest()
    st.details[0].Unpack(br)
    return [v.field for v in br.field_violations]


def test_decide_stored_customer_gets_all_four_typed_results(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    req = pb.DecideRequest(customer_id="c-runner", context=ctx(channel=pb.CHANNEL_WEB, category="shoes", sku="sku-1"))
    resp, _, code, details = call(server, "Decide", req)
    assert code is grpc.StatusCode.OK, details
    assert resp.ruleset_version == ruleset.version
    assert resp.profile_status == pb.PROFILE_STATUS_STORED
    assert resp.homepage_category.category == "running-shoes"
    assert resp.homepage_category.source == pb.SOURCE_RULE
    assert resp.homepage_category.reason.rule == "continue_where_left_off"
    assert resp.homepage_category.reason.because == "Continue where you left off"
    assert resp.homepage_category.reason.location.endswith("decisions.rules:4:6")
    assert resp.prefill_size.size == "42"
    stores = resp.nearby_stores.stores
    assert [s.store_id for s in stores] == ["s-riverside", "s-city"]   # preferred first, far one out of radius
    assert stores[0].preferred and stores[0].low_stock and stores[0].quantity == 1
    assert not stores[1].low_stock and stores[1].name == "City" and stores[1].distance_km < 2
    assert resp.nearby_stores.policy.radius_km == 10
    offers = resp.next_best_offer.offers
    if resp.next_best_offer.source == pb.SOURCE_HOLDOUT:
        assert not offers
    else:
        assert offers[0].id == "free_latte_with_beans" and offers[0].score == 50
        assert offers[0].experiment == "offer_copy" and offers[0].variant in ("a", "b")
    assert resp.decisions["banner"].value.string_value == "vip"
    assert resp.decisions["banner"].reason.rule == "vip_banner"
    assert not resp.degraded
    assert resp.decided_at.seconds == NOW


def test_unknown_customer_without_snapshot_gets_defaults_flagged(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    resp, _, code, _ = call(server, "Decide", pb.DecideRequest(customer_id="c-nobody", context=ctx()))
    assert code is grpc.StatusCode.OK
    assert resp.profile_status == pb.PROFILE_STATUS_UNKNOWN_CUSTOMER
    assert not resp.degraded
    assert resp.homepage_category.category == "new-arrivals"
    assert resp.homepage_category.source == pb.SOURCE_DEFAULT
    assert resp.prefill_size.size == "" and resp.prefill_size.source == pb.SOURCE_DEFAULT


def test_request_only_rules_still_fire_for_an_anonymous_visitor(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    resp, _, code, _ = call(server, "Decide", pb.DecideRequest(context=ctx(channel=pb.CHANNEL_KIOSK)))
    assert code is grpc.StatusCode.OK
    assert resp.profile_status == pb.PROFILE_STATUS_ANONYMOUS
    assert resp.homepage_category.category == "in-store-deals"


def test_inline_snapshot_and_decision_filter_and_explain(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    req = pb.DecideRequest(decisions=["prefill_size"], explain=True, context=ctx(category="shoes"))
    req.profile.update({"sizes": {"shoes": "44"}})
    resp, _, code, _ = call(server, "Decide", req)
    assert code is grpc.StatusCode.OK
    assert resp.profile_status == pb.PROFILE_STATUS_SNAPSHOT
    assert resp.prefill_size.size == "44"
    assert not resp.HasField("homepage_category") and not resp.decisions
    assert "prefill_size" in resp.explanation.fields


def test_invalid_arguments_name_every_field(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    req = pb.DecideRequest(decisions=["prefill_size", "nope"],
                           context=ctx(location=pb.GeoPoint(lat=float("nan"), lon=200)))
    _, _, code, details = call(server, "Decide", req)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "context.location.lat: must be a number from -90 to 90, got nan (and 2 more)"
    _, _, code, details = call(server, "Decide", pb.DecideRequest(context=pb.RequestContext(channel=42)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details == "context.channel: unknown enum value 42"


def test_invalid_argument_status_carries_a_bad_request_naming_each_field():
    # grpc_testing drops trailing metadata on abort; the real server sends
    # it (tests/server/test_integration.py reads it from the wire)
    err = InvalidArgument([FieldViolation("context.location.lat", "x"), FieldViolation("decisions[1]", "y")])
    assert bad_request_fields(err) == ["context.location.lat", "decisions[1]"]


def test_no_ruleset_is_failed_precondition():
    server = decision_server(RulesetHolder())
    _, _, code, details = call(server, "Decide", pb.DecideRequest())
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "no ruleset" in details


def test_a_passed_deadline_does_no_work(ruleset):
    calls = []
    server = decision_server(RulesetHolder(ruleset), clock=lambda: calls.append(1) or NOW)
    _, _, code, _ = call(server, "Decide", pb.DecideRequest(), timeout=0)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls == []          # the clock is read only when deciding


def test_batch_keeps_order_and_reports_item_errors(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    good = pb.DecideRequest(customer_id="c-runner", decisions=["banner"], context=ctx())
    bad_enum = pb.DecideRequest(context=pb.RequestContext(device=77))
    bad_name = pb.DecideRequest(decisions=["nope"])
    resp, _, code, _ = call(server, "DecideBatch", pb.DecideBatchRequest(requests=[good, bad_enum, good, bad_name]))
    assert code is grpc.StatusCode.OK
    kinds = [r.WhichOneof("result") for r in resp.results]
    assert kinds == ["response", "error", "response", "error"]
    assert resp.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.results[1].error.field_violations[0].field == "requests[1].context.device"
    assert resp.results[3].error.field_violations[0].field == "requests[3].decisions[0]"
    assert resp.results[2].response.decisions["banner"].value.string_value == "vip"


def test_batch_too_large_is_resource_exhausted(ruleset):
    server = decision_server(RulesetHolder(ruleset))
    _, _, code, details = call(server, "DecideBatch", pb.DecideBatchRequest(requests=[pb.DecideRequest()] * 1001))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "1000" in details


# ---------------------------------------------------------------- admin
def admin_server(rules):
    return grpc_testing.server_from_dictionary({ADMIN: AdminServicer(rules)}, grpc_testing.strict_real_time())


def admin_call(server, method, request):
    return server.invoke_unary_unary(ADMIN.methods_by_name[method], (), request, 5).termination()


def test_admin_validate_reports_diagnostics_with_positions(tmp_path):
    pack = write_pack(tmp_path / "p")
    server = admin_server(LocalRules(str(pack), RulesetHolder()))
    srcs = [apb.RuleSource(path=p.name, text=p.read_text()) for p in sorted(pack.iterdir())]
    resp, _, code, _ = admin_call(server, "ValidateRules", apb.ValidateRulesRequest(sources=srcs))
    assert code is grpc.StatusCode.OK and resp.ok and resp.version and resp.counts["decisions"] == 5
    srcs.append(apb.RuleSource(path="broken.rules", text="rule r when profile.lifecylce == new then banner = \"x\"\n"))
    resp, _, code, _ = admin_call(server, "ValidateRules", apb.ValidateRulesRequest(sources=srcs))
    assert code is grpc.StatusCode.OK and not resp.ok
    d = resp.diagnostics[0]
    assert (d.code, d.path, d.line, d.column) == ("E202", "broken.rules", 1, 21)
    assert "lifecycle" in d.help
    _, _, code, _ = admin_call(server, "ValidateRules", apb.ValidateRulesRequest())
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_admin_reload_compare_and_swap_and_broken_pack(tmp_path):
    pack = write_pack(tmp_path / "p")
    holder = RulesetHolder()
    rules = LocalRules(str(pack), holder)
    v1 = rules.load_initial().version
    server = admin_server(rules)
    resp, _, code, _ = admin_call(server, "ReloadRules", apb.ReloadRulesRequest(expected_version="stale"))
    assert code is grpc.StatusCode.ABORTED
    (pack / "decisions.rules").write_text((pack / "decisions.rules").read_text() + "\nconst extra = 1\n")
    resp, _, code, _ = admin_call(server, "ReloadRules", apb.ReloadRulesRequest(expected_version=v1))
    assert code is grpc.StatusCode.OK and resp.changed and resp.previous_version == v1
    v2 = resp.ruleset.version
    assert holder.current.version == v2 != v1
    (pack / "decisions.rules").write_text("decision d: string default 1\n")
    _, _, code, details = admin_call(server, "ReloadRules", apb.ReloadRulesRequest())
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "decisions.rules:1:" in details
    assert holder.current.version == v2               # the last good ruleset keeps serving
    resp, _, code, _ = admin_call(server, "GetRuleset", apb.GetRulesetRequest())
    assert resp.ruleset.version == v2 and resp.last_error.diagnostics[0].line == 1


class _BytesContext:
    """What ``decide_bytes`` asks of gRPC's context (``maple serve``'s
    Decide calls it with the server's own)."""

    def __init__(self, remaining=5.0):
        self.remaining, self.trailing, self.aborted = remaining, None, None

    def time_remaining(self):
        return self.remaining

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def abort(self, code, details):
        self.aborted = (code, details)
        raise RuntimeError(f"aborted: {code}")


def _bytes_servicer(holder, decider=None):
    stores = StaticStores([("s-city", "City", 51.50, -0.13, {"sku-1/42": 9})])
    return DecisionServicer(decider or Decider(holder, profiles=StaticProfiles({"c-runner": RUNNER}), stores=stores))


def test_decide_bytes_answers_what_decide_answers_from_a_message_or_a_read_query(ruleset):
    """``maple serve``'s Decide (``decide_bytes``, compiled with its error
    handling): the bytes of Decide's answer, from a DecideRequest or from
    the DecideQuery the wire reader makes of its bytes."""
    servicer = _bytes_servicer(RulesetHolder(ruleset))
    req = pb.DecideRequest(customer_id="c-runner", context=ctx(channel=pb.CHANNEL_WEB, category="shoes", sku="sku-1"))
    expected = servicer.Decide(req, _BytesContext())
    assert expected.prefill_size.size == "42" and expected.nearby_stores.stores[0].store_id == "s-city"
    for request in (req, wire.decide_request(req.SerializeToString())):
        context = _BytesContext()
        assert pb.DecideResponse.FromString(servicer.decide_bytes(request, context)) == expected
        assert context.aborted is None


def test_decide_bytes_answers_a_service_error_with_its_status_and_a_bug_with_internal(ruleset, caplog):
    servicer = _bytes_servicer(RulesetHolder(ruleset))
    bad = pb.DecideRequest(context=ctx(location=pb.GeoPoint(lat=91.0, lon=0.0)))
    for request in (bad, wire.decide_request(bad.SerializeToString())):
        context = _BytesContext()
        with pytest.raises(RuntimeError, match="aborted"):
            servicer.decide_bytes(request, context)
        code, details = context.aborted
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("context.location.lat: ")
        assert dict(context.trailing)["grpc-status-details-bin"]          # the BadRequest naming the field
    context = _BytesContext(remaining=0.0)                                # a passed deadline
    with pytest.raises(RuntimeError, match="aborted"):
        servicer.decide_bytes(pb.DecideRequest(), context)
    assert context.aborted[0] is grpc.StatusCode.DEADLINE_EXCEEDED
    context = _BytesContext()
    with pytest.raises(RuntimeError, match="aborted"):
        _bytes_servicer(None, decider=object()).decide_bytes(pb.DecideRequest(), context)     # a bug
    assert context.aborted == (grpc.StatusCode.INTERNAL, "internal error (logged on the server)")
    assert [(r.name, r.getMessage(), r.exc_info[0]) for r in caplog.records if r.name == "maple.server"] == [
        ("maple.server", "decide_bytes failed", AttributeError)]
