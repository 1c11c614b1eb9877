"""Formatting through the formatter `filterlang fmt` uses: the whole document, or the filters a
range touches (each formatted as `fmt` would format it in the whole file)."""

from __future__ import annotations

from lsprotocol import types as lsp

from filterlang import format_source
from filterlang.parse import filter_starts
from runtime.lsp.text import TextIndex


def document(index: TextIndex, path: str) -> list[lsp.TextEdit] | None:
    """One edit replacing the text with its canonical layout; None when it does not parse."""
    formatted, _ = format_source(index.text, path)
    if formatted is None:
        return None
    if formatted == index.text:
        return []
    return [lsp.TextEdit(index.whole(), formatted)]


def range_(index: TextIndex, path: str, chosen: lsp.Range) -> list[lsp.TextEdit] | None:
    """An edit for the filters that the range touches; None when they do not parse."""
    text = index.text
    begin, end = index.offset(chosen.start), index.offset(chosen.end)
    starts = [*filter_starts(text), len(text)]
    first = max(i for i, s in enumerate(starts[:-1]) if s <= begin)
    last = max(i for i, s in enumerate(starts[:-1]) if s <= max(begin, end - 1))
    lo, hi = starts[first], starts[last + 1]
    piece = text[lo:hi]
    formatted, _ = format_source(piece, path)
    if formatted is None:
        return None
    if hi < len(text) and formatted:
        # Inside the file, fmt puts one blank line before the next filter, unless a comment
        # sits directly above it (then the comment ends this piece and the blank line stays
        # wherever the author had one).
        ends_in_comment = piece.rstrip("\n").rsplit("\n", 1)[-1].lstrip().startswith("#")
        if not ends_in_comment or piece.endswith("\n\n"):
            formatted += "\n"
    if formatted == piece:
        return []
    return [lsp.TextEdit(index.range(lo, hi), formatted)]
