"""Pasted-text damage: typographic quotes, dashes and non-breaking spaces outside strings (F115).

Filters copied from a web page, a word processor or a PDF guide arrive with `‘…’` and `“…”` for
quotes, `–`, `—` or `−` for `-`, and U+00A0 where a space was. None of them means anything to
the language outside a string, so each is named with its ASCII replacement (F115) and the file
is parsed as if it had been replaced: one clear error per damaged spot instead of a confusing
"unexpected character" or "unquoted value", and the rest of the file is still checked.

Inside a string the characters are content (a pattern may well look for a curly quote) and are
left alone. A string opened with an ASCII quote that only closes with a typographic one on the
same line is the one exception: that closing mark is the damage. Every replacement is one
character for one, so the positions of the repaired text are those of the original.
"""

from __future__ import annotations

import unicodedata

from attrs import frozen

# The damaged character and what it stands for.
REPLACEMENTS: dict[str, str] = {
    "\u2018": "'",  # LEFT SINGLE QUOTATION MARK
    "\u2019": "'",  # RIGHT SINGLE QUOTATION MARK
    "\u201c": '"',  # LEFT DOUBLE QUOTATION MARK
    "\u201d": '"',  # RIGHT DOUBLE QUOTATION MARK
    "\u2013": "-",  # EN DASH
    "\u2014": "-",  # EM DASH
    "\u2212": "-",  # MINUS SIGN
    "\u00a0": " ",  # NO-BREAK SPACE
}
_QUOTES = {"'": "'\u2018\u2019", '"': '"\u201c\u201d'}
_KIND = {"'": "typographic quote", '"': "typographic quote", "-": "dash", " ": "non-breaking space"}


@frozen
class Damage:
    """One run of the same damaged character: where it starts (offset), how long, and what."""

    offset: int
    length: int
    char: str
    #: For a string opened with a typographic quote: where its typographic close is (-1: the
    #: close is already ASCII). The string is reported and repaired as one.
    close: int = -1

    @property
    def replacement(self) -> str:
        return REPLACEMENTS[self.char]

    def describe(self) -> str:
        """``typographic quote ‘ (U+2018 LEFT SINGLE QUOTATION MARK)``, for the message."""
        name = unicodedata.name(self.char, "")
        shown = "" if self.char == "\u00a0" else f" {self.char}"
        return f"{_KIND[self.replacement]}{shown} (U+{ord(self.char):04X} {name})"


def has_damage(text: str) -> bool:
    """Whether any of the characters appears at all (the cheap test for every file)."""
    return any(c in text for c in REPLACEMENTS)


def _close(text: str, start: int, closers: str) -> int:
    """Where the string whose body starts at ``start`` closes (a ``closers`` character), or -1.

    Backslash escapes as in reference 2.6; a string never spans lines.
    """
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "\n\r":
            return -1
        if c in closers:
            return i
        i += 1
    return -1


def find(text: str) -> list[Damage]:
    """Every damaged spot outside strings and comments, in order."""
    out: list[Damage] = []
    i, n = 0, len(text)

    def add(at: int) -> None:
        last = out[-1] if out else None
        if last is not None and last.char == text[at] and last.offset + last.length == at:
            out[-1] = Damage(last.offset, last.length + 1, last.char)
        else:
            out.append(Damage(at, 1, text[at]))

    while i < n:
        c = text[i]
        if c == "#":
            eol = text.find("\n", i)
            i = n if eol < 0 else eol
        elif c in "'\"":
            end = _close(text, i + 1, c)
            if end >= 0:
                i = end + 1
                continue
            # Unterminated on its line: a typographic mark of the same kind is the real close.
            eol = text.find("\n", i)
            line_end = n if eol < 0 else eol
            typographic = _QUOTES[c][1:]
            mark = max(text.rfind(q, i + 1, line_end) for q in typographic)
            if mark < 0:
                i += 1
                continue
            add(mark)
            i = mark + 1
        elif c in REPLACEMENTS:
            ascii_quote = REPLACEMENTS[c]
            if ascii_quote not in _QUOTES:
                add(i)
                i += 1
                continue
            # A typographic quote opens a string: its body is content, its close is damage. A
            # lone one (no close on the line) is left to the parser, which explains it (F115).
            end = _close(text, i + 1, _QUOTES[ascii_quote])
            if end < 0:
                i += 1
                continue
            out.append(Damage(i, 1, c, end if text[end] != ascii_quote else -1))
            i = end + 1
        else:
            i += 1
    return out


def repair(text: str, damage: list[Damage]) -> str:
    """``text`` with every damaged spot replaced by its ASCII character (same length)."""
    if not damage:
        return text
    chars = list(text)
    for d in damage:
        for at in range(d.offset, d.offset + d.length):
            chars[at] = d.replacement
        if d.close >= 0:
            chars[d.close] = d.replacement
    return "".join(chars)
