"""The campaign's ledger (fuzz/campaign.py): a slice whose libFuzzer watchdog fired on wall
time, on an input that replays within the CPU limit, was stopped or starved, not hung: its
runs count and the target's count does not start again. A real crash does restart it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fuzz import campaign

REAL_RUN = subprocess.run  # the replay runs for real; only libFuzzer's slice is made up


def _libfuzzer(returncode: int, unit: Path) -> subprocess.CompletedProcess[str]:
    out = (f"==1== ERROR: libFuzzer: timeout after 61 seconds\n"
           f"artifact_prefix='{unit.parent}/'; Test unit written to {unit}\n"
           f"stat::number_of_executed_units: 1234\n")
    return subprocess.CompletedProcess([], returncode, "", out)


def test_a_watchdog_timeout_that_replays_quickly_is_an_interruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "smtp").mkdir()
    unit = tmp_path / "smtp" / "timeout-0123abcd"
    unit.write_bytes(b"EHLO a.example\r\n")
    monkeypatch.setattr(campaign.subprocess, "run",
                        lambda cmd, **kw: _libfuzzer(70, unit) if "fuzz.run" in cmd
                        else REAL_RUN(cmd, **kw))
    entry = campaign.one_slice("smtp", 1, tmp_path)
    assert entry["crashed"] is False and entry["runs"] == 1234
    assert "replays in" in str(entry["interrupted"])
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(e) + "\n" for e in (
        {"target": "smtp", "runs": 10, "crashed": False}, entry)))
    assert campaign.clean_runs(ledger)["smtp"] == 1244


def test_a_timeout_that_does_not_replay_cleanly_stays_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "smtp").mkdir()
    unit = tmp_path / "smtp" / "timeout-0123abcd"  # not written: the replay fails
    monkeypatch.setattr(campaign.subprocess, "run",
                        lambda cmd, **kw: _libfuzzer(70, unit) if "fuzz.run" in cmd
                        else REAL_RUN(cmd, **kw))
    entry = campaign.one_slice("smtp", 1, tmp_path)
    assert entry["crashed"] is True and "interrupted" not in entry
