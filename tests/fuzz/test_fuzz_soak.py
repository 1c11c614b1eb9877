"""The pipeline soak (fuzz/soak.py) in short: a few hundred variants of the partner's signed
and encrypted mail (and the client corpus, where ../shared/vectors is at hand) through the
stages `serve` builds, none escaping the pipeline and none verified with changed content; and
its content check does catch a verified message whose content is not what was signed. The
inputs it found defects with (tests/fuzz/crashes/soak/) pass the pipeline."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import soak

KEPT = Path(__file__).parent / "crashes" / "soak"  # what the soak found, replayed here


@pytest.fixture(scope="module")
def gateway() -> Iterator[soak.Gateway]:
    with tempfile.TemporaryDirectory(prefix="filterlang-soak-") as tmp:
        gw = soak.Gateway(Path(tmp))
        try:
            yield gw
        finally:
            gw.close()


def test_hostile_variants_neither_escape_the_pipeline_nor_verify_changed(
        gateway: soak.Gateway, tmp_path: Path) -> None:
    s = soak.Soak(gateway, seed=2026, out=tmp_path)
    for _ in range(400):
        s.one()
    assert not s.failures, s.failures


def test_the_content_check_catches_a_verified_message_that_changed(
        gateway: soak.Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = soak.Soak(gateway, seed=1, out=tmp_path)
    s.expected = [b"what the partner did not sign\r\n"] * len(s.expected)
    monkeypatch.setattr(soak, "mutate", lambda data, rnd: data)  # the signature holds
    s.rnd = random.Random(0)
    s.seeds = s.partner[:1]
    s.one()
    assert list(s.failures) == [("verified-but-changed",)]
    assert (tmp_path / "verified-but-changed.eml").read_bytes() == s.partner[0]


@pytest.mark.parametrize("found", sorted(KEPT.glob("*.eml")), ids=lambda p: p.stem)
def test_what_the_soak_found_passes_the_pipeline(gateway: soak.Gateway, found: Path,
                                                 tmp_path: Path) -> None:
    s = soak.Soak(gateway, seed=1, out=tmp_path)
    data = found.read_bytes()
    s._inbound(data, recording=False)  # as serve runs the stages
    s._inbound(data, recording=True)  # as `filterlang test -c` runs them
    s._outbound(data)
