"""Check successive versions of one file, parsing and checking only the filters that changed.

An editor re-checks a file at every pause in typing; a 10,000-filter file takes over a second
to parse whole, but an edit touches one filter. The text is cut where filters start (the
points ``parse`` resynchronises at after an error), and each piece is parsed and checked on
its own. Results are kept by the piece's text: a piece that did not change costs a dictionary
lookup. A clean piece that only moved (lines added above it) is reused with its filter names
moved; a piece with diagnostics is checked again where it now is, since messages can name
lines (F113's "the block opened at line 7").

What spans pieces is done for the whole file every time, as ``check_source`` does it:
duplicate filter names (F208), the regex-engine pragma that applies to every filter, and the
cap on the number of diagnostics. A text with a byte-order mark or binary characters is
checked whole (F107 speaks of the file, not of a filter).

One difference from ``check_source`` is deliberate: when a filter is broken in a way that
moves a filter start (``name:`` itself mistyped), the piece before it holds both, and its
one syntax error is reported where ``parse`` would report it for that piece alone.
"""

from __future__ import annotations

import re

from attrs import frozen

from filterlang import check_source, pasted
from filterlang.ast import Script, Span
from filterlang.check import ResourceNames, check, duplicate_names
from filterlang.diagnostics import Diagnostic, capped
from filterlang.parse import filter_starts, parse_piece
from filterlang.regex import PRAGMA

# Comment lines, where the regex-engine pragma can be (a comment always starts its line).
_COMMENT_LINE = re.compile(r"^[ \t]*#.*$", re.MULTILINE)
# A '.' line (the CLI's end of input), as the grammar accepts it.
_CLI_END = re.compile(r"^\.[ \t\r]*$", re.MULTILINE)
# A byte-order mark or a control character: ``parse`` reports those for the whole file.
_WHOLE_FILE = re.compile(r"[\ufeff\x00-\x08\x0b\x0e-\x1f\x7f]")


@frozen
class _Piece:
    """What one piece yields when it starts after ``offset`` lines."""

    offset: int
    diags: tuple[Diagnostic, ...]
    names: tuple[tuple[str, Span], ...]

    def moved(self, offset: int) -> _Piece:
        """The same clean piece ``offset - self.offset`` lines further down."""
        delta = offset - self.offset
        names = tuple(
            (name, Span(s.file, s.line + delta, s.col, s.end_line + delta, s.end_col))
            for name, s in self.names
        )
        return _Piece(offset, (), names)


def _engine(text: str) -> str:
    for line in _COMMENT_LINE.finditer(text):
        found = PRAGMA.match(line.group())
        if found and found.group(1).lower() == "backtracking":
            return "backtracking"
    return "re2"


class IncrementalChecker:
    """``check_source`` for one file that is checked again and again as it is edited.

    Not thread-safe: one checker per document, called from one thread at a time.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._names: ResourceNames | None = None
        self._pieces: dict[tuple[str, bool, str], _Piece] = {}
        #: How many pieces the last ``check`` parsed (the rest came from the cache).
        self.parsed = 0

    def check(self, text: str, names: ResourceNames | None = None) -> list[Diagnostic]:
        """Every diagnostic of ``text``, as ``check_source(text, path, names=names)`` gives."""
        if names != self._names:
            self._pieces.clear()
            self._names = names
        self.parsed = 0
        # Pasted-text damage (F115) is repaired before parsing and '.' lines (N603) are noted
        # by ``parse`` for the whole text: such a text is checked whole, as it is rare.
        if _WHOLE_FILE.search(text) or pasted.has_damage(text) or _CLI_END.search(text):
            self._pieces.clear()
            return check_source(text, self.path, names=names)
        engine = _engine(text)
        starts = filter_starts(text)
        kept: dict[tuple[str, bool, str], _Piece] = {}
        out: list[Diagnostic] = []
        named: list[tuple[str, Span]] = []
        line = 0
        for i, start in enumerate(starts):
            last = i + 1 == len(starts)
            if i:
                line += text.count("\n", starts[i - 1], start)
            key = (text[start : len(text) if last else starts[i + 1]], last, engine)
            piece = kept.get(key) or self._pieces.get(key)
            if piece is None or (piece.offset != line and piece.diags):
                piece = self._check_piece(key[0], line, last, engine)
            elif piece.offset != line:
                piece = piece.moved(line)
            kept[key] = piece
            out += piece.diags
            named += piece.names
        self._pieces = kept
        out += duplicate_names(named)
        return capped(sorted(out, key=Diagnostic.sort_key))

    def _check_piece(self, text: str, offset: int, last: bool, engine: str) -> _Piece:
        self.parsed += 1
        filters, comments, diags = parse_piece(text, self.path, line_offset=offset, last=last)
        script = Script(tuple(filters), tuple(comments), self.path)
        found = check(script, names=self._names, regex_engine=engine)
        # F208 spans pieces: ``check`` runs it again over the whole file.
        diags += (d for d in found if d.code != "F208")
        return _Piece(offset, tuple(diags), tuple((f.name, f.name_span) for f in filters))
