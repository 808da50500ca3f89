"""Targeted checks of diagnostic wording: the suggestion a near miss gets."""
from __future__ import annotations

from tests.conftest import compile_text

DECISIONS = ('decision homepage_category: string pick first default "home"\n'
             'decision next_offer: offer pick best\n')


def errors(text: str):
    return compile_text(DECISIONS + text).diagnostics.errors


def test_misspelt_unit_suggests_the_unit():
    (err,) = errors('rule r when profile.t within 30 dayz then homepage_category = "a"\n')
    assert err.code == "E101" and err.span.text == "dayz"
    assert err.help.startswith("did you mean `days`?")


def test_offer_syntax_error_does_not_expect_decision_clauses():
    (err,) = errors("offer o score 1 cap 1 per 3 dayz\n")
    assert "`default`" not in err.message and "`pick`" not in err.message
    assert "`top`" not in err.message


def test_bare_attribute_suggests_its_root():
    (err,) = errors('rule r when n > 1 then homepage_category = "a"\n')
    assert err.code == "E201" and err.help.startswith("did you mean `profile.n`?")


def test_reversed_comparison_suggests_the_operator():
    (err,) = errors('rule r when profile.n => 1 then homepage_category = "a"\n')
    assert err.code == "E106" and err.span.text == "=>" and "`>=`" in err.help
    (err,) = errors('rule r when profile.n =< 1 then homepage_category = "a"\n')
    assert err.span.text == "=<" and "`<=`" in err.help


def test_enum_value_in_the_wrong_case():
    (err,) = errors('rule r when profile.e == "A" then homepage_category = "a"\n')
    assert err.code == "E208" and err.help == "did you mean `a`?"


def test_unknown_decision_suggests_a_longer_name():
    (err,) = errors('rule r when profile.b then homepage = "a"\n')
    assert err.code == "E204" and err.help == "did you mean `homepage_category`?"


def test_a_shared_suffix_alone_is_no_suggestion():
    pack = "segment lapsed_customer = profile.b\nconst x = 1\n"
    (err,) = [e for e in errors(pack + 'rule r when loyal_customer then homepage_category = "a"\n')]
    assert "lapsed_customer" not in (err.help or "")
    (err,) = errors(pack + 'rule r when lapsd_customer then homepage_category = "a"\n')
    assert err.help == "did you mean `lapsed_customer`?"


def test_quoted_text_in_a_placeholder_is_explained():
    (err,) = errors('offer o score 1 message "{profile.sizes["t-shirts"]}"\n')
    assert err.code == "E106" and err.span.text == '"' and "placeholder cannot contain a quoted text" in err.message
    assert err.help == 'name the text with a const: const key = "t-shirts", then write {profile.sizes[key]}'


def test_an_unknown_name_in_a_condition_is_an_undeclared_segment():
    """Where a condition stands, quoting the name would not help: it is a
    segment that is not declared, perhaps a declared one with a word added."""
    pack = "segment vip = profile.b\nsegment cart_abandoned = profile.b\n"
    for cond in ("vip_customr", "not vip_customr", "profile.b and vip_customr"):
        (err,) = errors(pack + f'rule r when {cond} then homepage_category = "a"\n')
        assert err.code == "E201" and err.span.text == "vip_customr"
        assert err.help == "no segment is named `vip_customr`; did you mean `vip`?"
    (err,) = errors(pack + 'rule r when abandoned_cart then homepage_category = "a"\n')
    assert err.help == "no segment is named `abandoned_cart`; did you mean `cart_abandoned`?"
    (err,) = errors(pack + 'segment s = christmas\nrule r when s then homepage_category = "a"\n')
    assert err.help.startswith("no segment is named `christmas`: declare it (segment christmas = ...)")
    assert err.notes == ("segments: cart_abandoned, s, vip",)
    (err,) = errors(pack + 'rule r when vip then homepage_category = new_arrivals\n')
    assert err.help == 'quote text values: "new_arrivals"'        # a value, not a condition


def test_an_arrow_or_colon_in_then_says_that_then_assigns_with_equals():
    """`=>` was read as `=` and then a `>` no value starts with: 'unexpected
    `>`; expected false, not, now ...' said nothing of the `=` that belongs
    there; `->` and `:` were told that == compares."""
    (err,) = errors('rule r when profile.b then homepage_category => "x"\n')
    assert err.code == "E106" and err.span.text == "=>"
    assert err.message == "use = to assign a value in then, not `=>` (homepage_category = ...)"
    (err,) = errors('decision d pick first { radius: distance = 1 km }\n'
                    'rule r when profile.b then homepage_category = "a", d.radius => 3 km\n')
    assert err.span.text == "=>" and err.message.endswith("(d.radius = ...)")
    (err,) = errors('segment big => profile.b\nrule r when big then homepage_category = "x"\n')
    assert err.span.text == "=>" and err.message == "use = to define segment big, not `=>` (segment big = ...)"
    for op in ("->", ":", ":="):
        (err,) = errors(f'rule r when profile.b then homepage_category {op} "x"\n')
        assert err.span.text == op and err.message == f"use = to assign a value in then, not `{op}`"
    (err,) = errors('rule r when profile.b then homepage_category "x"\n')
    assert err.span.text == '"x"' and err.message.startswith("expected = after `homepage_category`")
    (err,) = errors('rule r when profile.b then homepage_category == "x"\n')
    assert err.message == "use = to assign a value in then (== compares)"
