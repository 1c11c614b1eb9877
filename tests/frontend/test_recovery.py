"""Error recovery: every good filter survives a broken one, and a file reports at most 200."""

from __future__ import annotations

import pytest

from filterlang import check_source, parse
from filterlang.diagnostics import MAX_DIAGNOSTICS

GOOD = "{name}:\n  if signed {{\n    no-op();\n  }}\n"
BROKEN = "{name}: if x = 'y' {{ drop(); }}\n"


@pytest.mark.parametrize(
    "layout",
    ["GBG", "BGG", "GGB", "BBG", "GBGBG", "B", "G" * 40 + "B" + "G" * 40, "B" * 5 + "G" * 5],
)
def test_good_filters_survive_broken_ones(layout: str) -> None:
    parts = [(GOOD if kind == "G" else BROKEN).format(name=f"f{i}") for i, kind in enumerate(layout)]
    script, diags = parse("".join(parts), "t.filter")
    assert script is not None
    assert [f.name for f in script.filters] == [f"f{i}" for i, k in enumerate(layout) if k == "G"]
    assert [d.code for d in diags] == ["F110"] * layout.count("B")
    lines = [1 + sum(p.count("\n") for p in parts[:i]) for i, k in enumerate(layout) if k == "B"]
    assert [d.span.line for d in diags] == lines


def test_missing_brace_is_reported_once_and_the_next_filter_kept() -> None:
    text = "a:\n  if signed {\n    drop();\n\nb:\n  if signed {\n    no-op();\n  }\n"
    script, diags = parse(text, "t.filter")
    assert [d.code for d in diags] == ["F113"]
    assert script is not None and [f.name for f in script.filters] == ["b"]


def test_syntax_errors_stop_at_the_cap_with_one_note() -> None:
    text = "".join(BROKEN.format(name=f"f{i}") for i in range(MAX_DIAGNOSTICS + 50))
    _, diags = parse(text, "t.filter")
    assert [d.code for d in diags] == ["F110"] * MAX_DIAGNOSTICS + ["N602"]
    assert diags[-1].span.line == MAX_DIAGNOSTICS + 1
    assert "the rest of the file is not checked" in diags[-1].message


def test_check_reports_at_most_the_cap_with_one_note() -> None:
    text = "".join(f"f{i}: if signed {{ nosuch(); }}\n" for i in range(MAX_DIAGNOSTICS + 30))
    diags = check_source(text, "t.filter")
    assert [d.code for d in diags] == ["F204"] * MAX_DIAGNOSTICS + ["N602"]
    assert diags[-1].message == f"too many problems: 30 more not shown (at most {MAX_DIAGNOSTICS} per file)"
    assert diags[-1].span.line == MAX_DIAGNOSTICS + 1
