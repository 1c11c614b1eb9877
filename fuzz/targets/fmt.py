"""The formatter: for every input that parses, format is idempotent and keeps the meaning.

Meaning is the syntax tree, whose equality leaves out layout (spans); so the formatted text
must parse, without new diagnostics (and without those `fmt` resolves), to a tree equal to the original's, and formatting it again
must change nothing.
"""

from __future__ import annotations

from filterlang import format_source, parse
from fuzz.harness import Target
from fuzz.targets.filters import seeds

# Diagnostics about layout that `fmt` removes by design: N603, the appliance's "." end-of-input
# line, which fmt drops (found by this harness when N603 came in).
RESOLVED_BY_FMT = frozenset({"N603"})


def run(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    once, diags = format_source(text, "fuzz.filter")
    if once is None:
        return
    original, _ = parse(text, "fuzz.filter")
    again, again_diags = parse(once, "fuzz.filter")
    assert again == original, (text, once)
    kept = [d.code for d in diags if d.code not in RESOLVED_BY_FMT]
    assert [d.code for d in again_diags] == kept, (diags, again_diags)
    twice, _ = format_source(once, "fuzz.filter")
    assert twice == once, (once, twice)


TARGET = Target("fmt", run, seeds, instrument=("filterlang", "lark"))
