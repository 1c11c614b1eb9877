"""Completion: rule names where a condition goes, action names (with snippets for their
arguments) where an action goes, variables after ``$``, and configured names inside the string
arguments that take them."""

from __future__ import annotations

from lsprotocol import types as lsp

from filterlang import builtins as b
from runtime.lsp.cursor import Cursor
from runtime.lsp.settings import Config
from runtime.lsp.signatures import (
    RESOURCE_KINDS,
    action_doc,
    action_snippet,
    param_type,
    rule_doc,
    rule_snippet,
)
from runtime.lsp.text import TextIndex


def items(cursor: Cursor, config: Config | None, index: TextIndex, snippets: bool
          ) -> list[lsp.CompletionItem]:
    """The completion items at the cursor (the client filters them by what is typed)."""
    # Names contain '-', which editors do not count as part of a word: say what to replace.
    replace = index.range(cursor.start, cursor.end)
    if cursor.kind == "rule":
        return [_item(r.name, lsp.CompletionItemKind.Function, r.description, rule_doc(r),
                      rule_snippet(r), replace, snippets) for r in b.RULES]
    if cursor.kind == "action":
        return [_item(a.name, lsp.CompletionItemKind.Method, a.description, action_doc(a),
                      action_snippet(a), replace, snippets) for a in b.ACTIONS]
    if cursor.kind == "variable":
        return [
            lsp.CompletionItem(
                label=f"${name}", kind=lsp.CompletionItemKind.Variable, detail=text,
                filter_text=name, text_edit=lsp.TextEdit(replace, name),
            )
            for name, text in sorted(b.VARIABLES.items())
        ]
    if cursor.kind == "argument" and config is not None and config.names is not None:
        typ = param_type(cursor.owner, cursor.index)
        kind = RESOURCE_KINDS.get(typ) if typ is not None else None
        if kind is None:
            return []
        close = "" if cursor.closed else cursor.quote
        return [
            lsp.CompletionItem(
                label=name, kind=lsp.CompletionItemKind.Value,
                detail=f"{kind.replace('_', ' ')[:-1]} in {config.path.name}",
                text_edit=lsp.TextEdit(replace, name + close),
            )
            for name in sorted(getattr(config.names, kind))
        ]
    return []


def _item(name: str, kind: lsp.CompletionItemKind, detail: str, doc: str, snippet: str,
          replace: lsp.Range, snippets: bool) -> lsp.CompletionItem:
    return lsp.CompletionItem(
        label=name,
        kind=kind,
        detail=detail,
        documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, doc),
        text_edit=lsp.TextEdit(replace, snippet if snippets else name),
        insert_text_format=lsp.InsertTextFormat.Snippet if snippets else None,
    )
