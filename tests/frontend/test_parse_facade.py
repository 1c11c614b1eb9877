"""The façade in `filterlang/__init__.py` and `lint --config`: the checker and the config
loader live on other branches, so both are found lazily and their absence is tolerated."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import filterlang
from filterlang.ast import Script, Span
from filterlang.diagnostics import Diagnostic, Severity
from runtime.cli import main

GOOD = "mark:\n    if signed {\n        no-op();\n    }\n"


@pytest.fixture
def fake_checker(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []

    def check(script: Script, *, names: object = None) -> list[Diagnostic]:
        seen.append(names)
        first = script.filters[0]
        return [Diagnostic("W501", Severity.WARNING, "checked", first.name_span)]

    module = types.ModuleType("filterlang.check")
    module.check = check  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "filterlang.check", module)
    return seen


def test_check_source_runs_the_checker_with_names(fake_checker: list[object]) -> None:
    diags = filterlang.check_source(GOOD, "a.filter", names={"quarantines": ["Policy"]})
    assert [d.code for d in diags] == ["W501"]
    assert fake_checker == [{"quarantines": ["Policy"]}]


def test_check_source_merges_syntax_and_check_diagnostics_in_order(
    fake_checker: list[object],
) -> None:
    source = "bad:\n    if signed { drop() }\n\n" + GOOD
    diags = filterlang.check_source(source, "a.filter")
    assert [(d.code, d.span.line) for d in diags] == [("F112", 2), ("W501", 4)]


def test_compile_source_stops_at_errors() -> None:
    compiled, diags = filterlang.compile_source("x: if signed { drop() }")
    assert compiled is None
    assert [d.code for d in diags] == ["F112"]


def test_format_source_returns_canonical_text() -> None:
    text, diags = filterlang.format_source("mark: if SIGNED {no-op();}")
    assert diags == []
    assert text == GOOD


def test_lint_config_is_passed_to_the_checker(
    fake_checker: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = types.ModuleType("runtime.config")
    config.load_names = lambda path: {"from": path}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime.config", config)
    (tmp_path / "a.filter").write_text(GOOD)
    (tmp_path / "gw.toml").write_text("")
    assert main(["lint", "--config", str(tmp_path / "gw.toml"), str(tmp_path)]) == 0
    assert fake_checker == [{"from": str(tmp_path / "gw.toml")}]


def test_lint_unreadable_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def load_names(path: str) -> object:
        raise FileNotFoundError(2, "No such file or directory")

    config = types.ModuleType("runtime.config")
    config.load_names = load_names  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime.config", config)
    (tmp_path / "a.filter").write_text(GOOD)
    assert main(["lint", "--config", "nope.toml", str(tmp_path)]) == 2
    assert "cannot read nope.toml" in capsys.readouterr().err


def test_lint_config_without_loader_is_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "runtime.config", None)  # import fails
    (tmp_path / "a.filter").write_text(GOOD)
    status = main(["lint", "--config", "gw.toml", str(tmp_path)])
    assert status == 0
    assert "--config ignored" in capsys.readouterr().err


def test_diagnostic_spans_are_one_based() -> None:
    _, diags = filterlang.parse("x: if signed { drop() }")
    assert diags[0].span == Span("<string>", 1, 21, 1, 22)
