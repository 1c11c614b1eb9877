"""What the cursor is on, read from the text around it: the file may be half typed and not
parse, so this is a small scan of the tokens of the current filter, not the syntax tree.

It answers: is the cursor on (or typing) a rule name, an action name, an action variable in a
string, or a string argument; and for an argument, which rule or action takes it, at which
position (or as the operand of a comparison).
"""

from __future__ import annotations

import re
from typing import Literal

from attrs import frozen

from filterlang.builtins import KEYWORDS

Kind = Literal["rule", "action", "variable", "argument", "name", "none"]

# How far back the scan starts at most: a filter is far shorter, and a 10 MB paste must not be
# tokenised from its start at every keystroke.
_WINDOW = 64 * 1024

_TOKENS = re.compile(
    r"""
    (?P<comment>^[ \t]*\#[^\n]*)
  | (?P<string>'(?:[^'\\\n]|\\.)*'?|"(?:[^"\\\n]|\\.)*"?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<number>-?[0-9][0-9.]*[A-Za-z]?)
  | (?P<cmp>==|!=|<=|>=|<|>|=)
  | (?P<punct>[(){}\[\],;:!])
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.MULTILINE,
)
# A line that starts a filter (as the parser cuts files), to start the scan there.
_FILTER_START = re.compile(r"^[ \t]*(?:content-filter[ \t]+)?[A-Za-z_][\w-]*[ \t]*(?::|!(?!=))",
                           re.MULTILINE | re.IGNORECASE)
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?$")
_RULE_BEFORE = frozenset({"if", "and", "or", "not", "("})
_ACTION_BEFORE = frozenset({"{", ";", "}"})


@frozen
class Cursor:
    """The construct at the cursor.

    ``start``-``end`` is the text the construct covers (a name, a variable name after ``$``, or
    a string's contents without its quotes) and ``prefix`` the part of it before the cursor.
    For an argument, ``owner`` is the rule or action and ``index`` its position; for the
    operand of a comparison, ``owner`` is the rule and ``index`` is -1.
    """

    kind: Kind
    start: int
    end: int
    prefix: str
    word: str
    owner: str | None = None
    index: int = 0
    quote: str = ""
    closed: bool = True


def _window_start(text: str, offset: int) -> int:
    low = max(0, offset - _WINDOW)
    start = low
    for m in _FILTER_START.finditer(text, low, offset):
        start = m.start()
    return start


def at(text: str, offset: int) -> Cursor:
    """The construct at code-point ``offset`` of ``text``."""
    offset = max(0, min(offset, len(text)))
    calls: list[tuple[str | None, int]] = []  # open parentheses: (rule or action, argument)
    depth = 0
    previous = ""  # the last significant token before the current one
    last_name: str | None = None  # the last rule name, for the operand after a comparator
    subject: str | None = None  # the rule a comparator compares
    for m in _TOKENS.finditer(text, _window_start(text, offset)):
        kind = m.lastgroup or "other"
        start, end, value = m.start(), m.end(), m.group()
        if start > offset or (start == offset and kind not in ("name", "string")):
            break
        if kind == "string" and start < offset and (offset < end or not _closed(value)):
            return _in_string(value, start, offset, calls, previous, subject)
        if kind == "name" and offset <= end:
            return Cursor(_name_kind(previous, depth, calls), start, end,
                          text[start:offset], value)
        if end > offset and kind in ("space", "comment", "other"):
            break
        if kind in ("space", "comment"):
            continue
        lowered = value.lower()
        if kind == "name":
            last_name = None if lowered in KEYWORDS else value
        elif value == "(":
            calls.append((last_name if previous == last_name else None, 0))
        elif value == ")" and calls:
            calls.pop()
        elif value == "," and calls:
            owner, index = calls[-1]
            calls[-1] = (owner, index + 1)
        elif value == "{":
            depth += 1
            calls.clear()
        elif value == "}":
            depth = max(0, depth - 1)
        elif kind == "cmp":
            subject = last_name
        previous = lowered if kind in ("name", "punct", "cmp") else kind
    return Cursor(_name_kind(previous, depth, calls), offset, offset, "", "")


def _closed(value: str) -> bool:
    return len(value) >= 2 and value[-1] == value[0] and not value.endswith("\\" + value[0])


def _name_kind(previous: str, depth: int, calls: list[tuple[str | None, int]]) -> Kind:
    if calls and calls[-1][0] is not None:
        return "none"  # an argument position: only strings, numbers, sizes and lists
    if previous in _RULE_BEFORE:
        return "rule"
    if depth > 0 and previous in _ACTION_BEFORE:
        return "action"
    if depth == 0 and previous in ("", "}"):
        return "name"
    return "none"


def _in_string(value: str, start: int, offset: int, calls: list[tuple[str | None, int]],
               previous: str, subject: str | None) -> Cursor:
    closed = _closed(value)
    body_end = start + len(value) - (1 if closed else 0)
    body = value[1 : len(value) - (1 if closed else 0)]
    before = value[1 : offset - start]
    variable = _VARIABLE.search(before)
    if variable is not None:
        name_start = start + 1 + variable.start() + 1
        tail = re.match(r"[A-Za-z0-9_]*", value[offset - start :])
        name_end = offset + (tail.end() if tail else 0)
        return Cursor("variable", name_start, name_end, variable.group(1) or "",
                      value[name_start - start : name_end - start])
    owner, index = (calls[-1] if calls else (None, 0))
    if previous in ("==", "!=", "<", "<=", ">", ">="):
        owner, index = subject, -1
    return Cursor("argument", start + 1, body_end, before, body, owner, index, value[0], closed)
