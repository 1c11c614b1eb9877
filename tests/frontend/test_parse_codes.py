"""The F1xx rows of the code table: their bad examples raise them, their fixes parse clean."""

from __future__ import annotations

import pytest

from filterlang import parse
from filterlang.codes import CODES

SYNTAX = [c for c in CODES.values() if c.code.startswith("F1")]


@pytest.mark.parametrize("code", SYNTAX, ids=lambda c: c.code)
def test_bad_example_raises_its_code(code: object) -> None:
    if code.code == "F107":  # type: ignore[attr-defined]
        pytest.skip("raw bytes cannot be written in the table; see test_robust")
    if code.code == "F114":  # type: ignore[attr-defined]
        pytest.skip("1001 arguments are too long for the table; see test_robust")
    _, diags = parse(code.bad)  # type: ignore[attr-defined]
    assert [d.code for d in diags] == [code.code]  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", SYNTAX, ids=lambda c: c.code)
def test_fixed_example_parses_clean(code: object) -> None:
    script, diags = parse(code.fixed)  # type: ignore[attr-defined]
    assert diags == []
    assert script is not None and script.filters
