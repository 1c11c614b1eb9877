"""Patterns run on RE2: a pathological pattern against a 1 MB body stays linear (issue 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rt_helpers import matched, mime, msg, run

from runtime.engine import rx
from runtime.engine.loader import FilterLoadError, load_program


def test_catastrophic_pattern_on_one_megabyte_body_completes() -> None:
    body = ("a" * 1000 + "\n") * 1000  # 1 MB of lines that almost match
    t = run("f: if body-contains('(a+)+$b') or body-contains('(a|aa)*c') { no-op(); }", msg(body=body))
    tr = t.message_filters.filters[0]
    assert tr.error is None and tr.matched is False
    assert all("0 match" in r.note for r in tr.rules)


def test_backreferences_are_not_re2_and_refuse_to_run(tmp_path: Path) -> None:
    f = tmp_path / "bad.flt"
    f.write_text("f: if subject == '(a)\\\\1' { drop(); }\n")
    with pytest.raises(FilterLoadError, match=r"error\[F302\]: back-reference"):
        load_program([f])


def test_inline_flag_in_the_middle_is_hoisted() -> None:
    assert matched("f: if subject == 'X (?i)ECHO OFF' { no-op(); }", msg("Subject: x echo off\n"))


def test_binary_patterns_match_bytes() -> None:
    att = ("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
           "Content-Disposition: attachment; filename=a.bin", "AE1a\n")  # b"\x00MZ"
    assert matched("f: if attachment-binary-contains('\\\\x4d\\\\x5a') { no-op(); }", mime(att))


BACKTRACK = "# filterlang: regex-engine=backtracking\n"


def test_backtracking_opt_in_is_a_warning_and_runs(tmp_path: Path) -> None:
    f = tmp_path / "bt.flt"
    f.write_text(BACKTRACK + "f: if subject == '(\\\\w)\\\\1' { tag-message('double'); }\n")
    program = load_program([f])
    assert any("W505" in w for w in program.warnings)
    assert rx.engine_of(program.filters[0].conditions[0].operand) == "backtracking"  # type: ignore[union-attr]


def test_backtracking_pattern_is_stopped_by_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rx, "BACKTRACKING_BUDGET", 0.05)
    src = BACKTRACK + "f: if body-contains('^(a+)+$') { no-op(); }\ng: if true { tag-message('after'); }"
    t = run(src, msg(body="a" * 40 + "b\n"))
    first = t.message_filters.filters[0]
    assert first.error is not None and "time budget" in first.error
    assert t.recipients == {"rcpt@example.com": "deliver"}  # the message goes on (4.7)
