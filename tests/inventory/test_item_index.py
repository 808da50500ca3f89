"""ItemIndex.nearest, the decision path's compiled ranking, against the
reference: every hit of ``within`` sorted as tuples, the preferred store's
moved to the front, cut at the limit (availability.ranked)."""
from __future__ import annotations

from hypothesis import example, given, settings, strategies as st

from engine.inventory._nearby import ItemIndex
from engine.inventory.availability import ranked

# stores in a small area, many on the very same spot (a mall: equal distances,
# ranked by store id), some with little stock
spots = st.sampled_from([(51.5, -0.1), (51.51, -0.12), (51.49, -0.08)])
near = st.tuples(st.floats(51.3, 51.7), st.floats(-0.4, 0.2))
stores = st.lists(st.tuples(spots | near, st.integers(0, 6)), max_size=40)
ids = st.sampled_from([f"s{i:02d}" for i in range(40)])


@settings(max_examples=400, deadline=None)
@given(stores, spots | near, st.sampled_from([0.0, 0.5, 2.0, 10.0, 30.0, 1e9]), st.integers(1, 4),
       st.integers(0, 12), st.none() | ids, st.randoms(use_true_random=False))
@example([((51.5, -0.1), 3), ((51.5, -0.1), 3), ((51.5, -0.1), 1)], (51.5, -0.1), 0.0, 1, 2, None, None)
def test_nearest_is_the_ranked_within(rows, where, radius, min_quantity, limit, preferred, rnd):
    names = [f"s{i:02d}" for i in range(len(rows))]
    if rnd is not None:
        rnd.shuffle(names)                      # ids in no particular order of place
    index = ItemIndex([(lat, lon, sid, q) for sid, ((lat, lon), q) in zip(names, rows)])
    expected = ranked(index.within(*where, radius, min_quantity), preferred)[:limit]
    assert index.nearest(*where, radius, min_quantity, limit, preferred) == expected


def test_ties_go_by_store_id_and_the_preferred_store_leads():
    index = ItemIndex([(51.5, -0.1, "b", 2), (51.5, -0.1, "a", 5), (51.6, -0.1, "c", 1)])
    assert [h[1] for h in index.nearest(51.5, -0.1, 50.0, 1, 3)] == ["a", "b", "c"]
    assert [h[1] for h in index.nearest(51.5, -0.1, 50.0, 1, 2, "c")] == ["c", "a"]
    assert [h[1] for h in index.nearest(51.5, -0.1, 50.0, 2, 3, "c")] == ["a", "b"]   # c: too little stock
    assert index.nearest(51.5, -0.1, 50.0, 1, 0, "a") == []
