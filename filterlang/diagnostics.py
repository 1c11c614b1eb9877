"""Diagnostics as data: one frozen object per problem; rendering lives in the reporter."""

from __future__ import annotations

from enum import StrEnum

from attrs import frozen

from filterlang.ast import Span


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
class Diagnostic:
    """One problem in a filter file, with a stable code (see ``filterlang.codes``)."""

    code: str
    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    notes: tuple[Related, ...] = ()

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order diagnostics deterministically: by file, position, then code."""
        return (self.span.file, self.span.line, self.span.col, self.code)
