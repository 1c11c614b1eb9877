"""`filterlang lint` and `filterlang fmt` through `runtime.commands.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.commands.cli import main

GOOD = "mark_signed:\n    if signed {\n        insert-header('X-Signed', 'True');\n    }\n"
BAD = "mark_signed:\n    if signed {\n        insert-header('X-Signed', 'True')\n    }\n"
UGLY = 'mark_signed: IF signed { insert-header("X-Signed", "True"); }\n'


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "good.filter").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.filter").write_text(BAD)
    (tmp_path / "notes.txt").write_text("not a filter")
    return tmp_path


def test_lint_clean_file_exits_0(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(files / "good.filter")]) == 0
    assert capsys.readouterr().out == ""


def test_lint_error_exits_1_and_reports_location(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = files / "sub" / "bad.filter"
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:3:41: error[F112]: missing ';' after an action\n")
    assert "hint: end every action call with ';'" in out


def test_lint_directory_lints_every_filter_file(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", str(files)]) == 1
    captured = capsys.readouterr()
    assert "bad.filter:3:41" in captured.out
    assert "notes.txt" not in captured.out
    assert "in 2 files" in captured.err


def test_lint_json(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--json", str(files)]) == 1
    (obj,) = json.loads(capsys.readouterr().out)
    assert (obj["code"], obj["line"], obj["col"], obj["severity"]) == ("F112", 3, 41, "error")
    assert obj["path"].endswith("bad.filter")


def test_lint_missing_file_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(files / "good.filter"), str(files / "nope.filter")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_lint_without_paths_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lint"])
    assert exc.value.code == 2


def test_lint_binary_file_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.filter"
    path.write_bytes(bytes(range(256)) * 8)
    assert main(["lint", str(path)]) == 1
    assert "error[F107]" in capsys.readouterr().out


def test_lint_strict_turns_warnings_into_failure(
    monkeypatch: pytest.MonkeyPatch, files: Path
) -> None:
    from filterlang.ast import Span
    from filterlang.diagnostics import Diagnostic, Severity
    from runtime.commands import lint

    warning = Diagnostic("W501", Severity.WARNING, "mixed", Span("x", 1, 1, 1, 2))
    monkeypatch.setattr(lint, "check_bytes", lambda *a, **k: [warning])
    path = str(files / "good.filter")
    assert main(["lint", path]) == 0
    assert main(["lint", "--strict", path]) == 1


def test_fmt_rewrites_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.filter"
    path.write_text(UGLY)
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == GOOD
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == GOOD


def test_fmt_check_names_files_that_would_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ugly.filter").write_text(UGLY)
    (tmp_path / "good.filter").write_text(GOOD)
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out == f"would reformat {tmp_path / 'ugly.filter'}\n"
    assert (tmp_path / "ugly.filter").read_text() == UGLY


def test_fmt_check_clean_exits_0(tmp_path: Path) -> None:
    (tmp_path / "good.filter").write_text(GOOD)
    assert main(["fmt", "--check", str(tmp_path)]) == 0


def test_fmt_leaves_broken_files_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.filter"
    path.write_text(BAD)
    assert main(["fmt", str(path)]) == 1
    assert path.read_text() == BAD
    assert "error[F112]" in capsys.readouterr().err


def test_fmt_missing_file_exits_2(tmp_path: Path) -> None:
    assert main(["fmt", str(tmp_path / "nope.filter")]) == 2


PASTED = (
    "mark_signed:\n    if signed {\n"
    "\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0insert\u2013header(\u201cX-Signed\u201d, 'it\u2019s \u201cok\u201d');\n"
    "    }\n.\n"
)


def test_fmt_fix_repairs_pasted_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pasted.filter"
    path.write_text(PASTED, encoding="utf-8")
    # Without --fix the damage is reported and the file left alone.
    assert main(["fmt", str(path)]) == 1
    assert path.read_text(encoding="utf-8") == PASTED
    assert "error[F115]" in capsys.readouterr().err
    # With it, the ASCII characters replace the typographic ones outside the string; the
    # string's own content and the '.' line's removal follow the usual layout.
    assert main(["fmt", "--fix", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == (
        "mark_signed:\n    if signed {\n        insert-header('X-Signed', 'it\u2019s \u201cok\u201d');\n    }\n"
    )
    assert main(["lint", str(path)]) == 0


def test_fmt_fix_still_refuses_other_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.filter"
    path.write_text(BAD.replace("'X-Signed'", "\u2018X-Signed\u2019"), encoding="utf-8")
    assert main(["fmt", "--fix", str(path)]) == 1
