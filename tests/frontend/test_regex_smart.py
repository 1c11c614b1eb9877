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


def test_inline_flags_are_hoisted_for_both_engines() -> None:
    for engine in ("re2", "backtracking"):
        assert rx.compile_pattern("X (?i)ECHO OFF", engine=engine)("x echo off") is not None
    assert rx.hoist_flags("a(?i:b)") == "a(?i:b)"  # scoped flags stay where they are


@pytest.mark.parametrize(("spec", "ok"), [
    ("10.2.3.", True), ("10.", True), ("10.2.300.", False),
    ("10.1.1.50-55", True), ("10.1.1.50-49", False), ("10.1.1.50-256", False),
    ("10.1.1.0/24, 2001:db8::/32", True), ("::1", True),
    # reference 6.3: numeric forms only
    ("mail.example.com", False), (".example.com", False), ("ALL", False), ("SBRS[1:10]", False),
])
def test_remote_ip_takes_numeric_address_specs_only(spec: str, ok: bool) -> None:
    diags = check_source(f"f: if remote-ip == '{spec}' {{ no-op(); }}")
    assert ("F305" not in [d.code for d in diags]) is ok


@pytest.mark.parametrize(("action", "ok"), [
    ("notify('postmaster@example.com', 'Blocked', '')", True),  # the null sender
    ("bcc('audit@example.com', '$Subject', '')", True),
    ("bcc('audit@example.com', '$Subject', '$EnvelopeFrom')", True),
    ("notify('postmaster@example.com', 'Blocked', 'bounces@example.com')", True),
    ("notify('postmaster@example.com', 'Blocked', 'a@example.com, b@example.com')", False),
    ("notify('', 'Blocked')", False),  # a notification needs somebody to go to
])
def test_return_path_is_one_address_or_the_null_sender(action: str, ok: bool) -> None:
    diags = check_source(f"f: if true {{ {action}; }}")
    assert ("F307" not in [d.code for d in diags]) is ok
