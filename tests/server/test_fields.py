"""engine/service/_fields.pxd: the compiled decision path reads the
request's and the answer's msgspec fields from their slots, and the
service's own objects' attributes a Decide reads (the Decider, its plan, the
profile cache, the inventory snapshot) from their ``__slots__``.  Every field
it reads that way must have one (else it silently takes the slow generic
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


def test_the_service_objects_read_alike_from_their_slots_and_as_subclasses():
    # a Decide reads the Decider, its ruleset holder and plan, the inventory's holder, the inventory,
    # its snapshot and geo index from their slots; subclasses of them take getattr: the same answers
    from engine.ruleset import load
    from engine.service import Decider, RulesetHolder
    from engine.service._decide import answer
    from engine.service.assemble import Plan
    from engine.service.inventory import InventoryHolder, InventoryStores
    from pathlib import Path

    class SubDecider(Decider):
        pass

    class SubHolder(RulesetHolder):
        pass

    class SubPlan(Plan):
        pass

    class SubInventoryHolder(InventoryHolder):
        pass

    root = Path(__file__).resolve().parents[2]
    rs = load(root / "rules")
    fast = Decider(RulesetHolder(rs), stores=InventoryStores(InventoryHolder.open(root / "rules" / "data")))
    slow = SubDecider(SubHolder(rs), stores=InventoryStores(SubInventoryHolder.open(root / "rules" / "data")))
    slow._plan = SubPlan(rs)
    assert type(fast._plan) is Plan and type(slow.stores.holder) is SubInventoryHolder
    queries = [DecideQuery(cid, profile, 60, RequestContext("web", None, None, page, sku, category, where, None,
                                                            1.8e9))
               for cid, profile in (("c-1", {"customer_id": "c-1", "lifecycle": "vip", "preferred_store": "s001"}),
                                    ("c-2", {"sizes": {"running-shoes": "42"}, "home": {"lat": 51.5, "lon": -0.12}}),
                                    ("", None))
               for page, sku, category, where in (("product", "RUN-002", "running-shoes", None),
                                                  ("product", "TEE-001", "t-shirts", (51.51, -0.13)),
                                                  ("home", None, None, None))]
    assert [fast.decide(q) for q in queries] == [slow.decide(q) for q in queries]
    assert any(fast.decide(q).nearby_stores.stores for q in queries)
    for q in queries:
        assert answer(fast, q, None, None, wire.encode_result, wire.encode_raw) == \
            answer(slow, q, None, None, wire.encode_result, wire.encode_raw)
