"""Golden semantic diagnostics: one small filter per case, the exact rendered report."""

from __future__ import annotations

from pathlib import Path

import golden_harness
import pytest

CASES = golden_harness.cases("semantic")


def test_there_are_enough_semantic_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=golden_harness.case_id)
def test_golden_semantic(case: Path, update_golden: bool) -> None:
    golden_harness.check(case, update_golden)
