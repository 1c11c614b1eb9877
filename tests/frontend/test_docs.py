"""The committed docs match what the generator produces from the tables."""

from __future__ import annotations

import pytest

from filterlang import _docgen
from filterlang import builtins as b
from filterlang.codes import CODES


@pytest.mark.parametrize("rel", sorted(_docgen.OUTPUTS))
def test_docs_are_up_to_date(rel: str) -> None:
    committed = (_docgen.ROOT / rel).read_text(encoding="utf-8")
    assert committed == _docgen.OUTPUTS[rel](), "run: python -m filterlang._docgen"


def test_docs_cover_every_rule_action_and_code() -> None:
    language, lint = _docgen.language(), _docgen.lint()
    assert all(f"`{r.name}" in language for r in b.RULES)
    assert all(f"`{a.name}" in language for a in b.ACTIONS)
    assert all(f"## {c}:" in lint for c in CODES)
