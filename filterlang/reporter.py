"""Render diagnostics for people (source line, caret underline, hint) or for tools (JSON).

Text form, one block per diagnostic::

    examples/filters/attachments.filter:12:44: error[F204]: unknown action 'quarantne'
      12 |   if attachment-filename == "(?i)\\.exe$" { quarantne("Policy"); }
         |                                            ^^^^^^^^^
      hint: did you mean 'quarantine'?

The underline copies every tab of the source line before the column, so it lines up in any
terminal whatever its tab width.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from filterlang.ast import Span
from filterlang.diagnostics import Diagnostic

JSON_KEYS = ("path", "line", "col", "end_line", "end_col", "severity", "code", "message", "hint")


def _excerpt(span: Span, lines: list[str]) -> list[str]:
    if not 1 <= span.line <= len(lines):
        return []
    text = lines[span.line - 1].rstrip("\r\n")
    number = str(span.line)
    col = min(max(span.col, 1), len(text) + 1)
    end = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, min(end, len(text) + 1) - col)
    pad = "".join("\t" if ch == "\t" else " " for ch in text[: col - 1])
    gutter = " " * len(number)
    return [f"  {number} | {text}", f"  {gutter} | {pad}{'^' * width}"]


def format_diagnostic(diag: Diagnostic, source: str | None = None) -> str:
    """One diagnostic as text; ``source`` is the file's text, for the excerpt."""
    # Lines end at "\n" only, as the parser counts them (splitlines would also split on
    # form feeds and Unicode separators inside strings).
    lines = source.split("\n") if source is not None else []
    span = diag.span
    out = [f"{span.file}:{span.line}:{span.col}: {diag.severity}[{diag.code}]: {diag.message}"]
    out += _excerpt(span, lines)
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    for note in diag.notes:
        where = note.span
        out.append(f"  {where.file}:{where.line}:{where.col}: note: {note.message}")
        if where.file == span.file:
            out += ["  " + line for line in _excerpt(where, lines)]
    return "\n".join(out)


def format_text(diags: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """All diagnostics as text blocks, each followed by a newline."""
    sources = sources or {}
    return "".join(format_diagnostic(d, sources.get(d.span.file)) + "\n" for d in diags)


def as_dict(diag: Diagnostic) -> dict[str, object]:
    """The JSON object for one diagnostic (keys in ``JSON_KEYS`` order)."""
    span = diag.span
    return {
        "path": span.file,
        "line": span.line,
        "col": span.col,
        "end_line": span.end_line,
        "end_col": span.end_col,
        "severity": str(diag.severity),
        "code": diag.code,
        "message": diag.message,
        "hint": diag.hint,
    }


def format_json(diags: Iterable[Diagnostic]) -> str:
    """All diagnostics as one JSON list."""
    return json.dumps([as_dict(d) for d in diags], indent=2, ensure_ascii=False) + "\n"
