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


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--update-golden` rewrites the golden `.expected` files (tests/frontend/golden)."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden .expected files instead of comparing against them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites golden files."""
    return bool(request.config.getoption("--update-golden"))
