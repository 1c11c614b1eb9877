"""Hover and go-to-definition: the signature table's entry for the name under the cursor, and
for a string that names a configured quarantine, profile, dictionary, listener or text
resource, where the configuration defines it."""

from __future__ import annotations

from attrs import frozen

from filterlang import builtins as b
from runtime.lsp.cursor import Cursor
from runtime.lsp.settings import Config
from runtime.lsp.signatures import (
    RESOURCE_KINDS,
    action_doc,
    param_type,
    rule_doc,
    variable_doc,
)
from runtime.lsp.toml_index import Place

_SINGULAR = {
    "quarantines": "quarantine",
    "profiles": "sending profile",
    "encryption_profiles": "encryption profile",
    "dictionaries": "dictionary",
    "listeners": "listener",
    "text_resources": "text resource",
}


@frozen
class Definition:
    """A configured name and where it is defined (``place`` None: defined, but not found)."""

    kind: str
    name: str
    place: Place | None


def resource(cursor: Cursor, config: Config | None) -> Definition | None:
    """The configured name a string argument refers to, if it takes one and is defined."""
    if cursor.kind != "argument" or config is None:
        return None
    typ = param_type(cursor.owner, cursor.index)
    kind = RESOURCE_KINDS.get(typ) if typ is not None else None
    if kind is None:
        return None
    place = config.places.get((kind, cursor.word))
    known = config.names is not None and cursor.word in getattr(config.names, kind)
    if place is None and not known:
        return None
    return Definition(kind, cursor.word, place)


def text(cursor: Cursor, config: Config | None) -> str | None:
    """The hover text (Markdown) for the construct at the cursor, or None."""
    if cursor.kind == "variable":
        return variable_doc(cursor.word)
    if cursor.kind == "argument":
        found = resource(cursor, config)
        if found is None or config is None:
            return None
        where = f"`{config.path.name}`"
        if found.place is not None:
            where += f", line {found.place.line + 1}"
        return f"{_SINGULAR[found.kind]} **{found.name}**: defined in {where}\n\n`{config.path}`"
    if not cursor.word:
        return None
    rule = b.lookup_rule(cursor.word)
    action = b.lookup_action(cursor.word)
    if cursor.kind == "action" and action is not None:
        return action_doc(action)
    if rule is not None:
        return rule_doc(rule)
    if action is not None:
        return action_doc(action)
    return None
