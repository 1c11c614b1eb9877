"""The lint diagnostics as the protocol carries them: the same codes, ranges, severities,
messages, hints (on a line of their own, as lint prints them) and related locations."""

from __future__ import annotations

from lsprotocol import types as lsp

from filterlang.diagnostics import Diagnostic, Severity
from runtime.lsp.settings import Problem
from runtime.lsp.text import TextIndex

SOURCE = "filterlang"
_SEVERITY = {
    Severity.ERROR: lsp.DiagnosticSeverity.Error,
    Severity.WARNING: lsp.DiagnosticSeverity.Warning,
    Severity.NOTE: lsp.DiagnosticSeverity.Information,
}


def convert(diag: Diagnostic, index: TextIndex, uri: str) -> lsp.Diagnostic:
    """One lint diagnostic of the document at ``uri`` (whose text ``index`` holds)."""
    message = diag.message if diag.hint is None else f"{diag.message}\nhint: {diag.hint}"
    related = [
        lsp.DiagnosticRelatedInformation(lsp.Location(uri, index.span_range(note.span)),
                                         note.message)
        for note in diag.notes
        if note.span.file == diag.span.file
    ]
    return lsp.Diagnostic(
        range=index.span_range(diag.span),
        message=message,
        severity=_SEVERITY[diag.severity],
        code=diag.code,
        source=SOURCE,
        related_information=related or None,
    )


def config_problem(problem: Problem, index: TextIndex) -> lsp.Diagnostic:
    """A mistake in the configuration file, shown on that file."""
    start = index.position(problem.line, problem.col)
    end = index.position(problem.line, len(index.line(problem.line)))
    if end.character <= start.character:
        end = lsp.Position(start.line, start.character + 1)
    return lsp.Diagnostic(
        range=lsp.Range(start, end),
        message=problem.message,
        severity=lsp.DiagnosticSeverity.Error,
        source=SOURCE,
    )
