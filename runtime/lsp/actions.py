"""Code actions: the fix a diagnostic carries (a did-you-mean, quotes added or straightened),
as a one-click quick fix."""

from __future__ import annotations

from lsprotocol import types as lsp

from filterlang.diagnostics import Diagnostic
from runtime.lsp.diagnostics import convert
from runtime.lsp.text import TextIndex


def _overlaps(a: lsp.Range, b: lsp.Range) -> bool:
    def key(p: lsp.Position) -> tuple[int, int]:
        return p.line, p.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


def quick_fixes(diags: list[Diagnostic], index: TextIndex, uri: str, chosen: lsp.Range
                ) -> list[lsp.CodeAction]:
    """A quick fix for every diagnostic in ``chosen`` that carries a fix."""
    out = []
    for diag in diags:
        fix = diag.fix
        if fix is None:
            continue
        shown = convert(diag, index, uri)
        if not _overlaps(shown.range, chosen):
            continue
        edit = lsp.TextEdit(index.span_range(fix.span), fix.replacement)
        out.append(
            lsp.CodeAction(
                title=fix.title,
                kind=lsp.CodeActionKind.QuickFix,
                diagnostics=[shown],
                is_preferred=True,
                edit=lsp.WorkspaceEdit(changes={uri: [edit]}),
            )
        )
    return out
