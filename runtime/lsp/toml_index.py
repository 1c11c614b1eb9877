"""Where `gateway.toml` defines each name that filters may use, for go-to-definition and hover.

The standard library's TOML reader keeps no positions, and the configuration is checked by
``runtime.config`` anyway; this only finds lines. It follows table headers and the keys under
them, for the shapes the configuration uses::

    [quarantines.Policy]        [profiles.sign]        [[listeners]]  name = "Outbound"
    [dictionaries]  Blocked = "blocked.txt"            [text_resources]  footer = "footer.txt"

and dotted keys (``quarantines.Spam.retention_days = 7``) as well.
"""

from __future__ import annotations

import re

from attrs import frozen

# One key part: bare, "basic" or 'literal'.
_PART = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*""")
_HEADER = re.compile(r"^\s*(\[\[?)(.*?)\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*=\s*(.*)$""")
_STRING_VALUE = re.compile(r"""^("((?:[^"\\]|\\.)*)"|'([^']*)')""")

# Table -> kind of name, for names that are the key right below the table.
_KEYED = {"quarantines": "quarantines", "profiles": "profiles", "dictionaries": "dictionaries",
          "text_resources": "text_resources", "encryption_profiles": "encryption_profiles"}


@frozen
class Place:
    """Where a name is defined: 0-based line and the code-point columns of the name."""

    line: int
    start: int
    end: int


def _parts(text: str, base: int) -> list[tuple[str, int, int]]:
    """The parts of a dotted key with the columns of each (``base`` is where ``text`` starts)."""
    out = []
    pos = 0
    while pos <= len(text):
        m = _PART.match(text, pos)
        if m is None:
            return []
        value = next(g for g in (m.group(1), m.group(2), m.group(3)) if g is not None)
        group = 1 if m.group(1) is not None else 2 if m.group(2) is not None else 3
        out.append((value, base + m.start(group), base + m.end(group)))
        pos = m.end()
        if pos >= len(text):
            break
        if text[pos] != ".":
            return []
        pos += 1
    return out


def index(text: str) -> dict[tuple[str, str], Place]:
    """(kind, name) -> where it is first defined; kinds are those of ``ResourceNames``."""
    found: dict[tuple[str, str], Place] = {}
    table: list[str] = []
    in_listener = False
    for number, line in enumerate(text.split("\n")):
        header = _HEADER.match(line)
        if header is not None and not line.lstrip().startswith("#"):
            parts = _parts(header.group(2), header.start(2))
            table = [p[0] for p in parts]
            in_listener = header.group(1) == "[[" and table == ["listeners"]
            if len(parts) >= 2 and table[0] in _KEYED:
                found.setdefault((_KEYED[table[0]], parts[1][0]), Place(number, *parts[1][1:]))
            continue
        key = _KEY.match(line)
        if key is None or line.lstrip().startswith("#"):
            continue
        parts = _parts(key.group(1), key.start(1))
        path = table + [p[0] for p in parts]
        if in_listener and [p[0] for p in parts] == ["name"]:
            value = _STRING_VALUE.match(key.group(2))
            if value is not None:
                name = value.group(2) if value.group(2) is not None else value.group(3)
                col = key.start(2) + 1
                found.setdefault(("listeners", name), Place(number, col, col + len(name)))
        elif len(path) >= 2 and path[0] in _KEYED:
            at = len(table)  # the index in ``path`` of the first part on this line
            if at <= 1:
                _name, start, end = parts[1 - at]
                found.setdefault((_KEYED[path[0]], path[1]), Place(number, start, end))
    return found
