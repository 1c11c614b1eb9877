"""Smart identifiers (reference 5.7) are accepted where a pattern is, and compile to a candidate."""

from __future__ import annotations

import pytest

from filterlang import check_source
from filterlang import regex as rx


@pytest.mark.parametrize("ident", ["*credit", "*aba", "*ssn", "*CUSIP"])
def test_smart_identifier_lints_clean(ident: str) -> None:
    diags = check_source(f"f: if body-contains('{ident}') {{ no-op(); }}")
    assert not [d for d in diags if d.code.startswith("F")]


def test_smart_identifier_cannot_be_combined() -> None:
    assert [p.code for p in rx.problems("*credit|*ssn")] == ["F301"]


def test_variants_compile_once_per_use() -> None:
    assert rx.compile_raw("^a.c", multiline=True, data="utf8") is rx.compile_raw(
        "^a.c", multiline=True, data="utf8")
    assert rx.compile_raw(r"\x4d\x5a", data="latin1").search(b"\x00MZ") is not None
    assert rx.compile_raw("*ssn").search("id 123-45-6789") is not None
