"""Shared by the dependency tests: a clear failure when a library's internals we rely on moved.

Each library whose private internals a fast path uses has a test module here. They check the
names, signatures and shapes the fast path reads, and the source of each library function the
fast path mirrors (a copy or a re-implementation): when that source changes, the copy must be
reviewed against it, and the recorded digest updated (with the version in pyproject.toml).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any


def source_digest(obj: Callable[..., Any] | type) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def changed(library: str, version: str, what: str, ours: str) -> str:
    return (f"{library} {version}: {what} changed since the version we tested; {ours} relies on "
            f"it. Review {ours} against the new code, then update the pin in pyproject.toml and "
            f"the record in this test.")
