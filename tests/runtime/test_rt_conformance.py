"""Conformance corpus: each message of tests/runtime/conformance through filters.flt; the full
text trace and resulting message must equal the golden files (``--update-golden`` rewrites them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.engine.context import Connection, Envelope
from runtime.engine.loader import load_program
from runtime.pipeline.offline import simulate
from runtime.pipeline.trace import to_text

HERE = Path(__file__).parent / "conformance"
MESSAGES = sorted(HERE.glob("*.eml"))


@pytest.mark.parametrize("path", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_conformance(path: Path, request: pytest.FixtureRequest) -> None:
    filters = list(load_program([HERE / "filters.flt"]).filters)
    t = simulate(path.read_bytes(), Envelope.simple("a@example.com", ["r1@example.org", "r2@example.org"]),
                 filters=filters, connection=Connection(remote_ip="10.1.2.3"), name=path.name)
    got = to_text(t) + "\n"
    golden = path.with_suffix(".trace")
    result_golden = path.with_suffix(".out")
    if request.config.getoption("--update-golden"):
        golden.write_text(got, encoding="utf-8")
        result_golden.write_bytes(t.result)
    assert got == golden.read_text(encoding="utf-8")
    assert t.result == result_golden.read_bytes()
