"""Bad input at the door of a gateway running its whole pipeline: every shape gets the
documented SMTP answer or a clean pipeline outcome, and the gateway keeps serving."""

from __future__ import annotations

import base64
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .e2e_support import Org, message, pump

HEAD = b"From: <eve@outside.example>\r\nTo: <alice@a.example>\r\nSubject: odd\r\n"


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    o = Org(tmp_path / "a", "a.example", ("alice",), session_timeout=1.5, max_size=64 * 1024,
            max_rcpts=3)
    o.start()
    yield o
    o.stop()


def send(org: Org, data: bytes, rcpts: tuple[str, ...] = ("alice@a.example",)) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", org.port, timeout=10) as s:
        s.ehlo("client.outside.example")
        s.mail("eve@outside.example")
        for r in rcpts:
            code, text = s.rcpt(r)
            if code >= 400:
                return code, text
        return s.data(data)


def raw_session(org: Org, lines: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", org.port), timeout=10) as sock:
        sock.recv(1024)
        sock.sendall(lines)
        time.sleep(0.3)
        return sock.recv(65536)


def test_door_answers(org: Org) -> None:
    code, _ = send(org, HEAD + b"\r\n" + b"x" * 900 + b"\r\n" + (b"y" * 900 + b"\r\n") * 80)
    assert code == 552  # over the policy's max_message_size
    code, _ = send(org, HEAD + b"\r\nhi\r\n", rcpts=("a1@a.example", "a2@a.example", "a3@a.example",
                                                      "a4@a.example"))
    assert code == 452  # too many recipients: the fourth is refused
    code, _ = send(org, HEAD + b"\r\nsmuggle\n.\r\nMAIL FROM:<x@y>\r\n")
    assert code == 550  # a bare LF: never passed on
    reply = raw_session(org, b"EHLO x\r\nMAIL FROM:<eve@outside.example>\r\nRCPT TO:<bob@elsewhere.example>\r\n")
    assert b"550 5.7.1" in reply  # ACCEPT policy: not an open relay


def test_slow_drip_is_cut_and_others_are_served(org: Org) -> None:
    with socket.create_connection(("127.0.0.1", org.port), timeout=10) as slow:
        slow.recv(1024)
        for ch in b"EHLO drip\r\n":
            slow.sendall(bytes([ch]))
            time.sleep(0.05)
        code, _ = send(org, message("eve@outside.example", "alice@a.example", "meanwhile"))
        assert code == 250
        time.sleep(1.6)
        slow.settimeout(5)
        rest = b""
        while b"421" not in rest:
            chunk = slow.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert b"421 4.4.2" in rest


GARBAGE_CMS = [
    pytest.param(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\x30\x80garbage" * 20),
                 "decryption=failed", id="garbage-envelope"),
    pytest.param(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
                 "decryption=failed", id="bad-base64"),
    pytest.param(b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="b"\r\n'
                 b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
                 b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 b"MIIBadSignature\r\n--b--\r\n", "verification=failed", id="garbage-signature"),
    pytest.param(b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"\r\n\r\nno boundary\r\n',
                 "verification=failed", id="signed-without-boundary"),
    pytest.param(b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n'
                 b"\r\nunterminated part\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nFrom: nested\r\n",
                 "", id="malformed-mime"),
    pytest.param(b"Content-Type: text/plain; charset=\"\r\n =?broken?=\r\n\r\nbody\r\n", "", id="bad-header"),
]


@pytest.mark.parametrize(("tail", "status"), GARBAGE_CMS)
def test_malformed_content_has_a_clean_outcome(org: Org, tail: bytes, status: str) -> None:
    code, _ = send(org, HEAD + b"MIME-Version: 1.0\r\n" + tail.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
    assert code == 250
    pump(org, until=lambda: bool(org.mailbox.messages))
    [(_, rcpts, got)] = org.mailbox.messages
    assert rcpts == ["alice@a.example"]
    if status:
        assert f"X-Filterlang-SMIME: {status}".encode() in got
        assert b"X-SMIME-Check: failed" in got  # the message filters saw the S/MIME outcome
    else:
        assert b"X-SMIME-Check" not in got
    assert not list((org.root / "data" / "spool" / "hold").iterdir())  # no pipeline crash
    # and the gateway keeps serving
    assert send(org, message("eve@outside.example", "alice@a.example", "after"))[0] == 250
    pump(org, until=lambda: len(org.mailbox.messages) == 2)
    assert len(org.mailbox.messages) == 2
