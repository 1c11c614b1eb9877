"""The one canonical layout of a filter file (reference 13.3), comments kept in place.

Layout: the filter name at the margin, its ``if`` four spaces in, one action per line four
more spaces in; keywords and rule/action names in lower case; one space around comparators and
boolean operators; single quotes unless the value contains a single quote; one blank line
between filters. Parentheses are printed exactly where the author wrote them (``Group``), so
the tree of the output equals the tree of the input.

Comments stay before the construct that follows them: in the branch they were written in (a
comment just after ``else {`` opens the else branch) and inside a condition that spans lines.

A condition written on one line stays on one line unless it is longer than ``WIDTH``; then it is
wrapped before every ``and``/``or`` of its outer chain (and inside the groups still too long).
A condition written over several lines keeps the author's breaks between operands, in one form:
the operator starts the continuation line, one level deeper than the ``if`` (level with the
first operand inside parentheses); a parenthesised group that spans lines has ``(`` and ``)``
on lines of their own around its indented content. Both rules read only what the canonical output preserves, so formatting twice
gives the same text.
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
#: Lines longer than this get their condition wrapped at and/or (when it was on one line).
WIDTH = 100
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

    def take_comments(self, line: int, depth: int) -> list[str]:
        """The comment lines before source line ``line``, indented ``depth`` levels."""
        out = []
        while self.comments and self.comments[0].span.line < line:
            out.append((INDENT * depth + "#" + self.comments.popleft().text).rstrip())
        return out

    def layout(self, node: Condition, at: int, cont: int) -> list[str]:
        """``node`` as lines: the first continues the current line (which is ``at`` levels in),
        the others are whole lines; a chain's continuation lines sit ``cont`` levels in."""
        text = condition(node)
        span = node.span
        one_line = span.line == span.end_line
        # Room for `if ` and ` {` (or an operator and its space) around the text.
        if one_line and len(INDENT * at) + len(text) + 5 <= WIDTH:
            return [text]
        if isinstance(node, Not):
            lines = self.layout(node.operand, at, cont)
            return ["not " + lines[0], *lines[1:]]
        if isinstance(node, Group) and not (one_line and isinstance(node.inner, RuleTest)):
            inner = self.take_comments(node.inner.span.line, at + 1)
            body = self.layout(node.inner, at + 1, at + 1)
            inner += [INDENT * (at + 1) + body[0], *body[1:]]
            inner += self.take_comments(span.end_line, at + 1)
            return ["(", *inner, INDENT * at + ")"]
        if isinstance(node, BoolOp):
            return self.chain(node, text, at, cont)
        return [text]  # a single rule (or a group of one): nothing to break

    def chain(self, node: BoolOp, text: str, at: int, cont: int) -> list[str]:
        """An and/or chain, broken where the author broke it between operands; one that the
        author kept on one line (line breaks inside a rule's arguments do not count) and that
        is too long is broken before every operator."""
        operands: list[tuple[str, Condition]] = []
        current: Condition = node
        while isinstance(current, BoolOp):  # chains lean left: walk the spine, no recursion
            operands.append((current.op, current.right))
            current = current.left
        operands.append(("", current))
        operands.reverse()
        authored = any(
            operand.span.line > before.span.end_line
            for (_, before), (_, operand) in zip(operands, operands[1:], strict=False)
        )
        wrap = not authored and len(INDENT * at) + len(text) + 5 > WIDTH
        lines = self.layout(operands[0][1], at, cont)
        level = at if len(lines) == 1 else cont  # how deep the current last line is
        previous = operands[0][1]
        for op, operand in operands[1:]:
            comments = self.take_comments(operand.span.line, cont)
            if wrap or comments or operand.span.line > previous.span.end_line:
                sub = self.layout(operand, cont, cont)
                lines += comments
                lines.append(f"{INDENT * cont}{op} {sub[0]}")
                level = cont
            else:
                sub = self.layout(operand, level, cont)
                lines[-1] += f" {op} {sub[0]}"
            if len(sub) > 1:
                lines += sub[1:]
                level = cont
            previous = operand
        return lines

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
        # A comment between `if` and its condition has no line of its own there: it goes above.
        self.lines += self.take_comments(node.condition.span.line, depth)
        lines = self.layout(node.condition, depth, depth + 1)
        self.lines += [f"{indent}if {lines[0]}", *lines[1:]]
        self.lines[-1] += " {"
        if node.else_ is None:
            self.block(node.then, depth + 1, node.span.end_line)
        else:
            # Comments before `else` end the then branch; those after it open the else branch.
            else_line = node.else_span.line if node.else_span else node.else_[0].span.line
            self.block(node.then, depth + 1, else_line)
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
