"""The layout shows the architecture: every import between runtime's sub-packages points down.

commands -> mta -> pipeline -> engine -> (filterlang); config sits below them all, and the
language (`filterlang/`) and the crypto (`smime/`) know nothing of runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Which runtime sub-packages each part may import (itself always).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "engine": {"config"},
    "pipeline": {"engine", "config"},
    "mta": {"pipeline", "engine", "config"},
    "commands": {"mta", "pipeline", "engine", "config", "lsp"},
    # The language server: the front end, and the configuration filters are checked against.
    "lsp": {"config"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "runtime" and len(parts) > 1 else None


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_runtime_imports_point_down(part: str) -> None:
    wrong = []
    for path in sorted((ROOT / "runtime" / part).rglob("*.py")):
        for line, module in _imports(path):
            target = _part(module)
            if target and target != part and target not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", ["filterlang", "smime"])
def test_language_and_crypto_know_nothing_of_runtime(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in _imports(path)
        if module == "runtime" or module.startswith("runtime.")
    ]
    assert not wrong, "\n".join(wrong)


def test_runtime_top_level_holds_only_sub_packages() -> None:
    modules = sorted(p.name for p in (ROOT / "runtime").glob("*.py") if p.name != "__init__.py")
    assert modules == [], f"modules outside the sub-packages: {modules}"
