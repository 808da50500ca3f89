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


@settings(max_examples=400, deadline=None)
@given(stores, spots | near, st.sampled_from([0.0, 0.5, 2.0, 10.0, 30.0, 1e9]), st.integers(1, 4),
       st.integers(0, 12), st.none() | ids, st.sets(ids), st.randoms(use_true_random=False))
def test_nearest_with_keep_is_the_ranked_within_of_the_kept(rows, where, radius, min_quantity, limit, preferred,
                                                            closed, rnd):
    """``keep`` (only stores open now): the hits it refuses are left out
    before the preferred store leads and before the cut, as
    availability.nearby_in does with ``_open_only``; it is asked about the
    hits in order until the limit is reached, each at most once."""
    names = [f"s{i:02d}" for i in range(len(rows))]
    rnd.shuffle(names)
    index = ItemIndex([(lat, lon, sid, q) for sid, ((lat, lon), q) in zip(names, rows)])
    asked = []

    def keep(sid):
        asked.append(sid)
        return sid not in closed
    hits = index.within(*where, radius, min_quantity)
    expected = ranked([h for h in hits if h[1] not in closed], preferred)[:limit]
    got = index.nearest(*where, radius, min_quantity, limit, preferred, keep)
    assert got == expected
    assert len(asked) == len(set(asked)) and set(asked) <= {h[1] for h in hits}
    refused = [sid for sid in asked if sid in closed]
    assert len(asked) == len(got) + len(refused)            # every kept one asked about is in the answer
    if not closed:
        assert index.nearest(*where, radius, min_quantity, limit, preferred, lambda sid: True) == \
            index.nearest(*where, radius, min_quantity, limit, preferred)


def test_a_closed_preferred_store_neither_leads_nor_counts():
    index = ItemIndex([(51.5, -0.1, "b", 2), (51.5, -0.1, "a", 5), (51.6, -0.1, "c", 1)])
    assert [h[1] for h in index.nearest(51.5, -0.1, 50.0, 1, 2, "c", lambda sid: sid != "c")] == ["a", "b"]
    assert [h[1] for h in index.nearest(51.5, -0.1, 50.0, 1, 2, "c", lambda sid: sid != "a")] == ["c", "b"]
    assert index.nearest(51.5, -0.1, 50.0, 1, 3, None, lambda sid: False) == []
