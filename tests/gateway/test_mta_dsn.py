"""DSN parameters per RFC 3461 (issue 13 item 14): NOTIFY decides who is told of what, ORCPT
comes back as Original-Recipient, and no parameter can add a header line."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.mta.dsn import RecipientStatus, build_dsn, notify_wants, original_recipient
from runtime.pipeline.envelope import Envelope

from .served import Served, Sink, relay_config, send, wait_until

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


GATEWAY = relay_config(delivery="retry_schedule = [1]\ndelay_notice_after = 2")


def test_notify_and_orcpt_through_serve(tmp_path: Path) -> None:
    answers = {"bob@example.org": "451 4.2.1 mailbox busy",
               "carol@example.org": "550 5.1.1 no such user",
               "dave@example.org": "451 4.2.1 mailbox busy"}
    tried: list[str] = []

    def answer(rcpt: str) -> str:
        tried.append(rcpt)
        return answers.get(rcpt, "250 2.1.5 OK")

    msg = b"Subject: s\r\n\r\nbody\r\n"
    with Sink(answer) as sink, Served(tmp_path, GATEWAY, sink) as gw:
        assert send(gw.port, "a1@example.com", ["bob@example.org"], msg,
                    "NOTIFY=DELAY,FAILURE ORCPT=rfc822;Bob+2Bsales@Example.org")[-1][:3] == "250"
        assert send(gw.port, "a2@example.com", ["carol@example.org"], msg,
                    "NOTIFY=NEVER")[-1][:3] == "250"
        assert send(gw.port, "a3@example.com", ["dave@example.org"], msg)[-1][:3] == "250"
        [notice] = wait_until("bob's delay notice", lambda: sink.to("a1@example.com"))
        # Several attempts later there is still exactly one notice, for bob only.
        wait_until("more attempts", lambda: tried.count("bob@example.org") >= 4 and tried.count("dave@example.org") >= 4)
        assert len(sink.to("a1@example.com")) == 1 and sink.to("a3@example.com") == []
        answers["bob@example.org"] = "550 5.1.1 gone now"
        wait_until("bob's failure notice", lambda: len(sink.to("a1@example.com")) == 2)
    assert b"Action: delayed" in notice.data and b"Status: 4.2.1" in notice.data
    assert b"Original-Recipient: rfc822; Bob+sales@Example.org" in notice.data
    failure = sink.to("a1@example.com")[1]
    assert b"Action: failed" in failure.data
    assert b"Original-Recipient: rfc822; Bob+sales@Example.org" in failure.data
    assert sink.to("a2@example.com") == []  # NOTIFY=NEVER: carol's failure is not reported
