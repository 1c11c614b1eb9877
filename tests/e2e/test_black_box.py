"""The scenarios stay black-box: they drive the shipped `filterlang` command and real peers,
never the product's modules, so a scenario cannot pass on a code path `serve` does not run
(issue 12: the old end-to-end tests drove a queue runner `serve` never used)."""

from __future__ import annotations

import ast
from pathlib import Path

PRODUCT = ("runtime", "smime", "filterlang")


def _scenario_files() -> list[Path]:
    """The harness, its fixtures and every test module built on the harness."""
    here = Path(__file__).parent
    return [p for p in sorted(here.glob("*.py"))
            if p.name in ("harness.py", "conftest.py") or "from .harness import" in p.read_text()]


def test_no_scenario_imports_the_product() -> None:
    wrong = []
    files = _scenario_files()
    assert len(files) > 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            wrong += [f"{path.name}:{node.lineno}: imports {n}" for n in names
                      if n.split(".")[0] in PRODUCT]
    assert not wrong, "\n".join(wrong)
