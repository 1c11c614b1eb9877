"""The incremental re-check gives what a whole check gives, and re-parses only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from filterlang import check_source
from filterlang.check import ResourceNames
from filterlang.incremental import IncrementalChecker

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "filters").glob("*.filter"))
FILTER = "f{i}:\n    if subject == 'x{i}' {{\n        quarantine('Policy');\n    }}\n\n"

# Edits an author makes while typing, each (old, new) applied once to the text.
EDITS = [
    ("();", "()"),  # a missing ';'
    ("    }\n", ""),  # a missing '}'
    ("if ", "if (\n"),  # an unclosed parenthesis and a new line
    ("'", "\u2018"),  # a typographic quote
    ("\n", "\n\n\n"),  # lines added: everything below moves
    ("(", "((((", ),
    ("==", "="),
    ("{", "{\n        quarantin('Policy');"),
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("edit", EDITS, ids=lambda e: repr(e[0]))
def test_same_diagnostics_as_a_whole_check(path: Path, edit: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    checker = IncrementalChecker("t.filter")
    assert checker.check(text) == check_source(text, "t.filter")
    old, new = edit
    middle = text.find(old, len(text) // 2)
    edited = text[:middle] + new + text[middle + len(old) :]
    assert checker.check(edited) == check_source(edited, "t.filter")
    assert checker.check(text) == check_source(text, "t.filter")


def test_only_the_changed_filter_is_parsed_again() -> None:
    text = "".join(FILTER.format(i=i) for i in range(200))
    checker = IncrementalChecker("t.filter")
    assert checker.check(text) == []
    assert checker.parsed == 200
    broken = text.replace("quarantine('Policy');\n    }\n\nf101:", "quarantin('Policy');\n    }\n\nf101:")
    [diag] = checker.check(broken)
    assert (diag.code, diag.span.line) == ("F204", 5 * 100 + 3)
    assert checker.parsed == 1
    # New lines at the top move every filter: clean ones are reused, the broken one re-checked.
    [diag] = checker.check("\n\n" + broken)
    assert (diag.code, diag.span.line) == ("F204", 5 * 100 + 5)
    assert checker.parsed == 2  # the broken filter, and the first piece that grew


def test_duplicates_and_pragma_span_filters() -> None:
    text = "".join(FILTER.format(i=i) for i in range(5)) + FILTER.format(i=2)
    checker = IncrementalChecker("t.filter")
    assert [d.code for d in checker.check(text)] == ["F208"] == [
        d.code for d in check_source(text, "t.filter")
    ]
    backref = text + "g:\n    if subject == '(a)\\\\1' {\n        drop();\n    }\n"
    assert checker.check(backref) == check_source(backref, "t.filter")
    pragma = "# filterlang: regex-engine=backtracking\n" + backref
    assert checker.check(pragma) == check_source(pragma, "t.filter")
    assert "F302" not in [d.code for d in checker.check(pragma)]


def test_configured_names_are_checked_and_a_change_of_them_is_seen() -> None:
    text = FILTER.format(i=1)
    checker = IncrementalChecker("t.filter")
    assert checker.check(text, ResourceNames(quarantines={"Policy"})) == []
    [diag] = checker.check(text, ResourceNames(quarantines={"Spam"}))
    assert diag.code == "F405"
