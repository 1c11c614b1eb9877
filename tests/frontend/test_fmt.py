"""The formatter: canonical layout, comments kept, idempotent, meaning-preserving."""

from __future__ import annotations

from pathlib import Path

import pytest

from filterlang import format_source, parse
from filterlang.fmt import quote

CORPUS = Path(__file__).resolve().parent / "corpus" / "reference_examples.filter"


def fmt(text: str) -> str:
    out, diags = format_source(text)
    assert diags == []
    assert out is not None
    return out


def test_canonical_layout() -> None:
    source = (
        'Big_Ones: IF (Body-Size >= 10m) AND NOT signed { Notify("$EnvelopeFrom");'
        " DROP(); } else { if random(10) < 3 {no-op();} }"
    )
    assert fmt(source) == (
        "Big_Ones:\n"
        "    if (body-size >= 10M) and not signed {\n"
        "        notify('$EnvelopeFrom');\n"
        "        drop();\n"
        "    } else {\n"
        "        if random(10) < 3 {\n"
        "            no-op();\n"
        "        }\n"
        "    }\n"
    )


def test_content_filter_layout() -> None:
    source = "content-filter cf! direction Outgoing if true { drop(); }"
    assert fmt(source) == (
        "content-filter cf!\n"
        "    direction outgoing\n"
        "    apply all\n"
        "    if true {\n"
        "        drop();\n"
        "    }\n"
    )


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("it's", '"it\'s"'),
        ("both ' and \"", "'both \\' and \"'"),
        ("a\\.b", "'a\\\\.b'"),
        ("tab\there", "'tab\\there'"),
        ("", "''"),
    ],
)
def test_quotes(value: str, literal: str) -> None:
    assert quote(value) == literal


def test_comments_stay_where_they_were() -> None:
    source = (
        "# file header\n"
        "\n"
        "# description: Stamp signed mail\n"
        "stamp:\n"
        "  # before the if\n"
        "  if signed {\n"
        "      # before the action\n"
        "      insert-header('X-Signed', 'True');\n"
        "      # at the end of the block\n"
        "  }\n"
        "# trailing\n"
    )
    assert fmt(source) == (
        "# file header\n"
        "\n"
        "# description: Stamp signed mail\n"
        "stamp:\n"
        "    # before the if\n"
        "    if signed {\n"
        "        # before the action\n"
        "        insert-header('X-Signed', 'True');\n"
        "        # at the end of the block\n"
        "    }\n"
        "\n"
        "# trailing\n"
    )


def test_comment_inside_a_condition_stays_in_the_condition() -> None:
    source = "x:\n  if signed\n  # why\n  and encrypted { no-op(); }\n"
    assert fmt(source) == (
        "x:\n    if signed\n        # why\n        and encrypted {\n        no-op();\n    }\n"
    )


def test_filters_are_separated_by_one_blank_line() -> None:
    assert fmt("a: if true { drop(); }\n\n\n\nb! if true { drop(); }") == (
        "a:\n    if true {\n        drop();\n    }\n\nb!\n    if true {\n        drop();\n    }\n"
    )


def test_empty_file_stays_empty() -> None:
    assert fmt("") == ""
    assert fmt("\n\n") == ""


def test_reference_examples_are_idempotent_and_meaning_preserving() -> None:
    source = CORPUS.read_text(encoding="utf-8")
    once = fmt(source)
    assert fmt(once) == once
    assert parse(once)[0] == parse(source)[0]
    # Every comment survives.
    assert once.count("#") >= source.count("\n#")


def test_syntax_errors_refuse_to_format() -> None:
    out, diags = format_source("x: if signed { drop() }")
    assert out is None
    assert [d.code for d in diags] == ["F112"]


def test_description_without_its_comment_is_written_as_one() -> None:
    from attrs import evolve

    from filterlang.fmt import format_script

    script, _ = parse("x: if signed { no-op(); }")
    assert script is not None
    described = evolve(script, filters=(evolve(script.filters[0], description="Why"),))
    text = format_script(described)
    assert text.startswith("# description: Why\nx:\n")
    assert parse(text)[0] == described
    assert fmt(text) == text
