"""DSN parameters per RFC 3461 (issue 13 item 14): NOTIFY decides who is told of what, ORCPT
comes back as Original-Recipient, and no parameter can add a header line."""

from __future__ import annotations

import pytest

from runtime.mta.dsn import RecipientStatus, build_dsn, notify_wants, original_recipient
from runtime.pipeline.envelope import Envelope

FAILED = "550 5.1.1 no such user"


def _dsn(rcpt_options: tuple[tuple[str, ...], ...], action: str = "failed") -> bytes | None:
    rcpts = tuple(f"r{i}@example.org" for i in range(len(rcpt_options)))
    env = Envelope("a@example.com", rcpts, rcpt_options=rcpt_options, queue_id="q1")
    return build_dsn(env, b"Subject: s\r\n\r\nbody\r\n",
                     [RecipientStatus(r, action, "5.1.1", FAILED) for r in rcpts],
                     reporting_mta="gw.example")


@pytest.mark.parametrize("options,action,wanted", [
    ((), "failed", True), ((), "delayed", False), (("NOTIFY=NEVER",), "failed", False),
    (("NOTIFY=SUCCESS",), "failed", False), (("NOTIFY=SUCCESS,FAILURE",), "failed", True),
    (("NOTIFY=DELAY",), "delayed", True), (("notify=delay,failure",), "failed", True),
    (("NOTIFY=FAILURE",), "delayed", False),
])
def test_notify_decides_what_a_recipient_is_told(options: tuple[str, ...], action: str,
                                                 wanted: bool) -> None:
    assert notify_wants(options, action) is wanted


def test_notify_never_for_every_recipient_means_no_dsn() -> None:
    assert _dsn((("NOTIFY=NEVER",), ("NOTIFY=SUCCESS",))) is None
    only = _dsn((("NOTIFY=NEVER",), ()))
    assert only is not None and b"r1@example.org" in only and b"r0@example.org" not in only


def test_orcpt_is_echoed_decoded_and_cannot_inject() -> None:
    assert original_recipient(("ORCPT=rfc822;bob+2Bx@example.org",)) == "rfc822; bob+x@example.org"
    dsn = _dsn((("ORCPT=rfc822;b@example.org+0D+0ABcc:+20evil@example.net",),))
    assert dsn is not None
    lines = dsn.split(b"\r\n")
    [orig] = [line for line in lines if line.startswith(b"Original-Recipient:")]
    assert orig == b"Original-Recipient: rfc822; b@example.org Bcc: evil@example.net"
    assert not any(line.startswith(b"Bcc:") for line in lines)
