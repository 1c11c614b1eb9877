"""Regexes for filter patterns, run on RE2 so no message can make matching exponential.

The checker's ``filterlang/regex.py`` owns the dialect; until it is merged this adapter does the
two adjustments the runtime needs (reference 5.5): global inline flags are hoisted to the front,
and rules that are case-insensitive by definition get ``(?i)``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

_GLOBAL_FLAGS = re.compile(r"\(\?([imsx]+)\)")


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message names the construct."""


def _hoist(pattern: str) -> str:
    flags = "".join(dict.fromkeys("".join(_GLOBAL_FLAGS.findall(pattern))))
    if not flags:
        return pattern
    return f"(?{flags})" + _GLOBAL_FLAGS.sub("", pattern)


@functools.lru_cache(maxsize=4096)
def compile_text(pattern: str, *, ignore_case: bool = False, multiline: bool = False) -> Any:
    """Compile a text pattern (search semantics, ``.`` never matches a newline)."""
    src = _hoist(pattern)
    prefix = ("i" if ignore_case else "") + ("m" if multiline else "")
    if prefix:
        src = f"(?{prefix})" + src
    try:
        return re2.compile(src)
    except re2.error as exc:
        raise PatternError(f"pattern {pattern!r} is not RE2: {exc}") from None


@functools.lru_cache(maxsize=1024)
def compile_bytes(pattern: str) -> Any:
    """Compile a pattern for raw bytes; each character maps to one byte (reference 5.6)."""
    try:
        return re2.compile(_hoist(pattern).encode("latin-1", "replace"))
    except re2.error as exc:
        raise PatternError(f"pattern {pattern!r} is not RE2: {exc}") from None


def search(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    return compile_text(pattern, ignore_case=ignore_case).search(text) is not None


@functools.lru_cache(maxsize=4096)
def compile_utf8(pattern: str, *, multiline: bool = False) -> Any:
    """The text pattern compiled for UTF-8 bytes: scans of one part encode the text once."""
    src = _hoist(pattern)
    if multiline:
        src = "(?m)" + src
    try:
        return re2.compile(src.encode("utf-8"))
    except re2.error as exc:
        raise PatternError(f"pattern {pattern!r} is not RE2: {exc}") from None


def count_utf8(pattern: str, data: bytes, limit: int | None = None) -> tuple[int, list[str]]:
    """``count_lines`` over UTF-8 bytes (the per-part cached encoding of its text)."""
    rx = compile_utf8(pattern, multiline=True)
    found: list[str] = []
    for m in rx.finditer(data):
        s = m.group(0)
        if b"\n" in s:
            return count_lines(pattern, data.decode("utf-8", "replace"), limit)
        found.append(s.decode("utf-8", "replace"))
        if limit is not None and len(found) >= limit:
            break
    return len(found), found


def count_lines(pattern: str, text: str, limit: int | None = None) -> tuple[int, list[str]]:
    """Count matches line by line (reference 5.2: no multi-line matching); return the texts.

    Fast path: one pass over the whole text in multiline mode; only if a match spans a newline
    (possible with ``\\s`` or negated classes) the text is re-scanned line by line.
    """
    rx = compile_text(pattern, multiline=True)
    found: list[str] = []
    spans_newline = False
    for m in rx.finditer(text):
        s = m.group(0)
        if "\n" in s:
            spans_newline = True
            break
        found.append(s)
        if limit is not None and len(found) >= limit:
            return len(found), found
    if not spans_newline:
        return len(found), found
    found = []
    line_rx = compile_text(pattern)
    for line in text.splitlines():
        for m in line_rx.finditer(line):
            found.append(m.group(0))
            if limit is not None and len(found) >= limit:
                return len(found), found
    return len(found), found
