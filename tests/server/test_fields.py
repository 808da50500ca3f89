"""engine/service/_fields.pxd: the compiled decision path reads the
request's and the answer's msgspec fields from their slots.  Every field it
reads that way must have one (else it silently takes the slow generic
lookup), and an object that is not exactly the type (a subclass) must still
read right, through the generic path."""
from __future__ import annotations

from engine.server import _wire, wire
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.service import _decide
from engine.service.model import DecideQuery, RequestContext


def test_every_field_read_from_a_slot_has_one():
    assert _decide.generic_fields() == []
    assert _wire.generic_fields() == []


class Context(RequestContext):
    pass


class Query(DecideQuery):
    extra: int = 0                      # a subclass with a field of its own: another layout


def test_a_subclass_reads_through_the_generic_path():
    ctx = Context("web", "mobile", "en-GB", "product", "TEE-001", "tops", (51.5, -0.1), "s1", 1.8e9,
                  {"campaign": "spring"})
    assert _decide.to_request(ctx) == ctx.to_request()
    base = RequestContext("web", "mobile", "en-GB", "product", "TEE-001", "tops", (51.5, -0.1), "s1", 1.8e9,
                          {"campaign": "spring"})
    assert _decide.to_request(base) == ctx.to_request()
    q = Query("c-1", {"lifecycle": "vip"}, 900, ctx, (), False, False, (("loyalty_card", "x" * 300),), 7)
    assert _decide.common_case(q) is False            # the long card, read through getattr
    q.aliases = (("loyalty_card", "L-1"),)
    assert _decide.common_case(q) is False            # attributes are set: not the common case
    ctx.attributes = None
    assert _decide.common_case(q) is True


def test_an_answer_encodes_alike_from_its_slots():
    # the encoder reads every field of a full answer from its slot; the runtime's bytes are the reference
    from engine.ruleset import load
    from engine.server import convert
    from engine.service import Decider, RulesetHolder
    from engine.service.inventory import InventoryHolder, InventoryStores
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    decider = Decider(RulesetHolder(load(root / "rules")),
                      stores=InventoryStores(InventoryHolder.open(root / "rules" / "data")))
    q = DecideQuery("c-9", {"customer_id": "c-9", "lifecycle": "vip", "preferred_store": "s001"}, 60,
                    RequestContext("web", None, None, "product", "RUN-002", "running-shoes", None, None, 1.8e9))
    r = decider.decide(q)
    assert r.nearby_stores is not None and r.next_best_offer is not None
    assert pb.DecideResponse.FromString(wire.encode_result(r)) == convert.result_to_pb(r)
