"""The loader: good files load; every bad row is named by file:line:col and
column and skipped, the good rows stay; an unusable file rejects the load."""
from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.diagnostics import render
from engine.inventory import Inventory, InventoryLoadError, OpeningHours, load_dir
from engine.inventory import loader
from engine.inventory.loader import MAX_REPORTED

from .conftest import CATALOG, INVENTORY, ROOT, STORES, write_data

HEADER = "id,name,address,city,lat,lon,hours\n"
GOOD_STORE = "s001,Riverside,1 High Street,London,51.5,-0.1,Mo-Sa 09:00-20:00\n"


def load_stores(tmp_path, rows: str, inventory: str = "store,sku,size,quantity\n"):
    return load_dir(write_data(tmp_path, stores=HEADER + rows, inventory=inventory))


def test_small_data_loads(data_dir):
    result = load_dir(data_dir)
    assert result.report.ok
    assert result.report.rows == {"stores.csv": 5, "catalog.csv": 3, "inventory.csv": 7}
    data = result.data
    assert list(data.stores) == ["s001", "s002", "s003", "s004", "s005"]
    assert data.stores["s002"].address == "2, Park Lane"
    assert data.catalog["RUN-001"].sizes == ("40", "41", "42", "43")
    assert data.quantity("s003", "RUN-001", "42") == 4
    assert data.quantity("s002", "RUN-001", "42") == 0          # carried, sold out
    assert data.quantity("s002", "TEE-001", "M") == 0           # not carried
    assert len(data.items()) == 7


def test_a_bad_value_names_file_line_col_and_column(tmp_path):
    result = load_stores(tmp_path, GOOD_STORE + "s002,Soho,1 High St,London,abc,-0.1,Mo-Sa 09:00-20:00\n")
    [err] = result.report.errors
    path = str(tmp_path / "stores.csv")
    assert err.code == "D103" and err.column == "lat"
    assert err.location == f"{path}:3:28"
    assert str(err) == f"{path}:3:28: error[D103]: column `lat`: `abc`: not a number"
    assert list(result.data.stores) == ["s001"]                # the good row stays
    assert result.report.skipped["stores.csv"] == 1


def test_rendering_points_a_caret_at_the_field(tmp_path):
    result = load_stores(tmp_path, "s002,Soho,1 High St,London,51.5,-0.1,Mo-Sa 9-20\n")
    [err] = result.report.errors
    lines = render(err).splitlines()
    assert lines[1].endswith("s002,Soho,1 High St,London,51.5,-0.1,Mo-Sa 9-20")
    caret = lines[2]
    assert caret.index("^") == lines[1].index("Mo-Sa")
    assert caret.strip() == "^" + "~" * (len("Mo-Sa 9-20") - 1)
    assert "help: e.g. Mo-Fr" in render(err)


def test_columns_after_a_quoted_comma_are_placed_right(tmp_path):
    line = 's002,Soho,"1, High St",London,51.5,-0.1,Mo-Sa 09:00-20:00,\n'   # trailing extra field
    result = load_stores(tmp_path, line.replace(",\n", "\n").replace("-0.1", "west"))
    [err] = result.report.errors
    assert err.column == "lon"
    assert err.span.col == line.index("-0.1") + 1


def test_every_problem_in_a_row_is_reported(tmp_path):
    result = load_stores(tmp_path, "s 2,,1 High St,London,91,-0.1,Mo-Xx 09:00-20:00\n")
    found = sorted((e.column, e.code) for e in result.report.errors)
    assert found == [("hours", "D107"), ("id", "D110"), ("lat", "D105"), ("name", "D102")]
    assert [e.span.line for e in result.report.errors] == [2, 2, 2, 2]
    assert result.data.stores == {}


@pytest.mark.parametrize("row, column, code, words", [
    ("s002,Soho,1 High St,London,51.5,181,Mo-Sa 09:00-20:00", "lon", "D105", "between -180 and 180"),
    ("s002,Soho,1 High St,London,nan,-0.1,Mo-Sa 09:00-20:00", "lat", "D105", "between -90 and 90"),
    ("s002,Soho,1 High St,,51.5,-0.1,Mo-Sa 09:00-20:00", "city", "D102", "a value is required"),
    ('s002,Soho,1 High St,London,51.5,-0.1,"Mo-Sa 09:00-13:00,12:00-18:00"', "hours", "D107",
     "'12:00-18:00' overlaps or comes before '09:00-13:00'"),
    ("s002,Soho,1 High St,London,51.5,-0.1,Mo-Sa 09:00-20:00; Sa closed", "hours", "D107", "Sa is given twice"),
    ("s001,Soho,1 High St,London,51.5,-0.1,Mo-Sa 09:00-20:00", "id", "D106", "first at line 2"),
])
def test_store_row_errors(tmp_path, row, column, code, words):
    result = load_stores(tmp_path, GOOD_STORE + row + "\n")
    [err] = result.report.errors
    assert (err.column, err.code, err.span.line) == (column, code, 3)
    assert words in err.message
    assert list(result.data.stores) == ["s001"]


def test_wrong_field_count_and_broken_quotes_name_the_line(tmp_path):
    result = load_stores(tmp_path, GOOD_STORE + "s002,Soho,London\n" + 's003,"Soho,1 High St,London\n')
    assert [(e.code, e.span.line, e.column) for e in result.report.errors] == [("D101", 3, None),
                                                                             ("D111", 4, None)]
    assert "3 fields; the header has 7" in result.report.errors[0].message
    assert result.report.skipped["stores.csv"] == 2


def test_unquoted_split_hours_get_a_help_about_quoting_them(tmp_path):
    result = load_stores(tmp_path, GOOD_STORE + "s002,Soho,1 High St,London,51.5,-0.1,Tu-Sa 10:00-13:00,14:00-19:00\n"
                                                "s003,Soho,12, High St,London,51.5,-0.1,Mo-Sa 09:00-20:00\n"
                                                "s004,Soho,1 High St,London,51.5,-0.1,Tu-We,Fr-Sa 10:00-18:00\n")
    hours, address, days = result.report.errors
    assert hours.code == address.code == days.code == "D101"
    assert hours.help == days.help == 'quote opening hours that contain a comma, e.g. "Tu-Sa 10:00-13:00,14:00-19:00"'
    assert "12, High Street" in address.help and list(result.data.stores) == ["s001"]


@pytest.mark.parametrize("row, column, code, words", [
    ("s009,RUN-001,42,1", "store", "D108", "unknown store"),
    ("s001,RUN-009,42,1", "sku", "D108", "did you mean `RUN-001`?"),
    ("s001,RUN-001,39,1", "size", "D109", "RUN-001 comes in 40 41 42 43"),
    ("s001,RUN-001,43,-1", "quantity", "D105", "cannot be negative"),
    ("s001,RUN-001,43,1.5", "quantity", "D104", "whole number"),
    ("s001,RUN-001,43,1000000001", "quantity", "D105", "at most 1000000000"),
    ("s001,RUN-001,43,9223372036854775812", "quantity", "D105", "at most 1000000000"),
    ("s001,RUN-001,43," + "9" * 5000, "quantity", "D105", "at most 1000000000"),
    ("s001,RUN-001,43,", "quantity", "D102", "a value is required"),
    ("s001,RUN-001,42,7", "size", "D106", "first at line 2"),
])
def test_inventory_row_errors(tmp_path, row, column, code, words):
    inventory = "store,sku,size,quantity\ns001,RUN-001,42,1\n" + row + "\ns002,TEE-001,M,2\n"
    result = load_dir(write_data(tmp_path, inventory=inventory))
    [err] = result.report.errors
    assert (err.column, err.code, err.span.line) == (column, code, 3)
    assert words in err.message or words in (err.help or "")
    assert result.data.quantity("s001", "RUN-001", "42") == 1   # the first row, not the bad one
    assert result.data.quantity("s002", "TEE-001", "M") == 2
    assert result.report.rows["inventory.csv"] == 2


def test_the_largest_quantity_loads(tmp_path):
    inventory = "store,sku,size,quantity\ns001,RUN-001,42,1000000000\ns001,RUN-001,43,00000000000000000007\n"
    result = load_dir(write_data(tmp_path, inventory=inventory))
    assert result.report.errors == []
    assert result.data.quantity("s001", "RUN-001", "42") == 1_000_000_000
    assert result.data.quantity("s001", "RUN-001", "43") == 7


def test_stock_of_a_skipped_store_is_one_error_not_one_per_row(tmp_path):
    stores = STORES.replace("s003,Borough,3 King Street,London,51.5,-0.08", "s003,Borough,3 King Street,London,x,-0.08")
    inventory = INVENTORY + "s003,TEE-001,S,1\ns003,TEE-001,L,0\n"
    result = load_dir(write_data(tmp_path, stores=stores, inventory=inventory))
    assert [(e.span.path.rsplit("/", 1)[1], e.span.line, e.column) for e in result.report.errors] == [
        ("stores.csv", 4, "lat"), ("inventory.csv", 4, "store")]
    assert (f"store s003 was skipped (its row {tmp_path / 'stores.csv'}:4 has errors), so its 4 stock rows "
            f"are skipped too") in result.report.errors[1].message
    assert result.report.skipped["inventory.csv"] == 4
    assert "s003" not in result.data.stores
    assert result.data.quantity("s004", "RUN-001", "42") == 2


def test_the_report_counts_rows_with_errors_apart_from_the_stock_dropped_with_their_store(tmp_path):
    """A bad store row takes its stock with it: the summary says so in rows,
    not in errors (one D108 stands for all of a store's stock rows)."""
    stores = STORES.replace("s003,Borough,3 King Street,London,51.5,", "s003,Borough,3 King Street,London,591.56,")
    inventory = INVENTORY.replace("s001,TEE-001,M,3", "s001,TEE-001,M,two") + "s003,TEE-001,S,1\n"
    report = load_dir(write_data(tmp_path, stores=stores, inventory=inventory)).report
    assert [e.code for e in report.errors] == ["D105", "D108", "D104"]
    assert (report.rows_with_errors, report.rows_orphaned, report.orphaned) == (2, 3, {"inventory.csv": 3})
    assert report.summary() == ("skipped 2 rows with errors (stores.csv: 1, inventory.csv: 1) and 3 stock rows "
                                "that refer to a skipped store or sku")
    assert load_dir(write_data(tmp_path)).report.summary() == ""


def test_a_data_error_has_the_json_form_of_a_diagnostic(tmp_path):
    inventory = INVENTORY.replace("s001,TEE-001,M,3", "s001,TEE-001,M,two")
    err = load_dir(write_data(tmp_path, inventory=inventory)).report.errors[0]
    assert err.to_dict() == {"code": "D104", "severity": "error", "column": "quantity",
                             "message": "column `quantity`: `two`: a quantity is a whole number of items, e.g. 3",
                             "path": str(tmp_path / "inventory.csv"), "line": 7, "col": 16, "end_line": 7,
                             "end_col": 19}


def test_stock_of_a_skipped_sku_is_skipped_unless_a_later_row_fixes_it(tmp_path):
    catalog = CATALOG + "SCK-001,Socks,socks,S M\nJKT-001,Jacket,Jackets,S M\nJKT-001,Jacket,jackets,S M\n"
    catalog = catalog.replace("SCK-001,Socks,socks,S M", "SCK-001,Socks,socks,")
    inventory = INVENTORY + "s001,SCK-001,S,1\ns001,JKT-001,M,2\n"
    result = load_dir(write_data(tmp_path, catalog=catalog, inventory=inventory))
    assert [(e.span.line, e.column) for e in result.report.errors] == [(5, "sizes"), (6, "category"), (9, "sku")]
    assert "sku SCK-001 was skipped" in result.report.errors[2].message
    assert result.data.quantity("s001", "JKT-001", "M") == 2


def test_catalog_errors(tmp_path):
    catalog = CATALOG + "TEE-002,Pocket Tee,T-Shirts,S M M\nTEE-001,Again,t-shirts,S\n"
    result = load_dir(write_data(tmp_path, catalog=catalog))
    found = [(e.span.line, e.column, e.code) for e in result.report.errors]
    assert found == [(5, "category", "D110"), (5, "sizes", "D110"), (6, "sku", "D106")]
    assert list(result.data.catalog) == ["RUN-001", "TEE-001", "BNS-001"]


def test_bom_crlf_and_blank_lines_are_fine(tmp_path):
    result = load_dir(write_data(tmp_path, stores="\ufeff" + STORES.replace("\n", "\r\n") + "\r\n\r\n"))
    assert result.report.ok and len(result.data.stores) == 5
    assert result.data.stores["s005"].hours.text == "Mo-Sa 10:00-19:30"


def test_extra_columns_are_ignored(tmp_path):
    stores = "".join(line + (",notes\n" if i == 0 else ",flagship\n") for i, line in enumerate(STORES.splitlines()))
    result = load_dir(write_data(tmp_path, stores=stores))
    assert result.report.ok and len(result.data.stores) == 5


def test_errors_are_capped_and_counted(tmp_path):
    rows = "".join(f"s{i:03d},Soho,1 High St,London,bad,-0.1,Mo 09:00-10:00\n" for i in range(MAX_REPORTED + 50))
    result = load_stores(tmp_path, rows)
    assert len(result.report.errors) == MAX_REPORTED and result.report.dropped == 50
    assert result.report.skipped["stores.csv"] == MAX_REPORTED + 50
    assert result.report.render().endswith("(50 more errors not shown)")


def test_every_code_used_is_catalogued_and_documented():
    source = Path(loader.__file__).read_text(encoding="utf-8")
    assert set(re.findall(r'"(D\d{3})",', source)) == set(loader.CODES)
    docs = (ROOT / "docs" / "inventory.md").read_text(encoding="utf-8")
    assert [c for c in loader.CODES if f"| {c} |" not in docs] == []


# ------------------------------------------------------------------ whole files
def test_missing_files_are_all_reported_and_nothing_loads(tmp_path):
    write_data(tmp_path, catalog=None, inventory=None)
    with pytest.raises(InventoryLoadError) as info:
        load_dir(tmp_path)
    assert [e.code for e in info.value.errors] == ["D001", "D001"]
    assert "catalog.csv" in info.value.errors[0].message and "inventory.csv" in info.value.errors[1].message
    assert str(info.value).endswith("(and 1 more)")


@pytest.mark.parametrize("text, code, words", [
    ("", "D002", "stores.csv is empty; the first line must be the header id,name,address"),
    ("id,name,city,lat,lon,hours\n", "D003", "the header lacks `address`"),
    ("id,name,address,city,lat,lon,hours,id\n", "D004", "column `id` is named twice"),
])
def test_a_bad_header_rejects_the_load(tmp_path, text, code, words):
    with pytest.raises(InventoryLoadError) as info:
        load_dir(write_data(tmp_path, stores=text))
    [err] = info.value.errors
    assert err.code == code and words in err.message


def test_a_file_that_is_not_utf8_rejects_the_load(tmp_path):
    write_data(tmp_path)
    (tmp_path / "catalog.csv").write_bytes(b"sku,name,category,sizes\nX,Caf\xe9,coffee-beans,one-size\n")
    with pytest.raises(InventoryLoadError, match=r"not UTF-8 text \(invalid continuation byte at byte 29\)"):
        load_dir(tmp_path)


def test_a_rejected_reload_keeps_the_last_good_data(tmp_path, data_dir):
    inv, _ = Inventory.from_dir(data_dir)
    before = inv.snapshot
    (data_dir / "inventory.csv").write_text("store,sku,quantity\n")
    with pytest.raises(InventoryLoadError, match="lacks `size`"):
        inv.reload(data_dir)
    assert inv.snapshot is before
    assert inv.quantity("s003", "RUN-001", "42") == 4


# ------------------------------------------------------------------ opening hours
def test_opening_hours_parse():
    h = OpeningHours.parse("Mo 12:00-18:00; Tu-We,Fr-Sa 10:00-18:00; Th 10:00-21:00; Su closed")
    assert h.days == (((720, 1080),), ((600, 1080),), ((600, 1080),), ((600, 1260),), ((600, 1080),),
                      ((600, 1080),), ())
    assert h.open_at(3, 20 * 60) and not h.open_at(4, 20 * 60) and not h.open_at(6, 12 * 60)
    assert OpeningHours.parse("Sa 00:00-24:00").days[5] == ((0, 1440),)
    assert OpeningHours.parse("Mo-Fr 09:00-17:00").days[5:] == ((), ())   # days not named are closed


def test_opening_hours_with_a_lunch_break():
    h = OpeningHours.parse("Mo-Fr 09:00-12:30,14:00-19:00; Sa 09:00-13:00")
    assert h.days[0] == ((540, 750), (840, 1140)) and h.spans[0] == h.days[0]
    assert [h.open_at(2, m) for m in (539, 540, 749, 750, 839, 840, 1139, 1140)] == \
        [False, True, True, False, False, True, True, False]


def test_opening_hours_past_midnight():
    h = OpeningHours.parse("Mo-Th 07:00-23:00; Fr-Sa 07:00-02:00; Su 22:00-24:00")
    assert h.days[4] == ((420, 1560),)                      # Friday 07:00 until 02:00 on Saturday
    assert h.spans[5] == ((0, 120), (420, 1440))            # Saturday: Friday's night, then its own day
    assert h.spans[6] == ((0, 120), (1320, 1440))           # Sunday: Saturday's night, then 22:00-24:00
    assert h.open_at(5, 90) and not h.open_at(5, 120) and not h.open_at(4, 90)
    assert h.open_at(6, 23 * 60) and not h.open_at(0, 30)   # Sunday's range stops at midnight
    week = OpeningHours.parse("Su 20:00-04:00")             # Sunday night runs into Monday
    assert week.spans[0] == ((0, 240),) and week.open_at(0, 239) and not week.open_at(0, 240)
    joined = OpeningHours.parse("Fr 20:00-03:00; Sa 02:00-10:00")   # overlapping nights merge
    assert joined.spans[5] == ((0, 600),)


def test_opening_hours_dated_clauses():
    h = OpeningHours.parse("Mo-Th,Sa 09:00-20:00; Fr 09:00-01:00; Su closed; "
                           "Dec 24 09:00-14:00; Dec 25-26 closed; 2026 Nov 26 off; 2027 Dec 24 10:00-12:00")
    assert h.dated == (((12, 24), ((540, 840),)), ((12, 25), ()), ((12, 26), ()), ((2026, 11, 26), ()),
                       ((2027, 12, 24), ((600, 720),)))
    assert h.open_on(date(2026, 12, 24), 13 * 60) and not h.open_on(date(2026, 12, 24), 15 * 60)  # short day
    assert not h.open_on(date(2026, 12, 25), 12 * 60) and not h.open_on(date(2031, 12, 26), 12 * 60)  # yearly
    assert not h.open_on(date(2026, 11, 26), 12 * 60) and h.open_on(date(2027, 11, 25), 12 * 60)  # one year
    assert h.open_on(date(2027, 12, 24), 11 * 60) and not h.open_on(date(2027, 12, 24), 13 * 60)  # one year wins
    assert h.open_on(date(2026, 11, 28), 30)          # Saturday 00:30: Friday's range runs past midnight
    assert not h.open_on(date(2026, 12, 26), 30)      # ...but Friday Dec 25 was closed
    boxing_day = OpeningHours.parse("Fr 09:00-01:00; Dec 26 closed")   # Saturday Dec 26, 2026
    assert boxing_day.open_on(date(2026, 12, 26), 30) and not boxing_day.open_on(date(2026, 12, 26), 12 * 60)
    assert h.open_at(4, 12 * 60) and h.open_at(6, 12 * 60) is False       # the weekly ranges alone


@pytest.mark.parametrize("text, words", [
    ("", "no opening hours"),
    ("Mo-Fr", "should be days and hours"),
    ("Mo-Fr 09:00-12:00, 14:00-18:00", "separated by a comma without spaces"),
    ("Fr-Mo 09:00-17:00", "runs backwards"),
    ("Monday 09:00-17:00", "not a day or day range"),
    ("Mo 9:00-17:00", "is not HH:MM-HH:MM"),
    ("Mo 09:00-24:30", "is not HH:MM-HH:MM"),
    ("Mo 09:00-09:00", "closes when it opens"),
    ("Mo 24:00-02:00", "opens at 24:00"),
    ("Mo 09:00-13:00,12:00-18:00", "overlaps or comes before '09:00-13:00'"),
    ("Mo 14:00-18:00,09:00-12:00", "overlaps or comes before"),
    ("Mo 20:00-02:00,09:00-12:00", "overlaps or comes before '20:00-02:00'"),
    ("Mo 08:00-12:00,20:00-09:00", "spans more than 24 hours"),
    ("Mo 09:00-12:00,", "is not HH:MM-HH:MM"),
    ("Mo-Fr 09:00-17:00; We closed", "We is given twice"),
    ("Dec 32 closed", "'Dec 32' is not a date"),
    ("2026 Feb 29 closed", "'2026 Feb 29' is not a date"),
    ("Dec 25", "should be a date and hours"),
    ("2026 closed", "should be a date and hours"),
    ("Dec 26-25 closed", "runs backwards"),
    ("Dec 25-26 closed; Dec 26 09:00-12:00", "Dec 26 is given twice"),
    ("Dez 25 closed", "or a date and hours, e.g. 'Dec 25 closed' \\(months are Jan"),
    ("Dec 24 09:00-13:00,12:00-15:00", "overlaps"),
])
def test_opening_hours_errors(text, words):
    with pytest.raises(ValueError, match=words):
        OpeningHours.parse(text)


def _apart(points: list[int], late: int) -> list[tuple[int, int]]:
    """Ranges between sorted minutes; with ``late``, the last one closes at
    ``late`` past midnight instead (a night range)."""
    ranges = list(zip(points[::2], points[1::2]))
    if late and ranges and ranges[-1][0] < 1440:
        ranges[-1] = (ranges[-1][0], late)
    return ranges


_RANGES = st.one_of(          # any ranges (mostly refused), and ranges that parse, night ranges included
    st.lists(st.tuples(st.integers(0, 1439), st.integers(1, 1440)), max_size=3),
    st.builds(_apart, st.lists(st.integers(0, 1440), unique=True, max_size=6).map(sorted),
              st.sampled_from([0, 0, 60, 150, 360])))


def _week_text(week) -> str:
    """The hours text of seven days' ranges (None: the day not named)."""
    clauses = []
    for d, ranges in enumerate(week):
        if ranges is None:
            continue
        text = ",".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in ranges) or "closed"
        clauses.append(f"{('Mo', 'Tu', 'We', 'Th', 'Fr', 'Sa', 'Su')[d]} {text}")
    return "; ".join(clauses) or "Mo closed"


@settings(max_examples=300, deadline=None)
@given(week=st.lists(st.one_of(st.none(), _RANGES), min_size=7, max_size=7), day=st.integers(0, 6),
       minute=st.integers(0, 1439))
def test_open_at_agrees_with_the_ranges_as_written(week, day, minute):
    """Whatever hours parse, open_at(d, m) is: some range written for day d
    holds m, or a range of the day before runs past midnight beyond m."""
    try:
        h = OpeningHours.parse(_week_text(week))
    except ValueError:
        return                              # overlapping or backwards ranges: refused, nothing to compare
    today = any(a <= minute < min(b, 1440) for a, b in h.days[day])
    last_night = any(b > 1440 and minute < b - 1440 for _a, b in h.days[day - 1])
    assert h.open_at(day, minute) is (today or last_night)


@settings(max_examples=200, deadline=None)
@given(week=st.lists(st.one_of(st.none(), _RANGES), min_size=7, max_size=7), minute=st.integers(0, 1439),
       day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_open_on_without_dated_clauses_is_the_week(week, day, minute):
    try:
        h = OpeningHours.parse(_week_text(week))
    except ValueError:
        return
    assert h.open_on(day, minute) is h.open_at(day.weekday(), minute)


def test_the_time_zone_column_is_optional_and_checked(tmp_path):
    header = "id,name,address,city,lat,lon,hours,tz\n"
    rows = ("s001,Soho,1 High St,London,51.5,-0.1,Mo-Sa 09:00-20:00,Europe/London\n"
            "s002,Marais,2 rue,Paris,48.85,2.35,Mo-Sa 09:00-20:00,\n"
            "s003,Mitte,3 Str,Berlin,52.5,13.4,Mo-Sa 09:00-20:00,Europe/Berlinn\n")
    result = load_dir(write_data(tmp_path, stores=header + rows, inventory="store,sku,size,quantity\n"))
    [err] = result.report.errors
    assert (err.code, err.column, err.span.line) == ("D112", "tz", 4)
    assert "`Europe/Berlinn`: not a time zone name" in err.message and err.help == "did you mean `Europe/Berlin`?"
    stores = result.data.stores
    assert list(stores) == ["s001", "s002"] and stores["s001"].tz == "Europe/London" and stores["s002"].tz is None
    assert load_stores(tmp_path, GOOD_STORE).data.stores["s001"].tz is None   # no tz column at all


# ------------------------------------------------------------------ public holidays (PH)
class _Days:
    """A stand-in calendar: exactly these dates are public holidays."""

    def __init__(self, *days, region="XX"):
        self.days, self.region = set(days), region

    def __contains__(self, day):
        return day in self.days


def test_ph_gives_the_hours_of_the_regions_public_holidays():
    """A written date wins over PH, PH over the weekday; the night before a
    holiday still runs into it; a calendar holiday on a closed weekday stays
    PH's hours (a Sunday holiday with PH open opens)."""
    cal = _Days(date(2027, 1, 6), date(2027, 1, 9), date(2027, 12, 24), date(2027, 1, 10), region="DE-BY")
    h = OpeningHours.parse("Mo-Th,Sa 10:00-20:00; Fr 10:00-01:00; Su closed; Dec 24 10:00-14:00; PH closed", cal)
    assert (h.by_date, h.region, h.ph, h.dated) == (True, "DE-BY", (), (((12, 24), ((600, 840),)),))
    assert not h.open_on(date(2027, 1, 6), 12 * 60)                  # Wednesday, Epiphany: PH closed
    assert h.open_on(date(2027, 1, 7), 12 * 60)                      # Thursday: the week
    assert h.open_on(date(2027, 12, 24), 13 * 60) and not h.open_on(date(2027, 12, 24), 15 * 60)  # the date wins
    assert h.open_on(date(2027, 1, 9), 30)                           # Friday's night runs into Saturday's holiday
    assert not h.open_on(date(2027, 1, 9), 12 * 60)
    assert h.open_at(2, 12 * 60)                                     # the weekly ranges alone ignore PH
    sunday = OpeningHours.parse("Mo-Sa 10:00-20:00; PH 12:00-16:00", cal)
    assert sunday.open_on(date(2027, 1, 10), 13 * 60) and not sunday.open_on(date(2027, 1, 17), 13 * 60)
    assert sunday.ranges_on(date(2027, 1, 6)) == ((720, 960),)
    assert not OpeningHours.parse("Mo-Sa 10:00-20:00", cal).by_date  # a calendar without PH changes nothing
    berlin = OpeningHours.parse(h.text, _Days(date(2027, 3, 8), region="DE-BE"))
    assert berlin != h and berlin.open_on(date(2027, 1, 6), 12 * 60)


@pytest.mark.parametrize("text, words", [
    ("Mo-Sa 10:00-20:00; PH", "should be PH and hours, e.g. 'PH closed'"),
    ("Mo-Sa 10:00-20:00; PH closed; PH 10:00-12:00", "PH is given twice"),
    ("Mo-Sa 10:00-20:00; PH 10:00", "is not HH:MM-HH:MM"),
])
def test_bad_ph_clauses_say_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        OpeningHours.parse(text, _Days())


def test_ph_without_a_region_asks_for_the_country_column():
    with pytest.raises(ValueError, match="needs the store's region: give the store a country, e.g. DE-BY"):
        OpeningHours.parse("Mo-Sa 10:00-20:00; PH closed")


@settings(max_examples=200, deadline=None)
@given(week=st.lists(st.one_of(st.none(), _RANGES), min_size=7, max_size=7), ph=_RANGES,
       holidays=st.sets(st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 1, 14)), max_size=6),
       dated=st.sets(st.integers(1, 14), max_size=3),
       day=st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 1, 15)), minute=st.integers(0, 1439))
def test_open_on_with_ph_agrees_with_the_ranges_as_written(week, ph, holidays, dated, day, minute):
    """Whatever parses, open_on(day, m): the ranges written for that date (its
    Jan clause, else PH's on a holiday, else its weekday's) hold m, or the
    day before's run past midnight beyond m."""
    def ranges_text(ranges):
        return ",".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in ranges) or "closed"
    text = "; ".join([_week_text(week), f"PH {ranges_text(ph)}"] + [f"Jan {d} closed" for d in sorted(dated)])
    try:
        h = OpeningHours.parse(text, _Days(*holidays))
    except ValueError:
        return

    def written(d):
        if d.month == 1 and d.year == 2027 and d.day in dated:
            return ()
        return h.ph if d in holidays else h.days[d.weekday()]
    today = any(a <= minute < min(b, 1440) for a, b in written(day))
    last_night = any(b > 1440 and minute < b - 1440 for _a, b in written(day - timedelta(days=1)))
    assert h.open_on(day, minute) is (today or last_night)


def test_the_country_column_names_the_region_of_ph(tmp_path):
    """Stores in Munich and Berlin share hours text but not holidays: Epiphany
    closes Munich only, Women's Day Berlin only (python-holidays' calendars).
    A bad region is D113 with the region's subdivisions; PH without a
    country is D107 asking for one; both rows are skipped."""
    header = "id,name,address,city,lat,lon,hours,tz,country\n"
    hours = '"Mo-Sa 10:00-20:00; PH closed"'
    rows = (f"s001,Pasing,1 Str,Munich,48.1,11.5,{hours},Europe/Berlin,DE-BY\n"
            f"s002,Mitte,2 Str,Berlin,52.5,13.4,{hours},Europe/Berlin,de-be\n"
            f"s003,Soho,3 St,London,51.5,-0.1,{hours},Europe/London,DE-BZ\n"
            f"s004,Marais,4 rue,Paris,48.85,2.35,{hours},Europe/Paris,\n"
            f"s005,Centrum,5 Str,Amsterdam,52.37,4.9,Mo-Sa 10:00-20:00,Europe/Amsterdam,\n")
    result = load_dir(write_data(tmp_path, stores=header + rows, inventory="store,sku,size,quantity\n"))
    errors = {e.span.line: e for e in result.report.errors}
    assert (errors[4].code, errors[4].column) == ("D113", "country")
    assert "DE has no subdivision 'BZ'" in errors[4].message and "BE BW BY" in errors[4].message
    assert (errors[5].code, errors[5].column) == ("D107", "hours") and "give the store a country" in errors[5].message
    stores = result.data.stores
    assert sorted(stores) == ["s001", "s002", "s005"]
    munich, berlin = stores["s001"].hours, stores["s002"].hours
    assert (munich.region, berlin.region) == ("DE-BY", "DE-BE")
    assert not munich.open_on(date(2027, 1, 6), 12 * 60) and berlin.open_on(date(2027, 1, 6), 12 * 60)
    assert munich.open_on(date(2027, 3, 8), 12 * 60) and not berlin.open_on(date(2027, 3, 8), 12 * 60)
    assert stores["s005"].hours.region is None and not stores["s005"].hours.by_date


def test_stores_with_the_same_hours_and_region_share_one_opening_hours(sample_result):
    by_text = {}
    for s in sample_result.data.stores.values():
        by_text.setdefault((s.hours.text, s.hours.region), set()).add(id(s.hours))
    assert all(len(ids) == 1 for ids in by_text.values())
    assert {s.hours.region for s in sample_result.data.stores.values() if s.hours.ph is not None} == {"DE-BE", "DE-BY"}
