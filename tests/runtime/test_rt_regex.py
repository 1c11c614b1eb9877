"""Patterns run on RE2: a pathological pattern against a 1 MB body stays linear (issue 3)."""

from __future__ import annotations

import pytest
from rt_helpers import msg, run

from runtime import rx


def test_catastrophic_pattern_on_one_megabyte_body_completes() -> None:
    body = ("a" * 1000 + "\n") * 1000  # 1 MB of lines that almost match
    t = run("f: if body-contains('(a+)+$b') or body-contains('(a|aa)*c') { no-op(); }", msg(body=body))
    tr = t.message_filters.filters[0]
    assert tr.error is None and tr.matched is False
    assert all("0 match" in r.note for r in tr.rules)


def test_backreferences_are_not_re2_and_name_the_construct() -> None:
    with pytest.raises(rx.PatternError, match="not RE2"):
        rx.compile_text(r"(a)\1")


def test_inline_flag_in_the_middle_is_hoisted() -> None:
    assert rx.search("X (?i)ECHO OFF", "x echo off")


def test_binary_patterns_match_bytes() -> None:
    assert rx.compile_bytes("\\x4d\\x5a").search(b"\x00MZ") is not None
