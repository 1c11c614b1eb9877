"""notify() and bcc() copies are automatic mail (issue 13 item 15, RFC 3834): they carry
Auto-Submitted: auto-generated, and none is made of a message that is itself automatic."""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

from .served import Served, Sink, relay_config, send, wait_until

GATEWAY = relay_config(top='message_filters = ["copies.filter"]')

FILTER = """
copies:
  if true {
      notify('admin@example.org');
      bcc('archive@example.org');
  }
"""


def _message(subject: str, extra: str = "") -> bytes:
    return (f"From: a@example.com\r\nTo: b@example.org\r\nSubject: {subject}\r\n{extra}"
            f"\r\nbody\r\n").encode()


def _auto_submitted(data: bytes) -> list[str]:
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    return head.get_all("Auto-Submitted") or []


def test_copies_are_marked_and_automatic_mail_gets_none(tmp_path: Path) -> None:
    (tmp_path / "copies.filter").write_text(FILTER)
    with Sink() as sink, Served(tmp_path, GATEWAY, sink) as gw:
        # Automatic mail first: an auto-reply and a bounce (null sender).
        assert send(gw.port, "a@example.com", ["b@example.org"],
                    _message("auto", "Auto-Submitted: auto-replied\r\n"))[-1][:3] == "250"
        assert send(gw.port, "", ["b@example.org"], _message("bounce"))[-1][:3] == "250"
        # Then a person's message, marked "no" as RFC 3834 allows.
        assert send(gw.port, "a@example.com", ["b@example.org"],
                    _message("person", "Auto-Submitted: no\r\n"))[-1][:3] == "250"
        wait_until("the three originals", lambda: len(sink.to("b@example.org")) == 3)
        # The bounce went on with its null sender (it used to go out as MAIL FROM:<<>>).
        assert [m.mail_from for m in sink.to("b@example.org")].count("<>") == 1  # aiosmtpd: null
        [note] = wait_until("the notification", lambda: sink.to("admin@example.org"))
        [copy] = wait_until("the bcc copy", lambda: sink.to("archive@example.org"))
        # The queue works in order: had the automatic messages made copies, they would be
        # here by now (and are checked once more after the gateway stopped).
    assert len(sink.to("admin@example.org")) == 1 and len(sink.to("archive@example.org")) == 1
    assert _auto_submitted(note.data) == ["auto-generated"]
    assert _auto_submitted(copy.data) == ["auto-generated"]
    assert b"Subject: person" in copy.data
    originals = {m.data.split(b"Subject: ")[1].split(b"\r\n")[0]: m for m in sink.to("b@example.org")}
    assert _auto_submitted(originals[b"auto"].data) == ["auto-replied"]
    assert _auto_submitted(originals[b"person"].data) == ["no"]
