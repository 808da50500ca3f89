"""StoreTable, the compiled stores of the decision path, against the stores
themselves: whether a store is open at a time (``Store.open_at_time``),
asked in long runs that refill its memos (a zone's local minute, a store's
open spans on a date) in every order, across DST changes, holidays, late
nights, minute boundaries and zones with odd offsets."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from engine.inventory import load_dir
from engine.inventory._nearby import StoreTable

from .conftest import SAMPLE_DIR, write_data

# stores the sample data has none of: no zone, a day of five spans (more
# than the table keeps in C), past midnight, public holidays, +05:45 and a
# half-hour DST
ODD_STORES = """\
id,name,address,city,lat,lon,hours,tz,country
a1,No Zone,1 High Street,London,51.5,-0.1,Mo-Su 09:00-17:00,,
a2,Five Spans,2 High Street,London,51.5,-0.1,"Mo-Fr 08:00-09:00,10:00-11:00,12:00-13:00,14:00-15:00,16:00-17:00; Sa 10:00-12:00",Europe/London,
a3,Late Bar,3 High Street,New York,40.7,-74.0,Mo-Th 07:00-23:00; Fr-Sa 07:00-02:00; Su 09:00-20:00; Dec 25 closed,America/New_York,
a4,Holiday,4 Marienplatz,Munich,48.14,11.58,Mo-Sa 10:00-20:00; Dec 24 10:00-14:00; PH closed,Europe/Berlin,DE-BY
a5,Thamel,5 Thamel Marg,Kathmandu,27.71,85.31,Mo-Fr 10:00-19:00; Sa closed; Su 10:00-19:00,Asia/Kathmandu,
a6,Lord Howe,6 Lagoon Road,Lord Howe Island,-31.55,159.08,Mo-Su 06:30-22:30,Australia/Lord_Howe,
"""


def _stores(tmp_path_factory):
    sample = load_dir(SAMPLE_DIR)
    odd_dir = write_data(tmp_path_factory.mktemp("odd"), stores=ODD_STORES, inventory="store,sku,size,quantity\n")
    odd = load_dir(odd_dir)
    assert sample.report.ok and odd.report.ok, odd.report.render()
    return {**sample.data.stores, **odd.data.stores}


class Stores(dict):
    def __repr__(self):             # what hypothesis prints of a failing example's arguments
        return f"<{len(self)} stores>"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return Stores(_stores(tmp_path_factory))


@pytest.fixture(scope="module")
def table(stores):
    return StoreTable(stores)       # one for the module: its memos carry over from example to example


def _utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# moments where local time does something: DST starts and ends (Europe, New
# York, Lord Howe's half hour), Christmas, a Bavarian holiday, New Year
BASES = [_utc(2026, 3, 29, 1, 0), _utc(2026, 10, 25, 1, 0), _utc(2026, 3, 8, 7, 0), _utc(2026, 11, 1, 6, 0),
         _utc(2026, 4, 4, 15, 0), _utc(2026, 10, 3, 15, 30), _utc(2026, 12, 24, 13, 0), _utc(2026, 12, 25, 12, 0),
         _utc(2026, 8, 15, 9, 0), _utc(2026, 12, 31, 23, 0), _utc(2027, 1, 2, 1, 0), _utc(2026, 12, 4, 23, 55)]


@st.composite
def moments(draw):
    base = draw(st.sampled_from(BASES))
    t = base + draw(st.sampled_from([0, 60, 1800, 3600, 7200, 86400, -60, -3600, -86400])
                    | st.integers(-200_000, 200_000))
    how = draw(st.sampled_from(["whole", "just_before", "fraction"]))
    if how == "just_before":            # a hair under a minute: still the minute before
        return math.nextafter(float(t - t % 60), -math.inf)
    if how == "fraction":
        return t + draw(st.floats(0.0, 1.0, exclude_max=True))
    return float(t)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_open_is_the_stores_own_answer(stores, table, data):
    ids = sorted(stores)
    odd = ["a1", "a2", "a3", "a4", "a5", "a6"]
    for _ in range(data.draw(st.integers(1, 12))):
        sid = data.draw(st.sampled_from(odd) | st.sampled_from(ids))
        t = data.draw(moments())
        assert table.open_at_time(sid, t) == stores[sid].open_at_time(t), (sid, t)


def test_the_odd_stores_answer_as_their_hours_say(table):
    monday_0830_london = _utc(2026, 11, 30, 8, 30)
    assert table.open_at_time("a1", monday_0830_london) is None            # no zone: not known
    assert table.open_at_time("a2", monday_0830_london) is True            # the first of five spans
    assert table.open_at_time("a2", _utc(2026, 11, 30, 16, 30)) is True     # the fifth
    assert table.open_at_time("a2", _utc(2026, 11, 30, 15, 30)) is False    # between
    saturday_0100_new_york = _utc(2026, 12, 5, 6, 0)                        # Friday's night, still open
    assert table.open_at_time("a3", saturday_0100_new_york) is True
    assert table.open_at_time("a4", _utc(2026, 12, 8, 12, 0)) is True       # Dec 8: no holiday in Bavaria
    assert table.open_at_time("a4", _utc(2026, 1, 6, 12, 0)) is False       # Epiphany: PH closed
    assert table.open_at_time("a5", _utc(2026, 12, 6, 4, 15)) is True       # 10:00 in Kathmandu (+05:45)
    assert table.open_at_time("a5", _utc(2026, 12, 6, 4, 14)) is False      # 09:59


def test_numbers_follow_the_ids(stores):
    table = StoreTable(stores)
    assert table.ids == sorted(stores) and len(table) == len(stores)
    assert [table.number[sid] for sid in table.ids] == list(range(len(stores)))
    assert table.names == [stores[sid].name for sid in table.ids]


def test_a_hair_before_the_opening_minute_is_the_minute_before(stores):
    """The zone's memo is keyed by the minute ``t // 60``: a float just
    under a minute belongs to the one before, and an ask in the minute
    itself is not answered from it."""
    table = StoreTable(stores)
    opening = _utc(2026, 12, 6, 4, 15)                   # 10:00 in Kathmandu
    hair = math.nextafter(opening, -math.inf)
    assert table.open_at_time("a5", hair) is False
    assert table.open_at_time("a5", opening) is True
    assert table.open_at_time("a5", hair) is False


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, 1e18])
def test_a_time_no_calendar_holds_fails_as_the_store_fails(stores, t):
    table = StoreTable(stores)
    with pytest.raises(Exception) as expected:
        stores["s001"].open_at_time(t)
    with pytest.raises(expected.type):
        table.open_at_time("s001", t)
    assert table.open_at_time("a1", t) is None                # no zone: not known, whatever the time
