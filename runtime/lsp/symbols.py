"""Document symbols: one per filter, with its range, so the editor's outline lists them."""

from __future__ import annotations

from lsprotocol import types as lsp

from filterlang import parse
from runtime.lsp.text import TextIndex


def symbols(index: TextIndex, path: str) -> list[lsp.DocumentSymbol]:
    """Every filter that parses (a broken one is left out until it parses again)."""
    script, _ = parse(index.text, path)
    if script is None:
        return []
    out = []
    for flt in script.filters:
        if flt.content is None:
            detail = "message filter"
        else:
            detail = f"content filter, {flt.content.direction}"
        if not flt.active:
            detail += ", inactive"
        out.append(
            lsp.DocumentSymbol(
                name=flt.name,
                detail=detail,
                kind=lsp.SymbolKind.Function,
                range=index.span_range(flt.span),
                selection_range=index.span_range(flt.name_span),
            )
        )
    return out
