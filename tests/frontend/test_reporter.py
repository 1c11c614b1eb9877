"""The reporter: header, source excerpt with caret underline, hint, and JSON."""

from __future__ import annotations

import json

from filterlang.ast import Span
from filterlang.diagnostics import Diagnostic, Related, Severity
from filterlang.reporter import JSON_KEYS, format_diagnostic, format_json, format_text

SOURCE = 'hold:\n  if attachment-filename == "(?i)\\\\.exe$" { quarantne("Policy"); }\n'


def _diag(line: int, col: int, end_col: int, **kw: object) -> Diagnostic:
    return Diagnostic(
        kw.pop("code", "F204"),  # type: ignore[arg-type]
        kw.pop("severity", Severity.ERROR),  # type: ignore[arg-type]
        kw.pop("message", "unknown action 'quarantne'"),  # type: ignore[arg-type]
        Span("a.filter", line, col, line, end_col),
        **kw,  # type: ignore[arg-type]
    )


def test_text_form_has_header_excerpt_caret_and_hint() -> None:
    diag = _diag(2, 44, 53, hint="did you mean 'quarantine'?")
    assert format_diagnostic(diag, SOURCE) == (
        "a.filter:2:44: error[F204]: unknown action 'quarantne'\n"
        '  2 |   if attachment-filename == "(?i)\\\\.exe$" { quarantne("Policy"); }\n'
        "    |                                            ^^^^^^^^^\n"
        "  hint: did you mean 'quarantine'?"
    )


def test_caret_keeps_tabs_so_it_lines_up() -> None:
    source = "x:\n\tif\tsigned {\n"
    text = format_diagnostic(_diag(2, 5, 11), source)
    assert text.splitlines()[2] == "    | \t  \t^^^^^^"


def test_span_over_several_lines_is_underlined_to_the_end_of_the_first() -> None:
    diag = Diagnostic("F105", Severity.ERROR, "empty block", Span("a.filter", 1, 4, 2, 2))
    lines = format_diagnostic(diag, "if {\n}\n").splitlines()
    assert lines[2] == "    |    ^"


def test_without_source_only_the_header_is_printed() -> None:
    assert format_diagnostic(_diag(2, 44, 53), None) == (
        "a.filter:2:44: error[F204]: unknown action 'quarantne'"
    )


def test_wide_line_numbers_widen_the_gutter() -> None:
    source = "\n" * 11 + "drop();\n"
    lines = format_diagnostic(_diag(12, 1, 5), source).splitlines()
    assert lines[1] == "  12 | drop();"
    assert lines[2] == "     | ^^^^"


def test_notes_are_rendered_with_their_location() -> None:
    note = Related("first defined here", Span("a.filter", 1, 1, 1, 5))
    text = format_diagnostic(_diag(2, 3, 5, notes=(note,)), SOURCE)
    assert "  a.filter:1:1: note: first defined here" in text


def test_warnings_and_notes_say_so() -> None:
    text = format_text([_diag(1, 1, 2, code="W501", severity=Severity.WARNING)], {})
    assert text.startswith("a.filter:1:1: warning[W501]:")


def test_json_has_exactly_the_documented_keys() -> None:
    diag = _diag(2, 44, 53, hint="did you mean 'quarantine'?")
    (obj,) = json.loads(format_json([diag]))
    assert tuple(obj) == JSON_KEYS
    assert obj == {
        "path": "a.filter",
        "line": 2,
        "col": 44,
        "end_line": 2,
        "end_col": 53,
        "severity": "error",
        "code": "F204",
        "message": "unknown action 'quarantne'",
        "hint": "did you mean 'quarantine'?",
    }


def test_json_of_nothing_is_an_empty_list() -> None:
    assert json.loads(format_json([])) == []
