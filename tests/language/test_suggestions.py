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
