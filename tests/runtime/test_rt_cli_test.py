"""``filterlang test``: text and JSON traces, -o, corpus summary, suites and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
FILTER = "big: if body-size > 10 { insert-header('X-Big', 'yes'); }\ndropper: if rcpt-to == '^drop@' { drop(); }\n"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "f.flt").write_text(FILTER)
    (tmp_path / "msgs").mkdir()
    (tmp_path / "msgs" / "a.eml").write_bytes(b"Subject: a\r\n\r\nhello there\r\n")
    (tmp_path / "msgs" / "b.eml").write_bytes(b"Subject: b\r\n\r\nx\r\n")
    return tmp_path


def test_json_trace_has_the_documented_keys(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["test", str(files / "f.flt"), str(files / "msgs" / "a.eml"), "--rcpt", "drop@x.example",
               "--rcpt", "ok@x.example", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {"message", "filters", "final", "recipients"} <= set(out)
    assert [f["name"] for f in out["filters"]] == ["big", "dropper"]
    assert out["filters"][0]["matched"] and out["filters"][0]["actions"] == ["insert-header('X-Big', 'yes')"]
    assert out["final"] == "drop()"
    assert out["recipients"] == {"drop@x.example": "drop", "ok@x.example": "drop"}


def test_corpus_writes_messages_and_prints_a_summary(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["test", str(files / "f.flt"), str(files / "msgs"), "-o", str(files / "out")])
    text = capsys.readouterr().out
    assert rc == 0 and "disposition" in text and "deliver" in text
    assert b"X-Big: yes" in (files / "out" / "a.eml").read_bytes()


def test_broken_filter_file_is_one_error_not_a_traceback(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "bad.flt").write_text("x: if (( { }")
    rc = main(["test", str(files / "bad.flt"), str(files / "msgs")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "bad.flt" in err


def test_suite_mismatch_exits_1_with_a_readable_diff(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "s.toml").write_text('filters = ["f.flt"]\n[[case]]\nname = "wrong"\nmessage = "msgs/a.eml"\n'
                                  'rcpt = ["drop@x"]\n[case.expect]\nfinal = "none"\n'
                                  'recipients = {"drop@x" = "deliver"}\nheaders_absent = ["X-Big"]\n')
    rc = main(["test", "--suite", str(files / "s.toml")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "final: expected none, got drop()" in out
    assert "recipient drop@x: expected deliver, got drop" in out
    assert "header X-Big: expected absent" in out


def test_bad_suite_file_is_one_clear_error(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "s.toml").write_text("filters = [\n")
    assert main(["test", "--suite", str(files / "s.toml")]) == 2
    assert "s.toml" in capsys.readouterr().err


def test_example_suites_pass(capsys: pytest.CaptureFixture[str]) -> None:
    suites = sorted((ROOT / "examples" / "suites").glob("*.toml"))
    assert suites
    assert main(["test", "--suite", *map(str, suites)]) == 0, capsys.readouterr().out


def test_checker_errors_refuse_to_run_with_lint_format(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "typo.flt").write_text("a: if subjct == 'x' { drop(); }\nb: if true { quarantine(); }\n")
    rc = main(["test", str(files / "typo.flt"), str(files / "msgs" / "a.eml")])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and "Traceback" not in cap.err
    # the same text `filterlang lint` prints: file:line:col: severity[code], excerpt, hint
    assert "typo.flt:1:7: error[F201]" in cap.err and "did you mean 'subject'?" in cap.err
    assert "typo.flt:2:14: error[" in cap.err and "nothing was run" in cap.err


def test_warnings_are_shown_and_the_filters_run(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "bt.flt").write_text("# filterlang: regex-engine=backtracking\n"
                                  "a: if subject == '(\\\\w)\\\\1|^a$' { tag-message('t'); }\n")
    rc = main(["test", str(files / "bt.flt"), str(files / "msgs" / "a.eml"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0 and "warning[W505]" in cap.err
    assert json.loads(cap.out)["filters"][0]["matched"] is True


def test_suite_with_a_broken_filter_file_is_one_clear_error(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "bad.flt").write_text("a: if body-contains('(a)\\\\1') { drop(); }\n")
    (files / "s.toml").write_text('filters = ["bad.flt"]\n[[case]]\nmessage = "msgs/a.eml"\n')
    assert main(["test", "--suite", str(files / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert "bad.flt:1:21: error[F302]: back-reference" in err and "Traceback" not in err


def test_suite_shows_lint_warnings_of_its_filters(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "bt.flt").write_text("# filterlang: regex-engine=backtracking\na: if true { no-op(); }\n")
    (files / "s.toml").write_text('filters = ["bt.flt"]\n[[case]]\nmessage = "msgs/a.eml"\n')
    assert main(["test", "--suite", str(files / "s.toml")]) == 0
    assert "warning[W505]" in capsys.readouterr().err
