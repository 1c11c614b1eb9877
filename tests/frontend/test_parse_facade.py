"""The façade in `filterlang/__init__.py` and how `lint --config` hands names to the checker:
the checker is found lazily, so the parser works on its own."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import filterlang
from filterlang.ast import Script, Span
from filterlang.check import ResourceNames
from filterlang.diagnostics import Diagnostic, Severity
from runtime.commands.cli import main

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"
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
    module.ResourceNames = ResourceNames  # type: ignore[attr-defined]
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


def test_lint_config_names_reach_the_checker(
    fake_checker: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Golden output of `lint --config` is in test_cli_lint_config; this pins the hand-over.
    monkeypatch.delenv("FILTERLANG_CONFIG", raising=False)
    (tmp_path / "a.filter").write_text(GOOD)
    assert main(["lint", "--config", str(EXAMPLE_CONFIG), str(tmp_path)]) == 0
    assert fake_checker == [
        ResourceNames(
            quarantines={"Policy", "DLP", "SMIME_Failed", "SPF_Fail", "DMARC", "Macro", "Malware",
                         "Markings", "Spam"},
            profiles={"sign", "encrypt-or-bounce", "partner_sign_encrypt", "finance_sign_encrypt",
                      "encrypt_only"},
            encryption_profiles={"HighSecurity"},
            dictionaries={"MacroKeys"},
            listeners={"Outbound"},
            text_resources={"legal_disclaimer", "external_warning"},
            services=frozenset(),
            allow_unavailable={"spf", "dmarc", "reputation", "antispam", "antivirus"},
        )
    ]


def test_lint_without_config_checks_no_names(
    fake_checker: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FILTERLANG_CONFIG", raising=False)
    (tmp_path / "a.filter").write_text(GOOD)
    assert main(["lint", str(tmp_path)]) == 0
    assert fake_checker == [None]


def test_diagnostic_spans_are_one_based() -> None:
    _, diags = filterlang.parse("x: if signed { drop() }")
    assert diags[0].span == Span("<string>", 1, 21, 1, 22)
