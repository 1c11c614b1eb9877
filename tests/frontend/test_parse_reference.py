"""Every filter printed in the reference parses without a syntax error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from filterlang import parse

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[2] / "shared" / "reference" / "filter-language.md"
CORPUS = HERE / "corpus" / "reference_examples.filter"


def _reference() -> str:
    if not REFERENCE.is_file():
        pytest.skip(f"reference not found at {REFERENCE}")
    return REFERENCE.read_text(encoding="utf-8")


def _filter_blocks(text: str) -> list[str]:
    blocks = [textwrap.dedent(b) for b in re.findall(r"```\n(.*?)```", text, re.DOTALL)]
    return [b for b in blocks if re.search(r"^\S+[:!]\s*$", b, re.MULTILINE) and "if" in b]


def _table_syntax(text: str, start: str, end: str, *, bare: bool) -> list[str]:
    """The backticked forms of the Syntax column of a summary table, optional parts dropped."""
    section = text[text.index(start) : text.index(end)]
    forms = []
    for line in section.splitlines():
        if re.match(r"\| \d+ \|", line):
            syntax = line.split("|")[3]
            for form in re.findall(r"`([^`]+)`", syntax):
                form = re.sub(r"\[,[^\]]*\]+", "", form)
                # Skip prose placeholders such as `notify` ("as notify") or `(size)`.
                if "(" in form or " " in form:
                    if not re.search(r"[(,]\s*[a-z_]+\s*[,)]", form):
                        forms.append(form)
                elif bare:
                    forms.append(form)
    return forms


def test_corpus_parses() -> None:
    script, diags = parse(CORPUS.read_text(encoding="utf-8"), str(CORPUS))
    assert diags == []
    assert script is not None and len(script.filters) >= 15


def test_every_example_block_of_the_reference_parses() -> None:
    blocks = _filter_blocks(_reference())
    assert len(blocks) >= 5
    for block in blocks:
        script, diags = parse(block, "reference")
        assert diags == [], block
        assert script is not None and script.filters


def test_corpus_matches_the_reference() -> None:
    blocks = _filter_blocks(_reference())
    corpus = CORPUS.read_text(encoding="utf-8")
    for block in blocks:
        assert block.rstrip() in corpus


def test_every_rule_form_of_table_6_2_parses() -> None:
    forms = _table_syntax(_reference(), "### 6.2 Summary table", "### 6.3", bare=True)
    assert len(forms) >= 59
    for form in forms:
        _, diags = parse(f"x: if {form} {{ no-op(); }}")
        assert diags == [], form


def test_every_action_form_of_table_7_1_parses() -> None:
    forms = _table_syntax(_reference(), "### 7.1 Summary table", "### 7.2", bare=False)
    assert len(forms) >= 40
    for form in forms:
        _, diags = parse(f"x: if true {{ {form}; }}")
        assert diags == [], form
