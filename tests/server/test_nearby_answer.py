"""The compiled nearby answer (engine.service._decide.nearby_answer, on
every Decide that shows stores) against results.nearby_answer, its
reference: the same NearbyStores for any policy and any rows found."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from engine.inventory.model import StoreAvailability as Row
from engine.service import results
from engine.service._decide import nearby_answer
from engine.service.model import Common, NearbyStoresPolicy
from engine.service.sources import NearbyFound

ids = st.sampled_from(["s1", "s2", "s3", "s4", "s5", "s6"])
rows = st.builds(Row, ids, st.sampled_from(["Riverside", "Market St"]),
                 st.sampled_from([0.0, 0.5, 1.25, 3.0]) | st.floats(0.0, 20.0),   # equal distances often
                 st.integers(0, 8), st.booleans(), st.none() | st.booleans())
policies = st.builds(NearbyStoresPolicy, st.floats(0.0, 50.0), st.integers(-1, 6) | st.just(2**70), st.integers(-1, 5),
                     st.integers(-1, 5), st.booleans(), st.booleans())
founds = st.builds(NearbyFound, st.lists(rows, max_size=8).map(tuple),
                   st.none() | st.sampled_from(["request", "preferred_store", "home"]),
                   st.none() | st.sampled_from(["no_stock", "no_size", "none_open", "no_location"]))


@settings(max_examples=500, deadline=None)
@given(policies, founds, st.none() | ids)
def test_the_compiled_answer_is_the_reference(policy, found, preferred):
    common = Common("rule")
    assert nearby_answer(policy, common, found, preferred) == results.nearby_answer(policy, common, found, preferred)
