"""One message through the engine: the message context, the MIME walker and every rule.

The example filters (and the third-party AsyncOS filters, where present) are compiled once and
run over each input as a message, message filters and content filters alike, then the message
is rendered. Hostile bytes must never make a filter fail (a failing filter bypasses its stage)
nor an end-of-stage edit fail.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import filterlang
from filterlang.compile import CFilter
from fuzz.corpus import EXAMPLES, ROOT, VECTORS, files
from fuzz.harness import Target
from runtime.engine.context import Envelope, MessageContext
from runtime.engine.mimewalk import walk
from runtime.engine.run import run_filters

MESSAGES = ("*.eml", "*.message", "*.msg")


def seeds() -> Iterator[bytes]:
    yield from files(ROOT / "tests" / "runtime", *MESSAGES)
    yield from files(VECTORS, *MESSAGES)


@functools.cache
def programs() -> tuple[tuple[CFilter, ...], tuple[CFilter, ...]]:
    """(message filters, content filters) of every example that compiles here."""
    paths = sorted((EXAMPLES / "filters").glob("*.filter"))
    paths += sorted((VECTORS / "asyncos-filters").glob("*.filter")) if VECTORS.is_dir() else []
    compiled: list[CFilter] = []
    for path in paths:
        program, _ = filterlang.compile_file(Path(path))
        if program is not None:
            compiled.extend(program.filters)
    return (tuple(f for f in compiled if f.content is None),
            tuple(f for f in compiled if f.content is not None))


def run(data: bytes) -> None:
    messages, contents = programs()
    envelope = Envelope.simple("sender@example.com", ["rcpt@example.org"])
    for filters, content in ((messages, False), (contents, True)):
        ctx = MessageContext(data, envelope)
        result = run_filters(filters, ctx, content=content, trace=False)
        assert result.error is None, result.error
        # Plan errors name what the configuration lacks (a text resource, a dictionary) or a
        # failed end-of-stage edit; only the latter is the message's doing.
        assert not [e for e in result.plan.errors if "failed" in e], result.plan.errors
        ctx.as_bytes()
    ctx = MessageContext(data, envelope)
    walk(ctx.message, [])


TARGET = Target("message", run, seeds, instrument=("runtime", "email"))
