"""Parser: the AST it builds, error recovery, and positions."""
from __future__ import annotations

import pytest

from engine import limits
from engine.diagnostics import Diagnostics
from engine.source import SourceFile
from engine.syntax import ast, parse
from tests.conftest import compile_text


def parse_text(text: str):
    diags = Diagnostics()
    module = parse(SourceFile("t.rules", text), diags)
    return module, diags


def test_rule_clauses_in_any_order():
    module, diags = parse_text('rule r because "why" then d = 1 when profile.n > 1 priority 7\n')
    assert not len(diags)
    (rule,) = module.decls
    assert isinstance(rule, ast.RuleDecl)
    assert rule.priority == 7 and rule.because == "why"
    assert isinstance(rule.when, ast.Binary) and rule.when.op == ">"
    assert rule.assignments[0].target.name == "d"


def test_precedence_and_associativity():
    module, _ = parse_text("const x = 1 - 2 - 3 * 4 / 2\n")
    e = module.decls[0].expr
    # (1 - 2) - ((3 * 4) / 2)
    assert e.op == "-" and e.left.op == "-" and e.right.op == "/" and e.right.left.op == "*"


def test_not_binds_looser_than_comparison_and_tighter_than_and():
    module, _ = parse_text("segment s = not profile.n > 1 and profile.b\n")
    e = module.decls[0].expr
    assert isinstance(e, ast.Logic) and e.op == "and"
    assert isinstance(e.operands[0], ast.Unary) and e.operands[0].operand.op == ">"


@pytest.mark.parametrize("text, value, kind", [
    ("14 days", 14 * 86400.0, "duration"), ("4 hours", 14400.0, "duration"), ("90 min", 5400.0, "duration"),
    ("25 km", 25.0, "distance"), ("500 m", 0.5, "distance"), ("2 mi", 3.218688, "distance"),
    ("1.5 weeks", 1.5 * 604800.0, "duration"), ("30 seconds", 30.0, "duration"),
])
def test_quantities(text, value, kind):
    module, diags = parse_text(f"const q = {text}\n")
    q = module.decls[0].expr
    assert isinstance(q, ast.Quantity) and q.kind == kind and q.value == pytest.approx(value)


def test_keywords_are_attribute_names_after_a_dot():
    module, diags = parse_text("segment s = profile.score > 1 and profile.set is set and request.priority == 2\n")
    assert not len(diags)


def test_spans_point_at_the_source():
    text = 'rule r when profile.lifecycle == vip then d = "x"\n'
    module, _ = parse_text(text)
    cond = module.decls[0].when
    assert cond.span.text == "profile.lifecycle == vip"
    assert cond.span.location() == "t.rules:1:13"
    assert cond.right.span.text == "vip"


def test_every_broken_declaration_is_reported_and_the_rest_still_parse():
    text = ("rule a prority 1 then d = 1\n"
            "rule ok then d = 2\n"
            "rule b when x = 1 then d = 3\n"
            "rule ok2 then d = 4\n"
            "rule c when (x then d = 5\n")
    module, diags = parse_text(text)
    assert [d.span.line for d in diags] == [1, 3, 5]
    assert [d.name.name for d in module.decls] == ["ok", "ok2"]
    assert set(module.broken) == {"a", "b", "c"}


def test_misspelt_keyword_suggests_the_keyword():
    _, diags = parse_text("rule a whne profile.n > 1 then d = 1\n")
    (d,) = list(diags)
    assert d.code == "E101" and d.help == "did you mean `when`?"


def test_nesting_limit_is_a_diagnostic_not_a_crash():
    n = limits.MAX_DEPTH + 5
    deep = "(profile.n + " * n + "1" + ")" * n
    result = compile_text(f"decision d: number\nrule r then d = {deep}\n")
    assert [d.code for d in result.diagnostics.errors] == ["E502"]


def test_pathologically_deep_input_does_not_crash_the_parser():
    deep = "(1 + " * 5000 + "1" + ")" * 5000
    result = compile_text(f"decision d: number\nrule r then d = {deep}\n")
    assert result.diagnostics.has_errors
    assert {d.code for d in result.diagnostics.errors} == {"E502"}


def test_file_size_limit(monkeypatch):
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    _, diags = parse_text("# " + "x" * 200 + "\n")
    assert [d.code for d in diags] == ["E501"]


def test_message_placeholders_are_parsed_and_checked():
    result = compile_text('decision o: offer pick best\n'
                          'offer a score 1 message "Hi {profile.s}, {{literal}} {profile.nope}"\n')
    (err,) = result.diagnostics.errors
    assert err.code == "E202" and err.span.text == "nope"
