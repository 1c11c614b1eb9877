"""The export/import text format for public keys.

    # filterlang public keys v1
    name: partner-alice
    -----BEGIN CERTIFICATE-----
    ...
    -----END CERTIFICATE-----

One "name:" line then one PEM block per key, entries in name order; blank lines and comment
lines between entries are ignored. Export then import then export is byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterable

from smime.keystore import ImportFileError, KeyRecord

HEADER = "# filterlang public keys v1"
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


def dump(keys: Iterable[KeyRecord]) -> str:
    parts = [HEADER + "\n"]
    for key in sorted(keys, key=lambda k: k.name):
        parts.append(f"\nname: {key.name}\n{key.pem}")
    return "".join(parts)


def parse(text: str) -> list[tuple[int, str, str]]:
    """(line of the name, name, PEM) for every entry; ImportFileError names the first bad line."""
    entries: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise ImportFileError(1, f"not a key export file: the first line must be {HEADER!r}")
    i = 1
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        if not line.startswith("name:"):
            raise ImportFileError(i + 1, f"expected 'name: ...', found {line[:40]!r}")
        name, name_line = line[5:].strip(), i + 1
        if not name:
            raise ImportFileError(name_line, "empty key name")
        if name in seen:
            raise ImportFileError(name_line, f"duplicate name {name!r} (first on line {seen[name]})")
        seen[name] = name_line
        i += 1
        if i >= len(lines) or lines[i].strip() != _BEGIN:
            raise ImportFileError(i + 1, f"expected {_BEGIN} after the name line")
        start = i
        body = [_BEGIN]
        i += 1
        while i < len(lines) and lines[i].strip() != _END:
            if lines[i].strip().startswith(("name:", "-----")):
                raise ImportFileError(i + 1, f"PEM block opened on line {start + 1} is not closed")
            body.append(lines[i].strip())
            i += 1
        if i >= len(lines):
            raise ImportFileError(start + 1, "truncated PEM block: no END CERTIFICATE line")
        body.append(_END)
        entries.append((name_line, name, "\n".join(body) + "\n"))
        i += 1
    return entries
