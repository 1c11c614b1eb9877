"""Seed inputs, read at run time from the repository's examples and ``../shared/vectors``.

The third-party vectors are never copied into the repository: they are read where they lie,
and a target simply has fewer seeds when that folder is absent (a fresh clone without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VECTORS = ROOT.parent / "shared" / "vectors"
MAX_SEED = 256 * 1024  # larger files are left out: the fuzzer mutates small inputs best


def files(base: Path, *patterns: str) -> Iterator[bytes]:
    """The contents of the files under ``base`` matching any pattern, sorted by path."""
    if not base.is_dir():
        return
    found = sorted({p for pattern in patterns for p in base.rglob(pattern) if p.is_file()})
    for path in found:
        if path.stat().st_size <= MAX_SEED:
            yield path.read_bytes()


def vectors_present() -> bool:
    return VECTORS.is_dir()
