"""The filter front end: parse, check and compile any bytes as a filter file.

The contract (``filterlang lint``): every input gives a list of diagnostics, each with a
position inside the input, and a compiled program exactly when none is an error.
"""

from __future__ import annotations

from collections.abc import Iterator

import filterlang
from filterlang.diagnostics import Severity
from fuzz.corpus import EXAMPLES, VECTORS, files
from fuzz.harness import Target


def seeds() -> Iterator[bytes]:
    yield from files(EXAMPLES, "*.filter", "*.flt")
    yield from files(VECTORS / "asyncos-filters", "*.filter", "*.txt")


def run(data: bytes) -> None:
    diags = filterlang.check_bytes(data, "fuzz.filter")
    lines = data.count(b"\n") + 1
    for d in diags:
        assert d.span.file == "fuzz.filter", d
        assert 1 <= d.span.line <= lines + 1, (d, lines)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    program, compiled = filterlang.compile_source(text, "fuzz.filter")
    errors = any(d.severity is Severity.ERROR for d in compiled)
    assert (program is None) == errors, compiled


TARGET = Target("filters", run, seeds, instrument=("filterlang", "lark"))
