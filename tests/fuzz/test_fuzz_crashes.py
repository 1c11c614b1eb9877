"""Every input the fuzz campaign found a crash with stays fixed: tests/fuzz/crashes/TARGET/*
runs through its target (fuzz/targets/TARGET.py), whose contract it once broke."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.harness import load

# (crashes/soak/ holds what fuzz/soak.py found, which is no target: test_fuzz_soak replays it.)
CRASHES = sorted(p for p in (Path(__file__).parent / "crashes").glob("*/*")
                 if p.parent.name != "soak")


@pytest.mark.parametrize("path", CRASHES, ids=[f"{p.parent.name}/{p.name}" for p in CRASHES])
def test_a_found_crash_stays_fixed(path: Path) -> None:
    load(path.parent.name).run_again(path.read_bytes())
