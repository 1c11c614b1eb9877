"""Build AST nodes from the parser's reductions: a Lark ``Transformer`` run inline while parsing.

The driver (``fastparse``) calls these methods as it reduces, with the children Lark's own
inline transformer would pass, so no parse tree is built and every node is made bottom-up
without recursion (the tests run Lark's parser through the same methods as the reference).
There is no ``meta`` inline, so the grammar keeps the bounding punctuation as named tokens and
the spans are computed here from the first and last child.

The builder only shapes data. It records the condition nesting limit that protects later
recursive passes (F108, reference 3.2; the driver stops deep brackets and huge calls) and marks
the filter so the parser can leave it out of the script.
"""

from __future__ import annotations

import re
from typing import Any, Final

from attrs import define, field
from lark import Token, Transformer

from filterlang.ast import (
    ActionCall,
    Arg,
    BoolOp,
    Comment,
    Condition,
    ContentMeta,
    Filter,
    Group,
    If,
    ListLit,
    Not,
    Number,
    RuleTest,
    Size,
    Span,
    Statement,
    String,
    make_span,
    slot_maker,
)
from filterlang.diagnostics import Diagnostic, Severity

# Brackets open at once (and conditions nested), and arguments plus list items in one call (the
# widest real call, a URL category list, has ~100): the driver stops at either limit.
MAX_DEPTH = 64
MAX_ARGS = 1000

_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# The nodes as the builder makes them: every field in order, spans last (see slot_maker).
_string = slot_maker(String)
_number = slot_maker(Number)
_size = slot_maker(Size)
_list_lit = slot_maker(ListLit)
_rule_test = slot_maker(RuleTest)
_not = slot_maker(Not)
_group = slot_maker(Group)
_bool_op = slot_maker(BoolOp)
_action_call = slot_maker(ActionCall)
_if = slot_maker(If)
_filter = slot_maker(Filter)


def unescape(raw: str) -> str:
    """Apply the filter parser's escape table (reference 2.6); unknown escapes stay as written."""
    if "\\" not in raw:
        return raw
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw)


# A token as the builder sees it: a plain tuple of Lark's ``Token`` fields in Lark's order.
# Tokens are the most numerous objects of a parse: a tuple costs a fraction of a Lark ``Token``
# (whose constructor sets eight slots in Python) or of a named tuple (made by copying a tuple),
# and a field read by constant index is the cheapest read there is.
Tok = tuple[str, str, int, int, int, int, int, int]
TYPE: Final = 0
VALUE: Final = 1
START: Final = 2  # offset of the first character
LINE: Final = 3
COL: Final = 4
END_LINE: Final = 5
END_COL: Final = 6  # exclusive
END: Final = 7  # offset after the last character


def lark_token(tok: Tok | Token) -> Token:
    """``tok`` as a Lark ``Token`` (for Lark's exceptions and the error translator)."""
    return tok if isinstance(tok, Token) else Token(*tok)


def token_tuple(tok: Token) -> Tok:
    """A Lark ``Token`` as the builder's tuple (for a parse driven by Lark itself)."""
    return (
        tok.type, tok.value, tok.start_pos, tok.line, tok.column, tok.end_line, tok.end_column,
        tok.end_pos,
    )  # type: ignore[return-value]  # Lark's stubs say the positions may be None


class TooDeepError(Exception):
    """Raised from the lexer when brackets nest past the limit, before the stack can grow."""

    def __init__(self, token: Tok | Token) -> None:
        lark = lark_token(token)
        super().__init__(lark)
        self.token = lark


@define
class Context:
    """Per-parse state shared by the lexer callbacks and the builder (one parse at a time)."""

    path: str
    text: str
    line_offset: int = 0
    comments: list[Comment] = field(factory=list)
    diagnostics: list[Diagnostic] = field(factory=list)
    bad_filter: bool = False
    depth: dict[int, int] = field(factory=dict)
    # Every filter reduced so far (kept ones) and the last line of the last one reduced, kept
    # or not: after a syntax error, recovery resumes behind it instead of reparsing the file.
    done: list[Filter] = field(factory=list)
    done_line: int = 0

    # Spans of tokens and nodes, one method per case (each reduction knows its case): they
    # are the parser's most numerous objects, so these are kept short.

    def token_span(self, tok: Tok) -> Span:
        """The span of one token."""
        off = self.line_offset
        return make_span(self.path, tok[LINE] + off, tok[COL], tok[END_LINE] + off, tok[END_COL])

    def tokens_span(self, first: Tok, last: Tok) -> Span:
        """The span from the start of token ``first`` to the end of token ``last``."""
        off = self.line_offset
        return make_span(self.path, first[LINE] + off, first[COL], last[END_LINE] + off, last[END_COL])

    def token_node_span(self, first: Tok, last: Any) -> Span:
        """The span from the start of token ``first`` to the end of node ``last``."""
        end = last.span
        return make_span(self.path, first[LINE] + self.line_offset, first[COL], end.end_line, end.end_col)

    def nodes_span(self, first: Any, last: Any) -> Span:
        """The span from the start of node ``first`` to the end of node ``last``."""
        start, end = first.span, last.span
        return make_span(self.path, start.line, start.col, end.end_line, end.end_col)

    def error(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        """Record a syntax-level diagnostic found while building."""
        self.diagnostics.append(Diagnostic(code, Severity.ERROR, message, span, hint))


class Builder(Transformer[Token, Any]):
    """Turn each grammar reduction into an AST node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)
        self.ctx = Context("<string>", "")

    # --- lexer callbacks ------------------------------------------------------------------

    def on_comment(self, tok: Tok) -> Tok:
        """Keep comments for the formatter; a comment after code on its line is F103."""
        ctx = self.ctx
        text = ctx.text
        start = tok[START]
        line_start = text.rfind("\n", 0, start) + 1
        line, col, value = tok[LINE] + ctx.line_offset, tok[COL], tok[VALUE]
        span = Span(ctx.path, line, col, line, col + len(value.rstrip("\r")))
        if text[line_start:start].strip():
            ctx.error(
                "F103",
                "comments must start a line",
                span,
                "move the comment to a line of its own above this one",
            )
        else:
            ctx.comments.append(Comment(value[1:].rstrip("\r"), span=span))
        return tok

    def lexer_callbacks(self) -> dict[str, Any]:
        """The callbacks for tokens the parser never sees (the nesting and argument limits are
        counted by the driver itself, see ``FastParser.parse``)."""
        return {"COMMENT": self.on_comment}

    # --- literals -------------------------------------------------------------------------

    def literal(self, tok: Tok) -> String | Number | Size:
        """A STRING, NUMBER or SIZE token as a literal node."""
        span = self.ctx.token_span(tok)
        kind, value = tok[TYPE], tok[VALUE]
        if kind == "STRING":
            raw = value[1:-1]
            return _string(unescape(raw) if "\\" in raw else raw, raw, value[0], span)
        if kind == "SIZE":
            return _size(int(value[:-1]) * _SIZE_UNITS[value[-1].lower()], value, span)
        number: int | float = float(value) if "." in value else int(value)
        return _number(number, value, span)

    def make_args(self, items: list[Any]) -> tuple[Arg, ...]:
        literal = self.literal
        if len(items) == 1:  # the common case, without a comprehension
            only = items[0]
            return (only if only.__class__ is ListLit else literal(only),)
        return tuple([i if i.__class__ is ListLit else literal(i) for i in items])

    def list_lit(self, c: list[Any]) -> ListLit:
        items = tuple([self.literal(t) for t in c[1:-1]])
        return _list_lit(items, self.ctx.tokens_span(c[0], c[-1]))

    # --- conditions -----------------------------------------------------------------------

    def rule_test(self, c: list[Any]) -> RuleTest:
        # `name`, `name ( args )`, `name CMP operand`, `name ( args ) CMP operand`: whatever
        # follows the name is a token, and the last child is either `)` or the operand.
        name = c[0]
        ctx = self.ctx
        name_span = ctx.token_span(name)
        size = len(c)
        args: tuple[Arg, ...] | None = None
        if size > 1 and c[1][TYPE] == "LPAR":
            close = size - 1 if c[-1][TYPE] == "RPAR" else size - 3
            args = self.make_args(c[2:close])
        if size == 1:
            span = name_span
        elif c[-1][TYPE] == "RPAR":
            span = ctx.tokens_span(name, c[-1])
        else:
            operand = self.literal(c[-1])
            span = ctx.token_node_span(name, operand)
            return _rule_test(name[VALUE].lower(), args, c[-2][VALUE], operand, name_span, span)
        return _rule_test(name[VALUE].lower(), args, None, None, name_span, span)

    def _depth(self, node: Condition) -> int:
        return self.ctx.depth.get(id(node), 0)

    def _nest(self, node: Condition, depth: int) -> Condition:
        if depth > MAX_DEPTH and not self.ctx.bad_filter:
            self.ctx.bad_filter = True
            self.ctx.error(
                "F108",
                f"condition nested deeper than {MAX_DEPTH} levels",
                node.span,
                "each 'not', parenthesis and 'and'/'or' operator adds a level; "
                "split the condition over nested 'if' statements",
            )
        self.ctx.depth[id(node)] = depth
        return node

    def negation(self, c: list[Any]) -> Condition:
        operand = c[1]
        node = _not(operand, self.ctx.token_node_span(c[0], operand))
        return self._nest(node, self._depth(operand) + 1)

    def group(self, c: list[Any]) -> Condition:
        # The commonest nesting node: `_depth` and `_nest` written out, as far as the limit.
        inner = c[1]
        ctx = self.ctx
        node = _group(inner, ctx.tokens_span(c[0], c[2]))
        depth = ctx.depth.get(id(inner), 0) + 1
        if depth > MAX_DEPTH:
            return self._nest(node, depth)
        ctx.depth[id(node)] = depth
        return node

    def _chain(self, op: str, c: list[Condition]) -> Condition:
        # Chains group from the left (reference 3.3): fold iteratively, never recursively.
        left = c[0]
        depth = self._depth(left)
        for right in c[1:]:
            depth = max(depth, self._depth(right)) + 1
            node = _bool_op(op, left, right, self.ctx.nodes_span(left, right))
            left = self._nest(node, depth)
        return left

    def and_test(self, c: list[Condition]) -> Condition:
        return self._chain("and", c)

    def or_test(self, c: list[Condition]) -> Condition:
        return self._chain("or", c)

    # --- statements -----------------------------------------------------------------------

    def action(self, c: list[Any]) -> ActionCall:
        name = c[0]
        ctx = self.ctx
        return _action_call(
            name[VALUE].lower(),
            self.make_args(c[2:-2]) if len(c) > 4 else (),
            ctx.token_span(name),
            ctx.tokens_span(name, c[-2]),
        )

    def block(self, c: list[Any]) -> tuple[tuple[Statement, ...], Tok]:
        return tuple(c[1:-1]), c[-1]

    def if_stmt(self, c: list[Any]) -> If:
        then, end = c[2]
        else_ = else_span = None
        if len(c) > 3:
            else_, end = c[4]
            else_span = self.ctx.token_span(c[3])
        self.ctx.depth.clear()
        return _if(c[1], then, else_, self.ctx.tokens_span(c[0], end), else_span)

    # --- filters --------------------------------------------------------------------------

    def make_filter(
        self,
        first: Tok,
        name: Tok,
        state: Tok,
        body: If,
        description: str | None = None,
        content: ContentMeta | None = None,
    ) -> Filter:
        ctx = self.ctx
        return _filter(
            name[VALUE],
            state[TYPE] == "ACTIVE",
            body,
            description,
            content,
            ctx.token_span(name),
            ctx.token_node_span(first, body),
        )

    def message_filter(self, c: list[Any]) -> Filter | None:
        made = self.make_filter(c[0], c[0], c[1], c[2])
        return self._keep(made)

    def cf_description(self, c: list[Tok]) -> tuple[str, str]:
        return "description", unescape(c[1][VALUE][1:-1])

    def cf_direction(self, c: list[Tok]) -> tuple[str, str]:
        return "direction", c[1][VALUE].lower()

    def cf_apply(self, c: list[Tok]) -> tuple[str, str]:
        return "apply", c[1][VALUE].lower()

    def content_filter(self, c: list[Any]) -> Filter | None:
        meta = dict(c[3:-1])
        content = ContentMeta(meta["direction"], meta.get("apply", "all"))
        made = self.make_filter(
            c[0], c[1], c[2], c[-1], description=meta.get("description"), content=content
        )
        return self._keep(made)

    def _keep(self, made: Filter) -> Filter | None:
        # A filter that broke a nesting limit is reported and left out, so that no later
        # recursive pass ever sees it.
        ctx = self.ctx
        bad, ctx.bad_filter = ctx.bad_filter, False
        ctx.done_line = made.span.end_line
        if bad:
            return None
        ctx.done.append(made)
        return made

    def start(self, c: list[Filter | None]) -> list[Filter]:
        return [f for f in c if f is not None]
