"""maple fmt: the canonical layout, case by case, and the goldens.

tests/data/fmt/NAME.rules -> NAME.expected: each input (written carelessly
on purpose) must format to exactly its .expected text, and the .expected
text must format to itself.  Rewrite them after an intended change with
``pytest tests/fmt --update-goldens`` and review the diff.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.diagnostics import Diagnostics, render_all
from engine.source import SourceFile
from engine.syntax import parse
from engine.syntax.fmt import WIDTH, FormatError, comments_of, format_text

DIR = Path(__file__).parent.parent / "data" / "fmt"
CASES = sorted(DIR.glob("*.rules"))


def fmt(text: str) -> str:
    out = format_text(text)
    assert format_text(out) == out, "formatting a formatted file must change nothing"
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path, update_goldens):
    expected_path = path.with_suffix(".expected")
    got = fmt(path.read_text())
    if update_goldens or not expected_path.exists():
        expected_path.write_text(got)
    assert got == expected_path.read_text()
    assert comments_of(got) == comments_of(path.read_text())


# ---------------------------------------------------------------- declarations
def test_rules_are_always_broken_with_priority_on_the_header_line():
    assert fmt('rule r when profile.n > 1 then d = "a" priority 5 because "why"\n') == (
        "rule r priority 5\n"
        "  when profile.n > 1\n"
        '  then d = "a"\n'
        '  because "why"\n')


def test_clauses_keep_the_order_written():
    out = fmt('offer o because "b" score 1 when x cap 1 per 1 day for nbo\n')
    assert out.splitlines() == ["offer o for nbo", '  because "b"', "  score 1", "  when x", "  cap 1 per 1 day"]


def test_an_experiment_names_its_decisions_on_the_header_line():
    out = fmt("experiment e variant a 50% on nbo, home variant b 50%\n")
    assert out.splitlines() == ["experiment e on nbo, home", "  variant a 50%", "  variant b 50%"]


def test_a_short_decision_stays_on_one_line():
    text = 'decision homepage: string pick first default "home"\n'
    assert fmt(text) == text


def test_a_long_decision_breaks_one_clause_a_line():
    out = fmt('decision nbo: offer pick best top 3 cap 3 per 1 day cap 9 per 30 days default "none at all"\n')
    assert out.splitlines() == ["decision nbo: offer", "  pick best", "  top 3", "  cap 3 per 1 day",
                                "  cap 9 per 30 days", '  default "none at all"']


def test_a_decision_the_author_broke_stays_broken():
    text = "decision d: string\n  pick first\n"
    assert fmt(text) == text


def test_a_broken_decision_puts_its_fields_below():
    out = fmt("decision d\n pick first { radius: distance = 1 km }\n")
    assert out == "decision d\n  pick first\n{\n  radius: distance = 1 km\n}\n"


def test_schema_fields_one_a_line_without_commas():
    out = fmt("schema profile { a: string, b: set<string>, c: { x: number }, }\n")
    assert out == "schema profile {\n  a: string\n  b: set<string>\n  c: {\n    x: number\n  }\n}\n"


def test_a_decision_field_named_like_an_expression_word_keeps_its_comma():
    # without the comma, `in` would read as `10 km in ...`
    out = fmt("decision d pick first { radius: distance = 10 km, in: number = 1, n: number = 2, }\n")
    assert out == "decision d pick first {\n  radius: distance = 10 km,\n  in: number = 1\n  n: number = 2\n}\n"


def test_a_segment_that_fits_stays_on_one_line_else_moves_below():
    assert fmt("segment s=profile.n>1\n") == "segment s = profile.n > 1\n"
    long = "segment quite_a_longer_name = profile.attribute_0 > 0 and profile.attribute_1 > 1\n"
    assert len(long) > WIDTH
    assert fmt(long) == "segment quite_a_longer_name =\n    profile.attribute_0 > 0 and profile.attribute_1 > 1\n"


# ---------------------------------------------------------------- conditions
def test_a_long_condition_breaks_before_every_and_aligned_with_its_start():
    cond = " and ".join(f"profile.n > {i}" for i in range(6))
    out = fmt(f"rule r when {cond} then d = 1\n")
    assert out.splitlines()[1:4] == ["  when profile.n > 0", "       and profile.n > 1", "       and profile.n > 2"]


def test_a_condition_the_author_broke_stays_broken():
    out = fmt("segment s =\n    profile.a\n    and profile.b\n")
    assert out == "segment s =\n    profile.a\n    and profile.b\n"
    out = fmt("rule r when a\n and b then d = 1\n")
    assert out.splitlines()[1:3] == ["  when a", "       and b"]


def test_a_break_inside_parentheses_breaks_the_chains_around_it():
    out = fmt("segment s = a or (b\n and c)\n")
    assert out == "segment s =\n    a\n    or (b\n        and c)\n"


def test_a_then_list_breaks_when_one_of_its_values_does():
    out = fmt("rule r then d = a or\n b, e = 2\n")
    assert out.splitlines()[1:] == ["  then d = a", "           or b,", "       e = 2"]


def test_a_line_break_elsewhere_does_not_break_the_condition():
    assert fmt("segment s = profile.n >\n 1 and profile.b\n") == "segment s = profile.n > 1 and profile.b\n"


def test_parentheses_are_kept_and_break_inside():
    inner = " or ".join(f'profile.tags contains "category-{i}"' for i in range(3))
    out = fmt(f"rule r when profile.n > 1 and ({inner}) then d = 1\n")
    assert out.splitlines()[1:5] == [
        "  when profile.n > 1",
        '       and (profile.tags contains "category-0"',
        '            or profile.tags contains "category-1"',
        '            or profile.tags contains "category-2")']


def test_an_and_chain_inside_an_or_chain_is_indented_past_the_or():
    a = " and ".join(f"profile.alpha_{i} > 1" for i in range(4))
    out = fmt(f"segment s = {a} or profile.b\n")
    assert out.splitlines() == ["segment s =", "    profile.alpha_0 > 1", "       and profile.alpha_1 > 1",
                                "       and profile.alpha_2 > 1", "       and profile.alpha_3 > 1",
                                "    or profile.b"]


def test_then_gets_commas_and_breaks_aligned_after_then_when_long():
    assert fmt("rule r then d.a = 1 d.b = 2\n").splitlines()[1] == "  then d.a = 1, d.b = 2"
    out = fmt("rule r then " + ", ".join(f"nearby_stores.field_{i} = {i}" for i in range(3)) + "\n")
    assert out.splitlines()[1:] == ["  then nearby_stores.field_0 = 0,", "       nearby_stores.field_1 = 1,",
                                    "       nearby_stores.field_2 = 2"]


# ---------------------------------------------------------------- spacing
@pytest.mark.parametrize("written, canonical", [
    ("a+b*-c", "a + b * -c"),
    ("( a-b )/ 2", "(a - b) / 2"),
    ("f( a ,b )", "f(a, b)"),
    ('m [ "k" ] . x', 'm["k"].x'),
    ("[ 1,2 , ]", "[1, 2]"),
    ("a not  in [x]", "a not in [x]"),
    ("a is   not set", "a is not set"),
    ("t within 14days", "t within 14 days"),
    ("t > 2\thours ago", "t > 2 hours ago"),
    ("x < 1.50", "x < 1.50"),
    ("- - x", "--x"),
    ("a - -1", "a - -1"),
    ("now-t", "now - t"),
])
def test_spacing(written, canonical):
    assert fmt(f"const c = {written}\n") == f"const c = {canonical}\n"


def test_types_percentages_and_priorities():
    out = fmt("schema p { m : map < set < string > > , e : enum( a ,\"b\" , ) }\n"
              "experiment e holdout 10 % variant a 90   %\nrule r priority - 3\n")
    assert "  m: map<set<string>>\n  e: enum(a, \"b\")\n" in out
    assert "  holdout 10%\n  variant a 90%\n" in out and "rule r priority -3\n" in out


# ---------------------------------------------------------------- comments and blank lines
def test_blank_lines_collapse_and_the_file_is_trimmed():
    out = fmt("\n\n# a\n\n\n\nconst x = 1\nconst y = 2\n\n\n\nconst z = 3\n\n\n")
    assert out == "# a\n\nconst x = 1\nconst y = 2\n\nconst z = 3\n"


def test_a_declaration_of_several_lines_gets_a_blank_line_on_each_side():
    out = fmt('const x = 1\nrule r then d = 1\nconst y = 2\n')
    assert out == "const x = 1\n\nrule r\n  then d = 1\n\nconst y = 2\n"


def test_trailing_comments_of_one_declaration_line_up():
    out = fmt("schema p {\n  a: string # one\n  longer_name: number # two\n}\n")
    assert out == "schema p {\n  a: string            # one\n  longer_name: number  # two\n}\n"


def test_a_comment_inside_a_condition_breaks_it():
    out = fmt("segment s = profile.a # why a\n and profile.b\n")
    assert out == "segment s =\n    profile.a  # why a\n    and profile.b\n"


def test_a_comment_that_cannot_stay_moves_above_its_line():
    out = fmt("const c = max(1, # one\n 2)\n")
    assert out == "const c = max(1, 2)  # one\n"
    out = fmt("const c = max(1, # one\n 2) # two\n")
    assert out == "# one\nconst c = max(1, 2)  # two\n"


def test_comment_only_and_empty_files():
    assert fmt("") == ""
    assert fmt("\n\n") == ""
    assert fmt("# just a note   \n\n\n# another\n") == "# just a note\n\n# another\n"


def test_windows_line_endings_become_unix():
    assert fmt("const x = 1\r\n# note\r\nconst y = 2\r\n") == "const x = 1\n# note\nconst y = 2\n"


# ---------------------------------------------------------------- refusals and limits
def test_a_file_with_syntax_errors_is_refused_with_the_parsers_diagnostics():
    text = 'rule a when profile.n = 1 then d = "x"\nrule b when x and then d = "y"\n'
    with pytest.raises(FormatError) as err:
        format_text(text, "broken.rules")
    diags = Diagnostics()
    parse(SourceFile("broken.rules", text), diags)
    assert render_all(err.value.diagnostics) == render_all(diags)
    assert len(err.value.diagnostics.errors) == 2


def test_deep_expressions_do_not_exhaust_the_stack():
    fmt("segment s = " + " + ".join(["profile.n"] * 3000) + " > 1\n")
    fmt("segment s = " + "not " * 2000 + "profile.b\n")
    out = fmt("segment s = " + "(" * 60 + "a or b" + ")" * 60 + "\n")
    assert "(" * 60 + "a or b" + ")" * 60 in out
