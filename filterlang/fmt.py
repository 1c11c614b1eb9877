"""The one canonical layout of a filter file (reference 13.3), comments kept in place.

Layout: the filter name at the margin, its ``if`` four spaces in, one action per line four
more spaces in; keywords and rule/action names in lower case; one space around comparators and
boolean operators; single quotes unless the value contains a single quote; one blank line
between filters. Parentheses are printed exactly where the author wrote them (``Group``), so
the tree of the output equals the tree of the input.

Comments stay before the construct that follows them. A comment inside a multi-line condition
moves to the top of the block that the condition opens; that is the only thing that moves.
"""

from __future__ import annotations

import re
from collections import deque

from filterlang.ast import (
    ActionCall,
    Arg,
    BoolOp,
    Comment,
    Condition,
    Filter,
    Group,
    If,
    Not,
    Number,
    RuleTest,
    Script,
    Size,
    Statement,
    String,
)

INDENT = "    "
_DESCRIPTION = re.compile(r"^ ?description:[ \t]*(.*?)\s*$")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(value: str) -> str:
    """A string literal whose parsed value is ``value``, in the canonical quotes."""
    q = '"' if "'" in value and '"' not in value else "'"
    body = "".join(_ESCAPES.get(ch, "\\" + ch if ch == q else ch) for ch in value)
    return q + body + q


def _size(node: Size) -> str:
    digits, unit = node.raw[:-1], node.raw[-1].lower()
    if unit.isdigit():
        return node.raw
    return digits + (unit.upper() if unit in "mg" else unit)


def argument(node: Arg) -> str:
    """One argument or operand as source text."""
    if isinstance(node, String):
        return quote(node.value)
    if isinstance(node, Size):
        return _size(node)
    if isinstance(node, Number):
        return node.raw
    return "[" + ", ".join(quote(item.value) for item in node.items) + "]"


def condition(node: Condition) -> str:
    """A condition as source text on one line."""
    if isinstance(node, RuleTest):
        text = node.name
        if node.args is not None:
            text += "(" + ", ".join(argument(a) for a in node.args) + ")"
        if node.comparator is not None and node.operand is not None:
            text += f" {node.comparator} {argument(node.operand)}"
        return text
    if isinstance(node, Not):
        return "not " + condition(node.operand)
    if isinstance(node, Group):
        return "(" + condition(node.inner) + ")"
    # Chains lean left; walk down the left spine instead of recursing on it.
    parts: list[str] = []
    current: Condition = node
    while isinstance(current, BoolOp):
        parts.append(f" {current.op} " + condition(current.right))
        current = current.left
    return condition(current) + "".join(reversed(parts))


def action(node: ActionCall) -> str:
    """An action call with its semicolon."""
    return node.name + "(" + ", ".join(argument(a) for a in node.args) + ");"


class _Printer:
    def __init__(self, comments: tuple[Comment, ...]) -> None:
        self.comments = deque(sorted(comments, key=lambda c: (c.span.line, c.span.col)))
        self.lines: list[str] = []

    def comments_before(self, line: int, indent: str) -> None:
        while self.comments and self.comments[0].span.line < line:
            text = self.comments.popleft().text
            self.lines.append((indent + "#" + text).rstrip())

    def top_comments_before(self, line: int, last: int, after_filter: bool) -> tuple[int, bool]:
        """Comments between filters; keep one blank line where the author left any."""
        while self.comments and self.comments[0].span.line < line:
            comment = self.comments.popleft()
            if self.lines and (after_filter or comment.span.line - last > 1):
                self.lines.append("")
            self.lines.append(("#" + comment.text).rstrip())
            last, after_filter = comment.span.line, False
        return last, after_filter

    def block(self, stmts: tuple[Statement, ...], depth: int, end_line: int) -> None:
        indent = INDENT * depth
        for stmt in stmts:
            self.comments_before(stmt.span.line, indent)
            if isinstance(stmt, If):
                self.if_stmt(stmt, depth)
            else:
                self.lines.append(indent + action(stmt))
        self.comments_before(end_line, indent)

    def if_stmt(self, node: If, depth: int) -> None:
        indent = INDENT * depth
        self.lines.append(f"{indent}if {condition(node.condition)} {{")
        if node.else_ is None:
            self.block(node.then, depth + 1, node.span.end_line)
        else:
            self.block(node.then, depth + 1, node.else_[0].span.line)
            self.lines.append(indent + "} else {")
            self.block(node.else_, depth + 1, node.span.end_line)
        self.lines.append(indent + "}")

    def description_comment(self, description: str) -> None:
        """Reference 13.5: a message filter's description is exported as a comment above it."""
        line = f"# description: {description}".rstrip()
        last = self.lines[-1] if self.lines else ""
        found = _DESCRIPTION.match(last[1:]) if last.startswith("#") else None
        if found is None or found.group(1) != description:
            self.lines.append(line)

    def filter(self, node: Filter) -> None:
        mark = ":" if node.active else "!"
        if node.content is None:
            if node.description is not None:
                self.description_comment(node.description)
            self.lines.append(node.name + mark)
        else:
            self.lines.append(f"content-filter {node.name}{mark}")
            if node.description is not None:
                self.lines.append(f"{INDENT}description {quote(node.description)}")
            self.lines.append(f"{INDENT}direction {node.content.direction}")
            self.lines.append(f"{INDENT}apply {node.content.apply}")
        self.comments_before(node.body.span.line, INDENT)
        self.if_stmt(node.body, 1)

    def script(self, script: Script) -> str:
        last, after_filter = 0, False
        for node in script.filters:
            last, after_filter = self.top_comments_before(node.span.line, last, after_filter)
            if self.lines and (after_filter or node.span.line - last > 1):
                self.lines.append("")
            self.filter(node)
            last, after_filter = node.span.end_line, True
        self.top_comments_before(2**62, last, after_filter)
        return "\n".join(self.lines) + "\n" if self.lines else ""


def format_script(script: Script) -> str:
    """The canonical text of a parsed script (its comments included)."""
    return _Printer(script.comments).script(script)
