"""Positions in one version of a document: the parser's (1-based lines and columns in code
points, lines ending at "\\n") and the client's (0-based, columns in the negotiated units,
UTF-16 unless the client chose otherwise)."""

from __future__ import annotations

from bisect import bisect_right

from lsprotocol import types as lsp
from pygls.workspace import PositionCodec

from filterlang.ast import Span


class TextIndex:
    """Offsets, lines and client positions of one text; built once per version."""

    def __init__(self, text: str, codec: PositionCodec) -> None:
        self.text = text
        self.codec = codec
        starts = [0]
        find = text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        self.starts = starts

    def line(self, index: int) -> str:
        """Line ``index`` (0-based) without its line break; "" past the end."""
        if not 0 <= index < len(self.starts):
            return ""
        end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[index] : end]

    def offset(self, position: lsp.Position) -> int:
        """The code-point offset of a client position (clamped into the text)."""
        if position.line >= len(self.starts):
            return len(self.text)
        line = self.line(max(position.line, 0))
        at = self.codec.position_from_client_units(
            [line], lsp.Position(0, max(position.character, 0))
        )
        return self.starts[max(position.line, 0)] + min(at.character, len(line))

    def line_col(self, offset: int) -> tuple[int, int]:
        """The 0-based line and code-point column of an offset."""
        line = bisect_right(self.starts, offset) - 1
        return line, offset - self.starts[line]

    def position(self, line: int, column: int) -> lsp.Position:
        """The client position of a 0-based line and code-point column."""
        if line >= len(self.starts):
            last = len(self.starts) - 1
            return lsp.Position(last, self.codec.client_num_units(self.line(last)))
        text = self.line(line)
        return lsp.Position(line, self.codec.client_num_units(text[: max(column, 0)]))

    def position_at(self, offset: int) -> lsp.Position:
        """The client position of a code-point offset."""
        return self.position(*self.line_col(offset))

    def range(self, start: int, end: int) -> lsp.Range:
        """The client range of offsets ``[start, end)``."""
        return lsp.Range(self.position_at(start), self.position_at(end))

    def span_range(self, span: Span) -> lsp.Range:
        """The client range of a parser span."""
        return lsp.Range(
            self.position(span.line - 1, span.col - 1),
            self.position(span.end_line - 1, span.end_col - 1),
        )

    def whole(self) -> lsp.Range:
        """The range of the whole text."""
        return self.range(0, len(self.text))
