"""Differential test: `filterlang test -c` predicts exactly what `filterlang serve` does.

For a seeded corpus of generated gateways (message filters, mail policies with content
filters, sending profiles, keys; half of them scanning for spam against a stand-in Rspamd, each
policy with its spam_action, the prediction replaying Rspamd's answer as --services does) and
the example filters, every case is predicted offline, then
sent to a real `filterlang serve` subprocess that delivers to a real sink on loopback. Per
recipient disposition, header changes, number of copies and the delivered bytes (up to
Received lines, boundaries, signature bytes and encryption) must agree; a difference fails
with the predicted trace and serve's tracking for that case.

`FILTERLANG_DIFF_CASES=5000` runs the long version (default: 300 cases, one gateway per 50).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.differential.corpus import GatewaySpec, generate
from tests.differential.harness import Pki, Run

SEED = 20261207
CASES = int(os.environ.get("FILTERLANG_DIFF_CASES", "300"))
PER_GATEWAY = 50


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.make()


# Generated gateways, then one running the example filters (examples/filters).
SPECS = generate(SEED, max(1, -(-CASES // PER_GATEWAY)), PER_GATEWAY, examples=1)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{'examples' if s.examples else 'gateway'}{s.index}" for s in SPECS])
def test_offline_prediction_matches_serve(spec: GatewaySpec, pki: Pki, tmp_path: Path) -> None:
    run = Run(spec, tmp_path / "gw", pki)
    run.write()
    run.predict()
    run.run()
    reports = run.differences()
    assert not reports, "\n\n".join(reports[:5]) + (f"\n... and {len(reports) - 5} more"
                                                     if len(reports) > 5 else "")
