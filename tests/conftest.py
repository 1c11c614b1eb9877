"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The third-party S/MIME vectors beside the checkout; skip cleanly where absent."""
    if not VECTORS.is_dir():
        pytest.skip(f"test vectors not found at {VECTORS} (they live in ../shared/vectors)")
    return VECTORS
