"""Keep the rule-language docs true: every example compiles, every code and word is there.

What is checked
---------------
(a) every ```maple block of docs/language.md (and of docs/diagnostics.md)
    compiles without errors, or reports exactly the codes it says it shows;
(b) every code of the catalogue (engine/diagnostics.py CATALOGUE) has its
    section in docs/diagnostics.md, with its summary and message, and an
    example that really triggers it (or, for the few codes no rule text can
    trigger, such as an empty directory, a check below that does);
(c) docs/language.md mentions every built-in function, every keyword of the
    grammar, every unit, type name and policy, in code (`...` or a block).

Conventions for code blocks in the docs
---------------------------------------
A fenced block whose info string starts with ``maple`` is rule text:

    ```maple                  checked with rules/schema.rules; no errors
                              allowed (warnings are fine: an example may well
                              declare a segment that nothing uses)
    ```maple fragment         one or more conditions separated by blank lines;
                              each is checked as the `when` of a rule
    ```maple triggers=E208    must report E208, and every error it reports
                              must be listed (several: triggers=E201,W101;
                              warnings need not be listed)

An HTML comment right before a block (blank lines allowed) gives it context:

    <!-- context: pack -->          check it with the whole reference pack
                                    (rules/*.rules) instead of the schema alone
    <!-- context: standalone -->    check it alone, without the schema (for
                                    blocks that declare their own schema)
    <!-- context:
    decision homepage_category: string pick first default "new-arrivals"
    -->                             add these declarations (also after
                                    `pack` or `standalone` on the first line)

The block itself is the file ``example.rules``; a ```text output block right
after a ```maple block must be exactly what checking it prints.  Other
blocks (```text, ```sh, ```json, ```) are prose and are not checked.

To start the section of a new catalogue code in docs/diagnostics.md, run
``python -m tests.docs.test_docs`` and paste what it prints.
"""
from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import limits
from engine.check.builtins import BUILTINS
from engine.check.checker import POLICIES
from engine.check.types import SIMPLE_TYPES
from engine.compile import compile_sources
from engine.diagnostics import CATALOGUE, Diagnostics, render_all
from engine.ruleset import read_sources
from engine.source import SourceFile
from engine.syntax.parser import KEYWORDS, UNITS

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = ROOT / "docs" / "language.md"
DIAGNOSTICS = ROOT / "docs" / "diagnostics.md"
GRAMMAR = ROOT / "engine" / "syntax" / "maple.lark"
PACK = sorted((ROOT / "rules").glob("*.rules"))
SCHEMA = ROOT / "rules" / "schema.rules"
EXAMPLE = "example.rules"

#: codes that no rule text can trigger (files, sizes): checked by test_code_without_rule_text
WITHOUT_RULE_TEXT = ("E001", "E002", "E501", "E502", "E503", "E504")


# ---------------------------------------------------------------- reading the docs
@dataclass
class Block:
    doc: str
    line: int                   # line of the opening fence (1-based)
    info: str                   # the info string: "maple fragment", "text output", ...
    text: str
    context: str | None         # the body of a <!-- context: ... --> comment
    section: str                # the last heading above the block

    @property
    def words(self) -> list[str]:
        return self.info.split()

    @property
    def is_maple(self) -> bool:
        return bool(self.words) and self.words[0] == "maple"

    @property
    def triggers(self) -> set[str]:
        for w in self.words[1:]:
            if w.startswith("triggers="):
                return set(w.split("=", 1)[1].split(","))
        return set()

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


_CONTEXT = re.compile(r"<!--\s*context:(.*?)-->\s*$", re.S)
_FENCE = re.compile(r"^(\s*)```(.*)$")


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    section = ""
    between: list[str] = []            # prose since the last block
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            between.append(line)
            i += 1
            continue
        start, info, body = i, m.group(2).strip(), []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1                          # the closing fence
        c = _CONTEXT.search("\n".join(between))
        blocks.append(Block(path.name, start + 1, info, "\n".join(body) + "\n",
                            c.group(1) if c else None, section))
        between = []
    return blocks


LANGUAGE_BLOCKS = read_blocks(LANGUAGE)
DIAGNOSTIC_BLOCKS = read_blocks(DIAGNOSTICS)
MAPLE_BLOCKS = [b for b in LANGUAGE_BLOCKS + DIAGNOSTIC_BLOCKS if b.is_maple]


# ---------------------------------------------------------------- checking a block
_pack_sources: list[SourceFile] | None = None


def pack_sources() -> list[SourceFile]:
    global _pack_sources
    if _pack_sources is None:
        _pack_sources = [SourceFile(f"rules/{p.name}", p.read_text(encoding="utf-8")) for p in PACK]
    return _pack_sources


def sources_for(block: Block) -> list[SourceFile]:
    context = (block.context or "").strip()
    first, _, rest = context.partition("\n")
    words = first.split()
    if words[:1] == ["pack"]:
        base, extra = pack_sources(), first[4:] + "\n" + rest
    elif words[:1] == ["standalone"]:
        base, extra = [], first[len("standalone"):] + "\n" + rest
    else:
        base, extra = [SourceFile("schema.rules", SCHEMA.read_text(encoding="utf-8"))], context
    sources = list(base)
    if extra.strip():
        sources.append(SourceFile("context.rules", extra.strip() + "\n"))
    text = block.text
    if "fragment" in block.words[1:]:
        conditions = [c for c in re.split(r"\n\s*\n", block.text)
                      if any(ln.strip() and not ln.strip().startswith("#") for ln in c.split("\n"))]
        assert conditions, f"{block.id}: a fragment block without a condition"
        text = "decision doc_fragment: bool pick first\n" + "".join(
            f"rule doc_fragment_{n} when (\n{c}\n) then doc_fragment = true\n"
            for n, c in enumerate(conditions))
    sources.append(SourceFile(EXAMPLE, text))
    return sources


def check_block(block: Block):
    result = compile_sources(sources_for(block), Diagnostics())
    return list(result.diagnostics)


def where(block: Block, diags) -> str:
    return f"{block.id} ({block.section}):\n{block.text}\n" + render_all(diags)


# ---------------------------------------------------------------- (a) examples compile
@pytest.mark.parametrize("block", MAPLE_BLOCKS, ids=[b.id for b in MAPLE_BLOCKS])
def test_maple_block(block):
    diags = check_block(block)
    errors = {d.code for d in diags if d.is_error}
    found = {d.code for d in diags}
    if not block.triggers:
        assert not errors, where(block, diags)
        return
    assert block.triggers <= found, where(block, diags)
    assert errors <= block.triggers, "the block reports errors it does not list\n" + where(block, diags)
    others = {d.span.path for d in diags if d.span is not None and d.is_error} - {EXAMPLE}
    assert not others, "the errors must be in the example, not its context\n" + where(block, diags)


OUTPUT_BLOCKS = [(prev, b) for blocks in (LANGUAGE_BLOCKS, DIAGNOSTIC_BLOCKS)
                 for prev, b in zip(blocks, blocks[1:]) if b.words[:2] == ["text", "output"]]


@pytest.mark.parametrize("pair", OUTPUT_BLOCKS, ids=[b.id for _, b in OUTPUT_BLOCKS])
def test_output_block_is_what_maple_prints(pair):
    example, output = pair
    assert example.is_maple, f"{output.id}: a ```text output block must follow a ```maple block"
    assert render_all(check_block(example)).strip() == output.text.strip()


def test_the_docs_have_examples():
    assert len([b for b in LANGUAGE_BLOCKS if b.is_maple]) >= 40
    assert OUTPUT_BLOCKS


# ---------------------------------------------------------------- (b) the catalogue
_HEADING = re.compile(r"^### ([EW]\d{3}) · (.+)$", re.M)


def display(template: str) -> str:
    """A message template as the docs show it (format escapes undone)."""
    return template.replace("{{", "{").replace("}}", "}")


def sections() -> dict[str, str]:
    text = DIAGNOSTICS.read_text(encoding="utf-8")
    found = list(_HEADING.finditer(text))
    out = {}
    for m, nxt in zip(found, found[1:] + [None]):
        end = nxt.start() if nxt else len(text)
        out[m.group(1)] = text[m.start():end]
    return out


def test_every_code_has_a_section_in_catalogue_order():
    text = DIAGNOSTICS.read_text(encoding="utf-8")
    documented = [m.group(1) for m in _HEADING.finditer(text)]
    assert sorted(set(CATALOGUE) - set(documented)) == [], "missing: run python -m tests.docs.test_docs"
    assert sorted(set(documented) - set(CATALOGUE)) == [], "codes that are not in the catalogue"
    assert documented == list(CATALOGUE), "one section per code, in catalogue order"


@pytest.mark.parametrize("code", list(CATALOGUE))
def test_section_names_summary_severity_and_message(code):
    c = CATALOGUE[code]
    section = sections()[code]
    first_line = section.split("\n", 1)[0]
    assert first_line == f"### {code} · {c.summary}"
    assert f"{c.severity.value} · `{display(c.template)}`" in section


@pytest.mark.parametrize("code", list(CATALOGUE))
def test_every_code_has_an_example_that_triggers_it(code):
    if code in WITHOUT_RULE_TEXT:
        return
    blocks = [b for b in DIAGNOSTIC_BLOCKS if b.is_maple and code in b.triggers
              and b.section.startswith(code)]
    assert blocks, f"docs/diagnostics.md: the section of {code} needs a ```maple triggers={code} example"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _codes_for_dir(path) -> set[str]:
    diags = Diagnostics()
    sources = read_sources(path, diags)
    if not diags.has_errors:
        compile_sources(sources, diags)
    return {d.code for d in diags}


def test_code_without_rule_text(tmp_path, monkeypatch):
    """E001, E002, E501-E504 come from files and sizes; the docs describe them
    in prose, and this is what they describe."""
    assert _codes_for_dir(tmp_path / "nothing-here") == {"E002"}
    _write(tmp_path / "empty" / "README.md", "no rules here")
    assert _codes_for_dir(tmp_path / "empty") == {"E001"}
    _write(tmp_path / "latin1" / "offers.rules", "# caf\xe9\n".encode("latin-1"))
    assert _codes_for_dir(tmp_path / "latin1") == {"E002"}

    schema = SCHEMA.read_text(encoding="utf-8")
    big = _write(tmp_path / "big" / "schema.rules", schema)
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    assert "E501" in _codes_for_dir(big.parent)
    monkeypatch.undo()

    depth = limits.MAX_DEPTH + 1
    deep = "(profile.loyalty_points + " * depth + "1" + ")" * depth
    _write(tmp_path / "deep" / "schema.rules", schema)
    _write(tmp_path / "deep" / "deep.rules", f"decision d: number\nrule r then d = {deep}\n")
    assert "E502" in _codes_for_dir(tmp_path / "deep")

    monkeypatch.setattr(limits, "MAX_PACK_NODES", 50)
    assert "E503" in _codes_for_dir(ROOT / "rules")
    monkeypatch.undo()

    monkeypatch.setattr(limits, "MAX_LIST_ITEMS", 3)
    _write(tmp_path / "list" / "schema.rules", schema)
    _write(tmp_path / "list" / "l.rules", 'segment s = request.category in ["a", "b", "c", "d"]\n')
    assert "E504" in _codes_for_dir(tmp_path / "list")
    monkeypatch.setattr(limits, "MAX_FILES", 1)
    assert "E504" in _codes_for_dir(tmp_path / "list")


# ---------------------------------------------------------------- (c) every word is documented
@functools.lru_cache(maxsize=None)
def _code_words(doc: Path) -> set[str]:
    """Words that appear in inline code or in code blocks of a doc."""
    text = doc.read_text(encoding="utf-8")
    code = "\n".join(b.text for b in read_blocks(doc))
    inline = " ".join(re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)))
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?[a-z]+", code + " " + inline))


def grammar_keywords() -> set[str]:
    """Every word the grammar spells out ("when", "pick", ...)."""
    return {w for w in re.findall(r'"([^"\\]+)"', GRAMMAR.read_text(encoding="utf-8")) if w.isalpha()}


def test_grammar_keywords_are_all_known():
    assert grammar_keywords() <= set(KEYWORDS)


@pytest.mark.parametrize("word", sorted(set(KEYWORDS) | grammar_keywords()))
def test_language_guide_mentions_keyword(word):
    assert word in _code_words(LANGUAGE), f"docs/language.md never shows the keyword `{word}` in code"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_language_guide_shows_builtin(name):
    text = LANGUAGE.read_text(encoding="utf-8").replace("\\|", "|")   # | is escaped in tables
    assert f"`{BUILTINS[name].signature}`" in text, f"docs/language.md: list the signature of {name}()"
    calls = [b for b in LANGUAGE_BLOCKS if b.is_maple and re.search(rf"\b{name}\(", b.text)]
    assert calls, f"docs/language.md needs a ```maple example that calls {name}()"


@pytest.mark.parametrize("word", sorted(set(UNITS) | set(SIMPLE_TYPES) | set(POLICIES) | {"offer"}))
def test_language_guide_mentions_units_types_and_policies(word):
    words = _code_words(LANGUAGE)
    # a unit may be shown glued to its number in inline code, e.g. `500 m`
    assert word in words or any(w.endswith(word) and w[:1].isdigit() for w in words), word


def test_language_guide_states_the_limits():
    text = LANGUAGE.read_text(encoding="utf-8")
    for value in (limits.MAX_FILE_BYTES, limits.MAX_FILES, limits.MAX_DEPTH, limits.MAX_PACK_NODES,
                  limits.MAX_LIST_ITEMS, limits.MAX_TOP, limits.MAX_PRIORITY):
        assert f"{value:,}" in text, f"docs/language.md: state the limit {value:,}"


# ---------------------------------------------------------------- links between the docs
def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of a doc."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    heads = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


# every doc, the READMEs included: a section moved to another doc must take its links along
LINKED_DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "bench" / "README.md"]


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_the_docs_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#([\w-]+)\)", text):
        other = doc.parent / target if target else doc
        assert other.exists(), f"{doc.name}: link to a missing file {target}"
        assert anchor in _anchors(other), f"{doc.name}: no heading for the link {target}#{anchor}"
    for target in re.findall(r"\]\(([\w./-]+\.md)\)", text):
        assert (doc.parent / target).exists(), f"{doc.name}: link to a missing file {target}"


# ---------------------------------------------------------------- a skeleton for new codes
def skeleton(codes=None) -> str:
    """Section stubs for catalogue codes (all, or the ones given)."""
    out = []
    for code in codes or CATALOGUE:
        c = CATALOGUE[code]
        out.append(f"### {code} · {c.summary}\n\n{c.severity.value} · `{display(c.template)}`\n\n"
                   f"What it means.\n\n```maple triggers={code}\n\n```\n\nHow to fix it.\n")
    return "\n".join(out)


if __name__ == "__main__":  # python -m tests.docs.test_docs [CODE ...]
    have = set(sections()) if DIAGNOSTICS.exists() else set()
    wanted = sys.argv[1:] or [c for c in CATALOGUE if c not in have]
    sys.stdout.write(skeleton(wanted))
