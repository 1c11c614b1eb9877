"""Diagnostics as data: one frozen object per problem; rendering lives in the reporter."""

from __future__ import annotations

from enum import StrEnum

from attrs import frozen

from filterlang.ast import Span

# At most this many diagnostics per file: past it, more only bury the first ones (and a file
# of a million broken lines would take minutes to report).
MAX_DIAGNOSTICS = 200


class Severity(StrEnum):
    """How bad a diagnostic is; ``--strict`` turns warnings into errors."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@frozen
class Related:
    """A secondary location that explains a diagnostic (e.g. the first definition)."""

    message: str
    span: Span


@frozen
class Fix:
    """A repair that needs no judgement: replace the text of ``span`` with ``replacement``.

    Only diagnostics whose correction is certain carry one (a did-you-mean, a missing pair of
    quotes), so that an editor can offer it as a one-click action.
    """

    title: str
    span: Span
    replacement: str


@frozen
class Diagnostic:
    """One problem in a filter file, with a stable code (see ``filterlang.codes``)."""

    code: str
    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    notes: tuple[Related, ...] = ()
    fix: Fix | None = None

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order diagnostics deterministically: by file, position, then code."""
        return (self.span.file, self.span.line, self.span.col, self.code)


def capped(diags: list[Diagnostic]) -> list[Diagnostic]:
    """The first ``MAX_DIAGNOSTICS`` of sorted ``diags``, then one note (N602) for the rest."""
    if len(diags) <= MAX_DIAGNOSTICS:
        return diags
    rest = len(diags) - MAX_DIAGNOSTICS
    note = Diagnostic(
        "N602",
        Severity.NOTE,
        f"too many problems: {rest} more not shown (at most {MAX_DIAGNOSTICS} per file)",
        diags[MAX_DIAGNOSTICS].span,
        "fix the problems above and run lint again",
    )
    return [*diags[:MAX_DIAGNOSTICS], note]
