"""Filter files to what the runtime runs: parse -> check -> compile, as `filterlang lint` sees them.

A file with any error does not run: the loader refuses with the same text `filterlang lint`
prints. Warnings (e.g. W505, the backtracking-engine opt-in) do not stop it; they are returned so
the caller shows them (``filterlang test`` on stderr, the gateway in its log).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from filterlang import compile_file
from filterlang.compile import CFilter
from filterlang.diagnostics import Severity
from filterlang.reporter import format_diagnostic


class FilterLoadError(ValueError):
    """A filter file that cannot run; the message holds every error in lint format."""


@frozen
class Program:
    """The compiled filters of some files, in file order, and the warnings to show."""

    filters: tuple[CFilter, ...]
    warnings: tuple[str, ...] = ()

    @property
    def message_filters(self) -> tuple[CFilter, ...]:
        return tuple(f for f in self.filters if f.content is None)

    @property
    def content_filters(self) -> tuple[CFilter, ...]:
        return tuple(f for f in self.filters if f.content is not None)


def load_program(paths: Sequence[Path], *, names: Any = None) -> Program:
    """Compile every file; raise ``FilterLoadError`` with lint-format text on any error.

    ``names`` (``filterlang.check.ResourceNames``) lets the checker verify quarantines,
    profiles, dictionaries ... against a configuration.
    """
    filters: list[CFilter] = []
    warnings: list[str] = []
    errors: list[str] = []
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError as exc:
            errors.append(f"{p}: cannot read filter file: {exc.strerror}")
            continue
        text = data.decode("utf-8", "replace")  # for the excerpts; F107 reports bad bytes
        compiled, diags = compile_file(p, names=names)
        for d in diags:
            if d.severity is Severity.ERROR:
                errors.append(format_diagnostic(d, text))
            elif d.severity is Severity.WARNING:
                warnings.append(format_diagnostic(d, text))
        if compiled is not None:
            filters += compiled.filters
        elif not any(d.severity is Severity.ERROR for d in diags):
            errors.append(f"{p}: does not compile")
    if errors:
        raise FilterLoadError("\n".join(errors))
    return Program(tuple(filters), tuple(warnings))
