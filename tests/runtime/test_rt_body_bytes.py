"""Bodies as received: 8-bit text is scanned, and a body edit keeps the header's blank line."""

from __future__ import annotations

import pytest
from rt_helpers import matched, msg

from filterlang import compile_source
from runtime.engine.context import Connection, Envelope, MessageContext
from runtime.engine.run import run_filters


@pytest.mark.parametrize("headers", [
    "Subject: s\n",
    "Subject: s\nContent-Type: text/plain; charset=utf-8\n",
    "Subject: s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
    "Subject: s\nContent-Type: text/plain; charset=iso-8859-1\n",
    # Declared quoted-printable, sent with raw 8-bit bytes all the same (sloppy mailers do).
    "Subject: s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n",
])
def test_body_rules_read_8bit_bodies(headers: str) -> None:
    """8BITMIME mail: content rules scan it instead of failing the filter."""
    raw = msg(headers, "Grüße, the wire transfer is ready\n")
    assert matched("f: if body-contains('(?i)wire transfer') { log-entry('x'); }", raw)
    assert not matched("f: if body-contains('bitcoin') { log-entry('x'); }", raw)


def test_body_edit_keeps_one_blank_line_after_the_header() -> None:
    raw = msg("Subject: s\n", "line1\nline2\n")
    script, _ = compile_source("f: if true { edit-body-text('line1', 'X'); }\n", "<test>")
    assert script is not None
    ctx = MessageContext(raw, Envelope.simple("a@example.com", ["b@example.org"]), Connection())
    run_filters(script.filters, ctx)
    out = ctx.as_bytes()
    assert out.endswith(b"\r\n\r\nX\r\nline2\r\n") and b"\r\n\r\n\r\n" not in out
