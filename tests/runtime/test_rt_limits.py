"""Issue 13 item 10: header unfolding is linear, and structure limits name what they refuse."""

from __future__ import annotations

import time

import pytest

from runtime.config.config import MailFlowPolicy
from runtime.engine.context import Envelope, MessageContext
from runtime.engine.limits import check_structure

DEFAULTS = MailFlowPolicy(name="default")
SMALL = MailFlowPolicy(name="small", max_header_bytes=4096, max_header_fields=20,
                       max_addresses_per_header=5, max_mime_parts=4, max_mime_depth=3)


def _folded(size: int) -> bytes:
    return b"Subject: x\r\nX-Folded: start\r\n" + b" w\r\n" * (size // 4) + b"\r\nbody\r\n"


def test_one_huge_folded_header_unfolds_in_linear_time() -> None:
    """5 MB of continuation lines in one field took 190 s (each line copied the value so
    far); linear work does it in well under a second. The deadline is generous (a loaded CI
    machine), yet a quadratic unfold would need minutes."""
    ctx = MessageContext(_folded(5 * 1024 * 1024), Envelope.simple("a@x", ["b@y"]))
    start = time.monotonic()
    value = ctx.header_values("X-Folded")
    assert time.monotonic() - start < 30
    assert value[0].startswith("start w w") and len(value[0]) > 2_000_000


def _mime(parts: int, depth: int = 1) -> bytes:
    out = b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    inner = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(depth):
        b = f"b{level}".encode()
        kids = b"".join(b"--" + b + b"\r\n" + inner + b"\r\n" for _ in range(parts if level == 0 else 1))
        inner = b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n" + kids + b"--" + b + b"--\r\n"
    return out + inner


@pytest.mark.parametrize(("data", "reply"), [
    (b"Subject: " + b"x" * 5000 + b"\r\n\r\nbody\r\n", "552 5.3.4 Message header block exceeds 4096 bytes (max_header_bytes)"),
    (b"".join(b"X-%d: v\r\n" % i for i in range(21)) + b"\r\nbody\r\n", "554 5.6.0 Message has more than 20 header fields (max_header_fields)"),
    (b"To: a@x, b@x, c@x,\r\n d@x, e@x, f@x\r\n\r\nbody\r\n", "554 5.6.0 Message header To lists more than 5 addresses (max_addresses_per_header)"),
    (_mime(5), "554 5.6.0 Message has more than 4 MIME parts (max_mime_parts)"),
    (_mime(1, depth=3), "554 5.6.0 Message nests MIME parts deeper than 3 levels (max_mime_depth)"),
], ids=["header-bytes", "header-fields", "addresses", "parts", "depth"])
def test_each_limit_is_named(data: bytes, reply: str) -> None:
    assert check_structure(data, SMALL) == reply
    assert check_structure(data, DEFAULTS) is None


def test_within_every_limit() -> None:
    assert check_structure(_mime(4, depth=1), SMALL) is None
    assert check_structure(_mime(1, depth=2), SMALL) is None
    assert check_structure(b"To: a@x, b@x, c@x, d@x, e@x\r\n\r\nbody\r\n", SMALL) is None


def test_the_checks_are_linear() -> None:
    """100,000 MIME parts and 50,000 fields (17.6 s and 15.7 s in the pipeline before) are
    refused after one pass each: generous deadline, as above."""
    many_parts = _mime(100_000)
    many_fields = b"".join(b"X-%d: v\r\n" % i for i in range(50_000)) + b"\r\nbody\r\n"
    start = time.monotonic()
    assert "max_mime_parts" in (check_structure(many_parts, DEFAULTS) or "")
    assert "max_header_fields" in (check_structure(many_fields, DEFAULTS) or "")
    assert time.monotonic() - start < 30


def test_boundaries_declared_across_a_search_window_edge_are_all_found() -> None:
    """The boundary search lower-cases the message a window at a time (no second copy of a
    large message); it finds what one search of the whole message finds, case kept."""
    from runtime.engine import limits

    body = (b"x" * (limits._WINDOW - 30) + b"\r\nContent-Type: multipart/mixed; BOUNDARY=\"AbC\"\r\n"
            + b"y\r\n" * 10 + b"Content-Type: multipart/alternative; boundary=q1\r\n")
    whole = {body[m.start(m.lastindex or 1) : m.end(m.lastindex or 1)]
             for m in limits._BOUNDARY.finditer(body.lower())}
    assert limits._declared_boundaries(body) == whole == {b"AbC", b"q1"}
