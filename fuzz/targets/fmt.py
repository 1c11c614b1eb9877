"""The formatter: for every input that parses, format is idempotent and keeps the meaning.

Meaning is the syntax tree, whose equality leaves out layout (spans); so the formatted text
must parse, without new diagnostics, to a tree equal to the original's, and formatting it again
must change nothing.
"""

from __future__ import annotations

from filterlang import format_source, parse
from fuzz.harness import Target
from fuzz.targets.filters import seeds


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
    assert [d.code for d in again_diags] == [d.code for d in diags], (diags, again_diags)
    twice, _ = format_source(once, "fuzz.filter")
    assert twice == once, (once, twice)


TARGET = Target("fmt", run, seeds, instrument=("filterlang", "lark"))
