"""The console script's dispatcher."""

from __future__ import annotations

import pytest

from runtime.commands.cli import main


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: filterlang" in capsys.readouterr().err
