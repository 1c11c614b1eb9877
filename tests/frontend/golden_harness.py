"""Golden tests for diagnostics: each case is a `.filter` file beside a `.expected` file.

The `.expected` file holds the exact text the reporter prints for the case, with paths written
relative to the golden directory (`syntax/else_if.filter:3:12: error[F106]: ...`), so the files
do not depend on where the checkout lives. Regenerate with `pytest --update-golden` and review
the diff.

Use from a test module::

    CASES = golden_harness.cases("semantic")

    @pytest.mark.parametrize("case", CASES, ids=golden_harness.case_id)
    def test_golden(case: Path, update_golden: bool) -> None:
        golden_harness.check(case, update_golden)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from filterlang import check_bytes, parse_bytes
from filterlang.diagnostics import Diagnostic
from filterlang.reporter import format_text

GOLDEN = Path(__file__).resolve().parent / "golden"

Runner = Callable[[bytes, str], list[Diagnostic]]


def cases(group: str) -> list[Path]:
    """The `.filter` cases of one group (a directory under `golden/`), sorted."""
    return sorted((GOLDEN / group).glob("*.filter"))


def case_id(case: Path) -> str:
    """A readable test id: the case's file stem."""
    return case.stem


def syntax_only(data: bytes, path: str) -> list[Diagnostic]:
    """Run the parser alone (the F1xx cases must not depend on the checker)."""
    return parse_bytes(data, path)[1]


def full_check(data: bytes, path: str) -> list[Diagnostic]:
    """Run parser and checker, as `filterlang lint` does."""
    return check_bytes(data, path)


def render(case: Path, run: Runner = full_check) -> str:
    """The report for one case, exactly as the reporter prints it."""
    path = case.relative_to(GOLDEN).as_posix()
    data = case.read_bytes()
    diags = run(data, path)
    source = data.decode("utf-8", "replace")
    return format_text(diags, {path: source})


def check(case: Path, update: bool, run: Runner = full_check) -> None:
    """Compare a case with its `.expected` file, or rewrite that file when updating."""
    expected_file = case.with_suffix(".expected")
    actual = render(case, run)
    if update or not expected_file.exists():
        expected_file.write_text(actual, encoding="utf-8")
        if not update:
            raise AssertionError(f"{expected_file.name} was missing; written, please review it")
        return
    expected = expected_file.read_text(encoding="utf-8")
    assert actual == expected, (
        f"{case.name}: report differs from {expected_file.name}\n"
        f"--- expected\n{expected}--- actual\n{actual}"
    )
