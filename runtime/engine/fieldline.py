"""The one builder for header fields the gateway writes itself (Received, Return-Path, DSN and
notification headers, X-Filterlang-* stamps): no line break can come from data.

Values come from the outside world (envelope addresses, HELO names, remote servers' replies,
filter variables). A CR, LF or NUL in one of them would end the field early and let the rest
be read as header lines of the attacker's choosing (issue 13 item 1), so every control
character except TAB is turned into a space here. The only line breaks in the result are the
folds the caller asked for, by giving the value in parts.
"""

from __future__ import annotations

import re

# Every C0 control but TAB, DEL, the C1 controls and the Unicode line and paragraph
# separators: CR, LF and NUL among them, and whatever str.splitlines breaks at (NEL too), for
# the code that reads headers as text. A run becomes one space.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+")
# A field name (RFC 5322 3.6.8): printable ASCII except the colon.
_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_CHECKED: set[str] = set()
VALUE_LIMIT = 900  # characters of one part: a field line stays under RFC 5322's 998


def clean(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text` on one line: control characters (CR, LF, NUL ...) become spaces."""
    if text.isprintable():  # the usual case: nothing to replace (no control, no line break)
        return text[:limit]
    return _CONTROLS.sub(" ", text)[:limit]


def field_text(name: str, *parts: str) -> str:
    """`Name: part1` with each further part on a continuation line (CRLF TAB), no final CRLF.

    The name is ours, never data: a bad one is a programming error (ValueError)."""
    if name not in _CHECKED:  # a few dozen names in all, each checked once (per process)
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"not a header field name: {name!r}")
        _CHECKED.add(name)
    if len(parts) == 1:
        return f"{name}: {clean(parts[0])}"
    return f"{name}: " + "\r\n\t".join([clean(p) for p in parts])


def field(name: str, *parts: str) -> bytes:
    """`field_text` as a complete line: UTF-8 (an SMTPUTF8 address stays as sent), CRLF."""
    return (field_text(name, *parts) + "\r\n").encode("utf-8", "replace")
