"""Diagnostics that carry a fix: applying it gives a file that no longer has the problem."""

from __future__ import annotations

import pytest

from filterlang import check_source
from filterlang.ast import Span
from filterlang.check import ResourceNames

NAMES = ResourceNames(quarantines={"Policy"}, profiles={"sign"})


def _apply(text: str, span: Span, replacement: str) -> str:
    lines = text.split("\n")
    line = lines[span.line - 1]
    assert span.end_line == span.line
    lines[span.line - 1] = line[: span.col - 1] + replacement + line[span.end_col - 1 :]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("source", "code", "fixed"),
    [
        ("f: if subjct == 'x' { drop(); }", "F201", "f: if subject == 'x' { drop(); }"),
        ("f: if true { quarantin('Policy'); }", "F204", "f: if true { quarantine('Policy'); }"),
        ("f: if true { quarantine('Polcy'); }", "F405", "f: if true { quarantine('Policy'); }"),
        ("f: if true { drop_attachments('x'); }", "W503",
         "f: if true { drop-attachments-by-name('x'); }"),
        ("f: if remote-ip == 10.1.1.0/24 { drop(); }", "F111",
         "f: if remote-ip == '10.1.1.0/24' { drop(); }"),
        ("f: if true { quarantine(\u2018Policy\u2019); }", "F115",
         "f: if true { quarantine('Policy'); }"),
        ("f: if true { quarantine(\u201cPolicy\u201d); }", "F115",
         "f: if true { quarantine('Policy'); }"),
    ],
)
def test_fix_repairs_the_problem(source: str, code: str, fixed: str) -> None:
    [diag] = [d for d in check_source(source, "t.filter", names=NAMES) if d.code == code]
    assert diag.fix is not None
    repaired = _apply(source, diag.fix.span, diag.fix.replacement)
    assert repaired == fixed
    assert check_source(repaired, "t.filter", names=NAMES) == []


def test_no_fix_without_a_close_name() -> None:
    [diag] = check_source("f: if zzzzzz { drop(); }", "t.filter")
    assert diag.code == "F201" and diag.fix is None and diag.hint is None


def test_a_lone_typographic_quote_is_one_clear_error() -> None:
    [diag] = check_source("f: if true { quarantine(\u2018Policy); }", "t.filter")
    assert diag.code == "F115" and "typographic" in diag.message
