"""The fast LALR driver and Lark's own parser build the same tree from the same text."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from lark import Lark, Token, Transformer
from test_fmt_property import scripts

from filterlang.build import Builder, Context, token_tuple
from filterlang.parse import _get_parser

CORPUS = Path(__file__).resolve().parent / "corpus" / "reference_examples.filter"


class _Reference(Transformer[Token, Any]):
    """Lark's own parser and tree, built into nodes by the builder's methods (the reference).

    The builder takes tokens as tuples (what the fast driver makes), so Lark's tokens are
    turned into those, in the tree and on their way to the lexer callbacks.
    """

    def __init__(self, builder: Builder) -> None:
        super().__init__(visit_tokens=True)
        self.builder = builder

        def lexer_callback(hook: Callable[[Any], Any]) -> Callable[[Token], Token]:
            return lambda tok: (hook(token_tuple(tok)), tok)[1]

        callbacks = {name: lexer_callback(hook) for name, hook in builder.lexer_callbacks().items()}
        self.lark = Lark.open_from_package(
            "filterlang",
            "grammar.lark",
            parser="lalr",
            lexer="basic",
            maybe_placeholders=False,
            lexer_callbacks=callbacks,
        )

    def parse(self, text: str) -> Any:
        return self.transform(self.lark.parse(text))

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        return getattr(self.builder, data)(children)

    def __default_token__(self, token: Token) -> Any:
        return token_tuple(token)


@functools.cache
def _reference() -> _Reference:
    return _Reference(_get_parser().builder)


def _both(text: str) -> tuple[object, object, list[object], list[object]]:
    parser = _get_parser()
    reference = _reference()
    with parser.lock:
        fast_ctx = Context("p", text)
        parser.builder.ctx = fast_ctx
        fast = parser.fast.parse(text)
        lark_ctx = Context("p", text)
        parser.builder.ctx = lark_ctx
        slow = reference.parse(text)
    return fast, slow, fast_ctx.comments, lark_ctx.comments


def _spans(filters: object) -> list[object]:
    # Spans are excluded from equality; compare them explicitly, node by node.
    out: list[object] = []
    for f in filters:  # type: ignore[attr-defined]
        out += [f.span, f.name_span, f.body.span, f.body.condition.span]
    return out


@pytest.mark.parametrize(
    "text",
    [
        CORPUS.read_text(encoding="utf-8"),
        "x: if a and b or not (c) { f(1, -2.5, 3k, ['a', \"b\"]); } else { g(); }\n",
        "content-filter all! description 'd' direction incoming apply any if true { drop(); }",
        "# only a comment\n",
        "",
        # The CLI's end-of-input line, pasted between filters and at the end (issue 15).
        "a: if true { no-op(); }\n.\nb: if true { no-op(); }\n. \r\n.",
    ],
)
def test_same_tree_and_spans(text: str) -> None:
    fast, slow, fast_comments, slow_comments = _both(text)
    assert fast == slow
    assert _spans(fast) == _spans(slow)
    assert [c.span for c in fast_comments] == [c.span for c in slow_comments]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_same_tree_for_generated_scripts(text: str) -> None:
    fast, slow, fast_comments, slow_comments = _both(text)
    assert fast == slow
    assert _spans(fast) == _spans(slow)
    assert fast_comments == slow_comments


@pytest.mark.parametrize(("tail", "code"), [("\u00a0", "F115"), ("\u2003", "F101"), ("\x85", "F101")])
def test_other_unicode_spaces_are_not_whitespace(tail: str, code: str) -> None:
    from filterlang import parse

    # A no-break space is the pasted-text damage F115 names; other spaces are plain errors.
    _, diags = parse("x: if true { drop(); }" + tail)
    assert [d.code for d in diags] == [code]


def test_a_mistyped_name_line_between_filters_is_reported_not_lost() -> None:
    """A name line no filter-start pattern recognises (`hold_archiv==es:`) sat after a good
    filter in the same recovery piece; its error was dropped and lint exited 0 on a file that
    silently lost the filter."""
    from filterlang.parse import parse

    text = (
        "a:\n    if true {\n        drop();\n    }\n\n"
        "hold_archiv==es:\n    if attachment-protected {\n        drop();\n    }\n\n"
        "c:\n    if true {\n        drop();\n    }\n"
    )
    script, diags = parse(text, "lost.filter")
    errors = [d for d in diags if d.severity.name == "ERROR"]
    assert [(d.code, d.span.line) for d in errors] == [("F101", 6)]
    assert script is not None and [f.name for f in script.filters] == ["a", "c"]
