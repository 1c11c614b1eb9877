"""The TextMate grammar highlights every rule, action and keyword, and is up to date."""

from __future__ import annotations

import json
import re

import pytest

from filterlang import builtins as b
from runtime.lsp.tmlanguage import OUTPUT, keywords, render

GRAMMAR = json.loads(OUTPUT.read_text(encoding="utf-8"))
REPO = GRAMMAR["repository"]


def _matches(pattern: str, word: str) -> bool:
    # The patterns use only what Python's re and TextMate's Oniguruma share.
    found = re.search(pattern, f"  {word}(")
    return found is not None and found.group() == word


def test_the_committed_file_is_what_the_generator_writes() -> None:
    assert OUTPUT.read_text(encoding="utf-8") == render(), (
        "run: python -m runtime.lsp.tmlanguage"
    )


@pytest.mark.parametrize("name", [n for r in b.RULES for n in (r.name, *r.legacy)])
def test_every_rule_is_highlighted(name: str) -> None:
    assert _matches(REPO["rule"]["match"], name)
    assert _matches(REPO["rule"]["match"], name.upper().replace("-", "_"))


@pytest.mark.parametrize("name", [n for a in b.ACTIONS for n in (a.name, *a.legacy)])
def test_every_action_is_highlighted(name: str) -> None:
    assert _matches(REPO["action"]["match"], name)


def test_every_keyword_of_the_grammar_is_highlighted() -> None:
    words = keywords()
    assert {"if", "else", "and", "or", "not", "content-filter"} <= set(words)
    for word in words:
        assert _matches(REPO["keyword"]["match"], word) or _matches(
            REPO["operator"]["match"], word
        ), word


def test_a_name_inside_a_longer_name_is_not_highlighted() -> None:
    # `signed` is a rule; `signed-certificate` is another, and `my-signed` is neither.
    assert re.search(REPO["rule"]["match"], "my-signed_x") is None
    assert _matches(REPO["rule"]["match"], "signed-certificate")
