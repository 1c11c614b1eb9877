"""The grammar itself: conflict-free in strict mode, and the shapes of reference 3.1-3.3."""

from __future__ import annotations

import pytest
from lark import Lark

from filterlang.ast import BoolOp, Group, Not, RuleTest
from filterlang.parse import grammar_text, parse


def test_grammar_builds_in_strict_mode() -> None:
    # Strict mode turns shift/reduce conflicts and terminal collisions into errors.
    pytest.importorskip("interegular")
    Lark(grammar_text(), parser="lalr", lexer="basic", strict=True)


def _condition(text: str) -> object:
    script, diags = parse(f"f: if {text} {{ no-op(); }}")
    assert diags == []
    assert script is not None
    return script.filters[0].body.condition


def r(name: str) -> RuleTest:
    return RuleTest(name, None, None, None, name_span=None, span=None)  # type: ignore[arg-type]


def b(op: str, left: object, right: object) -> BoolOp:
    return BoolOp(op, left, right, span=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a and b and c", b("and", b("and", r("a"), r("b")), r("c"))),
        ("a or b or c", b("or", b("or", r("a"), r("b")), r("c"))),
        ("a or b and c", b("or", r("a"), b("and", r("b"), r("c")))),
        ("a and b or c", b("or", b("and", r("a"), r("b")), r("c"))),
        ("not a and b", b("and", Not(r("a"), span=None), r("b"))),  # type: ignore[arg-type]
        ("NOT a AND b", b("and", Not(r("a"), span=None), r("b"))),  # type: ignore[arg-type]
        ("(a or b) and c", b("and", Group(b("or", r("a"), r("b")), span=None), r("c"))),  # type: ignore[arg-type]
        ("andrew or notable", b("or", r("andrew"), r("notable"))),
    ],
)
def test_precedence_and_associativity(text: str, tree: object) -> None:
    assert _condition(text) == tree


@pytest.mark.parametrize(
    ("operand", "kind", "value"),
    [
        ("4M", "Size", 4 * 1024**2),
        ("10k", "Size", 10 * 1024),
        ("10K", "Size", 10 * 1024),
        ("10b", "Size", 10),
        ("2g", "Size", 2 * 1024**3),
        ("100", "Number", 100),
        ("-7.5", "Number", -7.5),
        ("'5M'", "String", "5M"),
        ('"a\\\\.b"', "String", "a\\.b"),
        ("'a\\.b'", "String", "a\\.b"),
        ("'it\\'s'", "String", "it's"),
        ("'tab\\there'", "String", "tab\there"),
        ("'x\\ny'", "String", "x\ny"),
        ("'#not a comment'", "String", "#not a comment"),
    ],
)
def test_literals(operand: str, kind: str, value: object) -> None:
    test = _condition(f"body-size >= {operand}")
    assert isinstance(test, RuleTest)
    assert type(test.operand).__name__ == kind
    assert test.operand is not None and test.operand.value == value


@pytest.mark.parametrize(
    "source",
    [
        "filterstatus: if true{skip-filters();}",
        "x: if header ('X-Bounce-Profile') { no-op(); }",
        "x! if signed() { no-op(); }",
        "x: if random(10) < 3 { no-op(); }",
        "x: if url-category(['Gambling', 'Malware Sites'], 'Allowed') { no-op(); }",
        "x: if true { url-category-defang(['A'], 'B', []); }",
        "x: if (A) AND (B) { no-op(); }",
        "x:\n# between\nif\n# in a condition\nsigned\n{\n# in a block\nno-op();\n}",
        "x: if true { if a { b(); } else { if c { d(); } } }",
        "content-filter cf: direction incoming if true { drop(); }",
        "content-filter all: description 'd' direction outgoing apply all if true { drop(); }",
        "description: if direction and apply { incoming(); }",
    ],
)
def test_documented_forms_parse(source: str) -> None:
    script, diags = parse(source)
    assert diags == []
    assert script is not None and len(script.filters) == 1


def test_content_filter_metadata() -> None:
    script, _ = parse(
        "content-filter cf_hold!\n"
        "    description 'Hold it'\n"
        "    direction OUTGOING\n"
        "    apply any\n"
        "    if attachment-protected or signed { quarantine('Policy'); }\n"
    )
    assert script is not None
    (f,) = script.filters
    assert (f.name, f.active, f.description) == ("cf_hold", False, "Hold it")
    assert f.content is not None
    assert (f.content.direction, f.content.apply) == ("outgoing", "any")


def test_apply_defaults_to_all() -> None:
    script, _ = parse("content-filter cf: direction incoming if true { drop(); }")
    assert script is not None and script.filters[0].content is not None
    assert script.filters[0].content.apply == "all"


def test_description_comment_sets_description() -> None:
    script, _ = parse("# other\n# description: Stamp signed mail\nx: if signed { no-op(); }\n")
    assert script is not None
    assert script.filters[0].description == "Stamp signed mail"


def test_description_comment_must_be_directly_above() -> None:
    script, _ = parse("# description: far away\n\nx: if signed { no-op(); }\n")
    assert script is not None
    assert script.filters[0].description is None
