"""Envelope header injection (issue 13 item 1): no CR, LF or NUL from a command reaches a
header the gateway writes, and every header it writes comes from one builder."""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

import pytest

from runtime.engine.fieldline import field, field_text

from .served import Served, Sink, dialogue, relay_config, send, wait_until

GATEWAY = relay_config(delivery="retry_schedule = [1]")

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def test_cr_and_nul_in_command_arguments_are_refused_through_serve(tmp_path: Path) -> None:
    with Sink() as sink, Served(tmp_path, GATEWAY, sink) as gw:
        replies = dialogue(gw.port, [
            b"EHLO client.example",
            b"MAIL FROM:<a@example.com>",
            b"RCPT TO:<b@example.org\rBcc: victim@example.net>",
            b"RCPT TO:<b@example.org>\r",
            b"RCPT TO:<c\0@example.org>",
            b"MAIL FROM:<x\0@example.com>",
            b"EHLO evil\rX-Injected: 1",
            b"QUIT",
        ])
        assert [r[:9] for r in replies[3:8]] == ["501 5.5.2"] * 5, replies
        # The session is still usable, and a clean message goes through with one clean
        # Received line of ours.
        assert send(gw.port, "a@example.com", ["b@example.org"], MESSAGE)[-1].startswith("250")
        [got] = wait_until("delivery to the sink", lambda: sink.to("b@example.org"))
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(got.data)
    assert head.get_all("Bcc") is None and head.get_all("X-Injected") is None
    received = head.get_all("Received")
    assert received is not None and len(received) == 1
    assert "for <b@example.org>" in received[0]
    assert got.data.count(b"\r\n\r\n") >= 1 and b"\r\n\r\nbody\r\n" in got.data


@pytest.mark.parametrize("value", [
    "a\rBcc: x@y", "a\nBcc: x@y", "a\r\nBcc: x@y", "a\0b", "a\x85b\u2028c", "a\x1b[0m",
])
def test_the_header_builder_never_writes_a_line_break_from_data(value: str) -> None:
    line = field("X-Test", value, "second " + value)
    body = line[:-2]
    # The only line breaks are the fold between the two parts the caller gave.
    assert body.count(b"\r\n") == 1 and body.count(b"\r") == 1 and body.count(b"\n") == 1
    assert b"\r\n\t" in body and b"\0" not in body and line.endswith(b"\r\n")
    assert "\r" not in field_text("X-Test", value)


def test_the_header_builder_refuses_a_bad_field_name() -> None:
    with pytest.raises(ValueError):
        field("X-Bad: injected\r\nBcc", "v")


# A client that writes Unix line ends: every line ends in a bare LF, and the whole message is
# one "line" of over 1,000 bytes to a reader that splits at CRLF.
UNIX_MESSAGE = (b"From: a@example.com\nTo: b@example.org\nSubject: unix\n\n"
                + b"a line of text written on a Unix box\n" * 40
                + b"..a stuffed dot\n.\nMAIL FROM:<smuggled@example.com>\n")


def test_bare_lf_mail_is_refused_as_that_not_as_a_long_line_through_serve(tmp_path: Path) -> None:
    """Found by a partner whose mail client writes LF: the refusal named a line too long,
    which sent the administrator the wrong way. It names the bare line ends."""
    with Sink() as sink, Served(tmp_path, GATEWAY, sink) as gw:
        replies = send(gw.port, "a@example.com", ["b@example.org"], UNIX_MESSAGE)
        assert replies[-1].startswith("550 5.5.2 Message contains bare CR or LF"), replies
        assert sink.messages == []


def test_bare_lf_normalized_when_the_policy_says_so_through_serve(tmp_path: Path) -> None:
    """`bare_line_endings = "normalize"` (Postfix 3.9's default): the lines arrive with CRLF,
    the transparency dot comes off, and a "<LF>.<LF>" inside is content, never the end of
    DATA, so the command after it is not smuggled in as a second message."""
    config = relay_config(policy='bare_line_endings = "normalize"', delivery="retry_schedule = [1]")
    with Sink() as sink, Served(tmp_path, config, sink) as gw:
        replies = send(gw.port, "a@example.com", ["b@example.org"], UNIX_MESSAGE)
        assert replies[-1].startswith("250"), replies
        [got] = wait_until("delivery to the sink", lambda: sink.to("b@example.org"))
        body = got.data.split(b"\r\n\r\n", 1)[1]
        assert body.count(b"a line of text written on a Unix box\r\n") == 40
        assert b"\r\n.a stuffed dot\r\n" in body and b"MAIL FROM:<smuggled" in body
        assert b"\n" not in body.replace(b"\r\n", b"")
        assert len(sink.messages) == 1
