"""The shipped example filters lint clean under --strict and compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from filterlang import compile_file
from runtime.commands.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"
FILES = sorted(EXAMPLES.glob("*.filter"))


def test_lint_strict_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--strict", str(EXAMPLES)]) == 0
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_examples_compile(path: Path) -> None:
    compiled, diags = compile_file(path)
    assert compiled is not None, diags


def test_there_are_enough_examples() -> None:
    count = 0
    for path in FILES:
        compiled, _ = compile_file(path)
        count += len(compiled.filters) if compiled is not None else 0
    assert count >= 15


def test_examples_are_in_canonical_layout(capsys: pytest.CaptureFixture[str]) -> None:
    # What we ship is what `filterlang fmt` writes, so `fmt --check` in a user's CI starts green.
    assert main(["fmt", "--check", str(EXAMPLES)]) == 0, capsys.readouterr().out


def test_examples_name_only_what_the_example_configuration_defines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Strict, but for W504: the example gateway runs no SPF, DMARC, reputation or scanners,
    # and says so in allow_unavailable, so their rules are warned about and nothing else is.
    config = EXAMPLES.parent / "gateway.toml"
    main(["lint", "--json", "--config", str(config), str(EXAMPLES)])
    found = json.loads(capsys.readouterr().out)
    assert [d for d in found if d["severity"] != "note" and d["code"] != "W504"] == [], found
    assert {d["message"].split("'")[1] for d in found if d["code"] == "W504"} >= {
        "spam-verdict", "dmarc-status"}


def test_every_example_file_has_a_suite_case() -> None:
    # At least 15 files (issue 15), each run by a case of some suite in examples/suites.
    import tomllib

    assert len(FILES) >= 15
    covered: set[Path] = set()
    for suite in (EXAMPLES.parent / "suites").glob("*.toml"):
        data = tomllib.loads(suite.read_text(encoding="utf-8"))
        if data.get("case"):
            covered |= {(suite.parent / f).resolve() for f in data["filters"]}
    missing = [p.name for p in FILES if p.resolve() not in covered]
    assert not missing, f"example filters without a suite case: {missing}"
