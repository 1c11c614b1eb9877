"""Golden tests for the formatter's layout of comments and long or multi-line conditions.

Each `golden/fmt/NAME.filter` is formatted and compared with `NAME.formatted`; the output must
also be a fixed point and mean the same as the input. Regenerate with `pytest --update-golden`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from filterlang import format_source, parse

CASES = sorted((Path(__file__).resolve().parent / "golden" / "fmt").glob("*.filter"))


def _comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_fmt_golden(case: Path, update_golden: bool) -> None:
    source = case.read_text(encoding="utf-8")
    out, diags = format_source(source, case.name)
    assert out is not None, diags
    expected_file = case.with_suffix(".formatted")
    if update_golden or not expected_file.exists():
        expected_file.write_text(out, encoding="utf-8")
        if not update_golden:
            raise AssertionError(f"{expected_file.name} was missing; written, please review it")
    assert out == expected_file.read_text(encoding="utf-8")
    assert format_source(out)[0] == out  # a fixed point
    assert parse(out)[0] == parse(source)[0]  # the same filters
    assert _comments(out) == _comments(source)  # every comment, in order
