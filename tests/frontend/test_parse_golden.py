"""Golden syntax diagnostics: one small broken filter per case, exact rendered output."""

from __future__ import annotations

from pathlib import Path

import golden_harness
import pytest

CASES = golden_harness.cases("syntax")


def test_there_are_enough_syntax_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=golden_harness.case_id)
def test_golden_syntax(case: Path, update_golden: bool) -> None:
    golden_harness.check(case, update_golden, golden_harness.syntax_only)
