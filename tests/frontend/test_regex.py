"""The regex dialect on RE2: unsupported constructs are named, errors carry an offset."""

from __future__ import annotations

import pytest

from filterlang import regex


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        (r"(a)\1", "back-reference"),
        (r"foo(?=bar)", "look-around"),
        (r"(?<!x)y", "look-around"),
        (r"(?>ab)", "atomic group"),
        (r"a++", "possessive"),
    ],
)
def test_unsupported_constructs_are_named(pattern: str, named: str) -> None:
    [problem] = regex.problems(pattern)
    assert problem.code == "F302" and named in problem.message
    assert regex.problems(pattern, engine="backtracking") == () or named == "possessive"


def test_invalid_pattern_has_offset() -> None:
    [problem] = regex.problems("ab[c")
    assert problem.code == "F301" and "offset 2" in problem.message


def test_translation_and_case_folding() -> None:
    assert regex.compile_pattern(r"exe\Z")("setup.exe")
    assert regex.compile_pattern("ABC", ignore_case=True)("xabcx")
    assert not regex.compile_pattern("ABC")("xabcx")


def test_pragma() -> None:
    assert regex.engine_for("# filterlang: regex-engine=backtracking\n") == "backtracking"
    assert regex.engine_for("f: if true { drop(); }\n") == "re2"
