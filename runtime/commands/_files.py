"""Shared by `lint` and `fmt`: turn PATH arguments into filter files, reading them safely."""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

SUFFIX = ".filter"


@frozen
class Source:
    """A filter file as read from disk; ``error`` says why it could not be read."""

    path: str
    data: bytes = b""
    error: str | None = None


def expand(paths: list[str]) -> list[str | tuple[str, str]]:
    """Each PATH as itself, or every `.filter` file below it for a directory.

    A path that does not exist comes back as ``(path, reason)``.
    """
    out: list[str | tuple[str, str]] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.rglob(f"*{SUFFIX}")) if p.is_file())
        elif path.exists():
            out.append(arg)
        else:
            out.append((arg, "no such file or directory"))
    return out


def read_all(paths: list[str]) -> list[Source]:
    """Read every file named by ``paths`` (see ``expand``)."""
    sources = []
    for item in expand(paths):
        if isinstance(item, tuple):
            sources.append(Source(item[0], error=item[1]))
            continue
        try:
            sources.append(Source(item, Path(item).read_bytes()))
        except OSError as exc:
            sources.append(Source(item, error=exc.strerror or str(exc)))
    return sources
