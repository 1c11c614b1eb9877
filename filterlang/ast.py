"""The abstract syntax tree: frozen attrs nodes, one per construct, each with a span.

Spans are excluded from equality (``eq=False``) so that two trees that differ only in layout
compare equal; ``fmt`` relies on that to prove it preserves meaning.

Shape::

    Script(filters, comments)
      Filter(name, active, body: If, description, content: ContentMeta | None)
        If(condition, then, else_)
          condition: RuleTest | Not | BoolOp | Group
          then / else_: tuple of ActionCall | If
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

# Spans are keyword-only and never take part in equality or repr: layout is not meaning.


@frozen
class Span:
    """A region of a source file; lines and columns are 1-based, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int


# The slots' own setters: the parser makes about sixteen spans per filter, and filling the
# slots directly costs a fifth less than attrs' generic frozen __init__ (same object).
_new = object.__new__
_set_file, _set_line, _set_col, _set_end_line, _set_end_col = (
    Span.__dict__[name].__set__ for name in ("file", "line", "col", "end_line", "end_col")
)


def make_span(file: str, line: int, col: int, end_line: int, end_col: int) -> Span:
    """``Span(file, line, col, end_line, end_col)``, faster (for the parser's hot path)."""
    span: Span = _new(Span)
    _set_file(span, file)
    _set_line(span, line)
    _set_col(span, col)
    _set_end_line(span, end_line)
    _set_end_col(span, end_col)
    return span


# --- literals -------------------------------------------------------------------------------


@frozen
class String:
    """A quoted string; ``value`` has the filter parser's escapes (reference 2.6) applied."""

    value: str
    raw: str = field(eq=False)  # the source text between the quotes, escapes unprocessed
    quote: str = field(eq=False)  # "'" or '"' as written
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Number:
    """An integer or decimal number as written (``100``, ``-7.5``)."""

    value: int | float
    raw: str = field(eq=False)
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Size:
    """A size such as ``10k`` or ``5M``; ``value`` in bytes (k = 1024, reference 2.7)."""

    value: int
    raw: str = field(eq=False)
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class ListLit:
    """A bracketed list of strings (URL category rules and actions only)."""

    items: tuple[String, ...]
    span: Span = field(eq=False, repr=False, kw_only=True)


Arg = String | Number | Size | ListLit
Comparator = Literal["==", "!=", "<", "<=", ">", ">="]


# --- conditions -----------------------------------------------------------------------------


@frozen
class RuleTest:
    """One rule: ``name``, ``name(args)``, optionally followed by ``comparator operand``.

    ``name`` is lower-cased as written (legacy ``_`` spellings kept; the checker resolves them
    against the signature table). ``args`` is None when no parentheses were written.
    """

    name: str
    args: tuple[Arg, ...] | None
    comparator: Comparator | None
    operand: String | Number | Size | None
    name_span: Span = field(eq=False, repr=False, kw_only=True)
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Not:
    """``not operand``."""

    operand: Condition
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class BoolOp:
    """``left and right`` / ``left or right``; chains group from the left (reference 3.3)."""

    op: Literal["and", "or"]
    left: Condition
    right: Condition
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Group:
    """A parenthesised condition, kept so that the formatter and the mixed and/or check see it."""

    inner: Condition
    span: Span = field(eq=False, repr=False, kw_only=True)


Condition = RuleTest | Not | BoolOp | Group


# --- statements -----------------------------------------------------------------------------


@frozen
class ActionCall:
    """``name(args);`` — ``name`` lower-cased as written."""

    name: str
    args: tuple[Arg, ...]
    name_span: Span = field(eq=False, repr=False, kw_only=True)
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class If:
    """``if condition { then } [else { else_ }]``."""

    condition: Condition
    then: tuple[Statement, ...]
    else_: tuple[Statement, ...] | None
    span: Span = field(eq=False, repr=False, kw_only=True)


Statement = ActionCall | If


# --- filters --------------------------------------------------------------------------------


@frozen
class ContentMeta:
    """The content-filter metadata of reference 9.1."""

    direction: Literal["incoming", "outgoing"]
    apply: Literal["all", "any"]


@frozen
class Filter:
    """One filter: ``name:`` (active) or ``name!`` (inactive) followed by one ``if`` statement.

    ``content`` is None for a message filter and holds the metadata for a content filter.
    """

    name: str
    active: bool
    body: If
    description: str | None = None
    content: ContentMeta | None = None
    name_span: Span = field(eq=False, repr=False, kw_only=True)
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Comment:
    """A ``#`` comment line (text without the ``#``), kept for the formatter only."""

    text: str
    span: Span = field(eq=False, repr=False, kw_only=True)


@frozen
class Script:
    """A whole filter file."""

    filters: tuple[Filter, ...]
    comments: tuple[Comment, ...] = field(default=(), eq=False)
    path: str = field(default="<string>", eq=False)
