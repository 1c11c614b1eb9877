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

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import attrs
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


_T = TypeVar("_T", bound=attrs.AttrsInstance)


def slot_maker(cls: type[_T]) -> Callable[..., _T]:
    """A function building ``cls`` from every field in order (keyword-only ones included).

    ``maker(a, b, span=s)`` would be ``cls(a, b, span=s)``; ``slot_maker(cls)(a, b, s)`` gives
    the same object, filling the slots through their own setters. That costs about half of
    attrs' frozen ``__init__`` (which goes through ``object.__setattr__`` per field), and the
    parser and compiler make a few hundred thousand nodes for a large file. Only for frozen
    slotted classes whose ``__init__`` does nothing but store its arguments: no defaults
    taken, validators, converters, hooks or private aliases (checked here). What it assumes of
    attrs is checked by tests/dependencies/test_attrs_internals.py (attrs is pinned below 27):
    bench/compile.py at 10,000 filters takes 12% more CPU with the attrs constructors.
    """
    fields = attrs.fields(cls)
    plain = all(
        f.init and f.validator is None and f.converter is None and f.alias == f.name
        for f in fields
    )
    hooks = ("__attrs_pre_init__", "__attrs_post_init__")
    if not plain or any(hasattr(cls, hook) for hook in hooks) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} does more than store its fields on construction")
    names = [f.name for f in fields]
    # Generated like attrs' own __init__, so that each setter is a local of the closure.
    source = (
        f"def factory(new, cls, {', '.join(f'set_{n}' for n in names)}):\n"
        f"    def make({', '.join(names)}):\n"
        f"        obj = new(cls)\n"
        + "".join(f"        set_{n}(obj, {n})\n" for n in names)
        + "        return obj\n"
        "    return make\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<slot_maker {cls.__name__}>", "exec"), namespace)
    make: Callable[..., _T] = namespace["factory"](
        object.__new__, cls, *(cls.__dict__[n].__set__ for n in names)
    )
    return make


#: ``Span(file, line, col, end_line, end_col)``, faster: the parser makes about sixteen spans per
#: filter.
make_span: Callable[[str, int, int, int, int], Span] = slot_maker(Span)


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
    #: The ``else`` keyword, when there is one: the formatter keeps a comment that opens the
    #: else branch inside it.
    else_span: Span | None = field(default=None, eq=False, repr=False, kw_only=True)


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
