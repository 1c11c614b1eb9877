"""The README's quick start works as written: every file its commands name is in the
repository, and the sample message shows what the example filter does (issue 15 item 19)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILTERLANG = Path(sys.executable).parent / "filterlang"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_example_path_the_readme_names_exists() -> None:
    named = set(re.findall(r"\bexamples/[\w./-]+\w", README))
    assert named, "the README names no example files"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_the_readme_says_how_to_reach_filterlang_and_bounds_make_bench() -> None:
    assert ".venv/bin/filterlang" in README and ". .venv/bin/activate" in README
    assert "make bench-full" in README
    makefile = (ROOT / "Makefile").read_text()
    assert "BENCH_QUICK ?= 1" in makefile and "bench-full:" in makefile


def test_the_everyday_test_command_runs_on_the_sample_message() -> None:
    proc = subprocess.run(
        [str(FILTERLANG), "test", "examples/filters/attachments-and-size.filter",
         "examples/messages/exe-attachment.eml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "strip_exe_by_name: matched" in proc.stdout
    assert "+ X-Attachments-Removed: setup.exe" in proc.stdout
