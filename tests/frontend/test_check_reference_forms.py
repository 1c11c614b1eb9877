"""Every form in the reference's Syntax columns (6.2, 7.1) parses and checks clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filterlang import check_source

REFERENCE = Path("/work/shared/reference/filter-language.md")


def _forms(heading: str) -> list[str]:
    if not REFERENCE.exists():
        return []
    section = REFERENCE.read_text(encoding="utf-8").split(heading, 1)[1].split("\n### ", 1)[0]
    forms: list[str] = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if len(cells) > 3 and re.match(r"\| \d+$", cells[0]):
            for snippet in re.findall(r"`([^`]+)`", cells[2]):
                # Drop optional parts written as [, 'x'] (innermost first, they nest) so each
                # form is a concrete call; `size` is the one unquoted placeholder.
                while (shorter := re.sub(r"\[,[^\[\]]*\]", "", snippet)) != snippet:
                    snippet = shorter
                forms.append(snippet.replace("(size)", "(10M)"))
    return forms


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference document not present")
@pytest.mark.parametrize("form", _forms("### 6.2"))
def test_rule_forms(form: str) -> None:
    codes = [d.code for d in check_source(f"f: if {form} {{ no-op(); }}", "t") if d.code != "N601"]
    assert codes == []


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference document not present")
@pytest.mark.parametrize("form", _forms("### 7.1"))
def test_action_forms(form: str) -> None:
    if "(" not in form:
        pytest.skip(f"'{form}' is a cross-reference, not a form")
    assert [d.code for d in check_source(f"f: if true {{ {form}; }}", "t")] == []
