"""A short run of every fuzz harness: its seeds, then generated and mutated inputs.

The long campaign is ``make fuzz`` (see fuzz/README.md); this proves each harness still runs,
that its seeds pass (each seed is a real input that must be handled), and that a few hundred
inputs near them raise no crash and no memory blow-up. Where ../shared/vectors is absent the
targets fall back to the repository's own seeds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.corpus import vectors_present
from fuzz.harness import TARGETS, load, run_traced
from fuzz.run import with_hypothesis

ROOT = Path(__file__).resolve().parents[2]
SEEDS = 12  # seeds per target in the smoke (an even spread); the campaign takes them all
RUNS = 60  # generated inputs per target after the seeds


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_harness_runs_its_seeds_and_nearby_inputs(name: str) -> None:
    assert with_hypothesis(name, runs=SEEDS + RUNS, max_time=0, timeout=0, memory_every=0,
                           seed_limit=SEEDS, derandomize=True) == 0


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_small_inputs_stay_within_the_memory_limit(name: str) -> None:
    target = load(name)
    for data in (b"", b"\0" * 64, next(iter(target.seeds()), b"x")):
        run_traced(target, data[: target.max_len])


def test_every_target_has_seeds_without_the_vectors_too() -> None:
    # cms, smime_mime and keys have seeds only in the vectors; the others also in the repo.
    for name in sorted(TARGETS):
        if not vectors_present() and name in ("cms", "smime_mime"):
            continue
        assert next(iter(load(name).seeds()), None) is not None, name


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_make_fuzz_runs_a_target_under_atheris(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "config", "--runs", "200", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Done 200 runs" in done.stderr, done.stderr[-2000:]
    assert list((tmp_path / "config" / "corpus").iterdir()), "the corpus was not seeded"
