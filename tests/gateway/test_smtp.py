"""The listener: ESMTP keywords, limits and their codes, smuggling shapes, slow clients."""

from __future__ import annotations

import ctypes
import errno
import os
import smtplib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from runtime.mta import spool as spool_module

if TYPE_CHECKING:
    from .conftest import RunningListener

MSG = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


class Raw:
    """A line-level SMTP client: sends exactly the bytes given (for smuggling shapes)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.read()

    def read(self) -> str:
        while True:
            lines = self.buf.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if len(line) >= 4 and line[3:4] == b" ":
                    reply = b"\r\n".join(lines[: i + 1]).decode()
                    self.buf = b"\r\n".join(lines[i + 1 :])
                    return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                return ""
            self.buf += chunk

    def cmd(self, data: bytes) -> str:
        self.sock.sendall(data)
        return self.read()

    def close(self) -> None:
        self.sock.close()


def envelope(raw: Raw, rcpts: int = 1) -> None:
    assert raw.cmd(b"EHLO t\r\n").startswith("250")
    assert raw.cmd(b"MAIL FROM:<a@example.com>\r\n").startswith("250")
    for i in range(rcpts):
        assert raw.cmd(f"RCPT TO:<b{i}@example.org>\r\n".encode()).startswith("250")
    assert raw.cmd(b"DATA\r\n").startswith("354")


def test_ehlo_keywords_and_durable_250(listener: Callable[..., RunningListener]) -> None:
    gw = listener()
    with smtplib.SMTP("127.0.0.1", gw.port) as c:
        code, text = c.ehlo()
        for kw in (b"SIZE 4096", b"8BITMIME", b"PIPELINING", b"ENHANCEDSTATUSCODES", b"DSN"):
            assert kw in text
        c.mail("a@example.com", ["RET=HDRS", "ENVID=x1", "BODY=8BITMIME"])
        c.rcpt("b@example.org", ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@example.org"])
        code, text = c.data(MSG)
    assert code == 250 and text.startswith(b"2.0.0 OK queued as ")
    qid = text.decode().rsplit(" ", 1)[1]
    env, data = gw.spool.read("incoming", qid)  # on disk when the 250 came back
    received, rest = data.split(b";\r\n\t", 1)
    assert received.startswith(b"Received: from ") and f"id {qid}".encode() in received
    assert rest.split(b"\r\n", 1)[1] == MSG
    assert "RET=HDRS" in env.mail_options and env.rcpt_options[0][0] == "NOTIFY=FAILURE,DELAY"
    # ENVID and ORCPT values are case-sensitive and kept as sent.
    assert "ENVID=x1" in env.mail_options and env.rcpt_options[0][1] == "ORCPT=rfc822;b@example.org"
    assert env.policy == "relay" and env.peer == "127.0.0.1"


@pytest.mark.parametrize(
    "size_param,body_len,expected",
    [("SIZE=99999", 10, "552 5.3.4"), (None, 8000, "552")],
    ids=["declared", "actual"],
)
def test_message_size_limit(listener: Callable[..., RunningListener], size_param: str | None,
                            body_len: int, expected: str) -> None:
    gw = listener()
    raw = Raw(gw.port)
    raw.cmd(b"EHLO t\r\n")
    reply = raw.cmd(f"MAIL FROM:<a@example.com> {size_param or ''}\r\n".encode())
    if size_param:
        assert reply.startswith(expected)
        return
    raw.cmd(b"RCPT TO:<b@example.org>\r\n")
    raw.cmd(b"DATA\r\n")
    reply = raw.cmd(b"Subject: x\r\n\r\n" + (b"x" * 70 + b"\r\n") * (body_len // 72) + b".\r\n")
    assert reply.startswith(expected)
    assert raw.cmd(b"NOOP\r\n").startswith("250")  # the session goes on
    assert gw.spool.list("incoming") == []


def test_too_many_recipients(listener: Callable[..., RunningListener]) -> None:
    raw = Raw(listener().port)
    raw.cmd(b"EHLO t\r\n")
    raw.cmd(b"MAIL FROM:<a@example.com>\r\n")
    replies = [raw.cmd(f"RCPT TO:<r{i}@example.org>\r\n".encode()) for i in range(4)]
    assert [r[:9] for r in replies] == ["250 2.1.5"] * 3 + ["452 4.5.3"]


def test_line_too_long(listener: Callable[..., RunningListener]) -> None:
    gw = listener()
    raw = Raw(gw.port)
    envelope(raw)
    assert raw.cmd(b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n").startswith("500")
    assert gw.spool.list("incoming") == []


@pytest.mark.parametrize(
    "body",
    [
        # The classic smuggling shapes (SMTP smuggling, 2023): an end-of-data with bare line ends
        # followed by a second, hidden transaction.
        b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: x\r\n\r\nhi\r\n.\nRCPT TO:<victim@example.org>\r\n",
        b"Subject: x\r\n\r\nhi\n.\r\nDATA\r\n",
        b"Subject: x\r\n\r\nhi\r.\r\nQUIT\r\n",
        b"Subject: x\r\n\r\nbare\rcr\r\n",
        b"Subject: x\r\n\r\nnul\x00byte\r\n",
    ],
    ids=["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "cr-dot-crlf", "bare-cr", "nul"],
)
def test_smuggling_shapes_refused(listener: Callable[..., RunningListener], body: bytes) -> None:
    gw = listener()
    raw = Raw(gw.port)
    envelope(raw)
    reply = raw.cmd(body + b".\r\n")
    assert reply.startswith("550 5."), reply
    assert gw.spool.list("incoming") == []
    assert raw.cmd(b"NOOP\r\n").startswith("250")  # nothing hidden was executed


def test_mail_loop_refused(listener: Callable[..., RunningListener]) -> None:
    gw = listener()
    raw = Raw(gw.port)
    envelope(raw)
    hops = b"".join(b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n" for _ in range(30))
    assert raw.cmd(hops + MSG + b".\r\n").startswith("554 5.4.6")


def test_reject_policy(listener: Callable[..., RunningListener]) -> None:
    raw = Raw(listener(policy="reject").port)
    raw.cmd(b"EHLO t\r\n")
    assert raw.cmd(b"MAIL FROM:<a@example.com>\r\n").startswith("554 5.7.1")


def test_tcprefuse_closes_at_connect(listener: Callable[..., RunningListener]) -> None:
    gw = listener(policy="refuse")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        assert s.recv(100) == b""


@pytest.mark.parametrize(("spool_sync", "failing"), [
    ("file", "fdatasync"), ("filesystem", "syncfs"), ("file", "_fsync_dir"),
    ("filesystem", "_fsync_dir"),
])
def test_spool_write_failure_is_451_never_250(listener: Callable[..., RunningListener],
                                              monkeypatch: pytest.MonkeyPatch, spool_sync: str,
                                              failing: str) -> None:
    """The disk fills while the message's bytes are synced (on their own, or with the batch's
    syncfs), or while its folder is: 451, and nothing half written is left in incoming."""
    gw = listener(spool_sync=spool_sync)

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_fs(_fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    if failing == "fdatasync":
        monkeypatch.setattr(spool_module.os, "fdatasync", full)
    elif failing == "syncfs":
        if gw.spool._syncfs is None:
            pytest.skip("no syncfs(2) on this system: the spool syncs file by file")
        monkeypatch.setattr(gw.spool, "_syncfs", full_fs)
    else:
        monkeypatch.setattr(spool_module, "_fsync_dir", full)
    raw = Raw(gw.port)
    envelope(raw)
    assert raw.cmd(MSG + b".\r\n").startswith("451 4.3.1")
    monkeypatch.undo()
    assert gw.spool.list("incoming") == [] or failing == "_fsync_dir"
    assert os.listdir(gw.spool.root / "tmp") == []
    assert raw.cmd(b"NOOP\r\n").startswith("250")


def test_handler_exception_is_neutral_451(listener: Callable[..., RunningListener],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    gw = listener()

    def boom(*_a: object, **_k: object) -> str:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(gw.spool, "store", boom)
    monkeypatch.setattr(gw.spool, "stage", boom)
    raw = Raw(gw.port)
    envelope(raw)
    reply = raw.cmd(MSG + b".\r\n")
    assert reply.startswith("451 4.3.0") and "secret" not in reply
    assert raw.cmd(b"NOOP\r\n").startswith("250")


def test_slow_drip_client_is_cut_and_others_are_served(
    listener: Callable[..., RunningListener],
) -> None:
    gw = listener(session_timeout=1.5)
    slow = Raw(gw.port)
    envelope(slow)
    cut = False
    for _ in range(40):  # one byte every 0.1 s: aiosmtpd's idle timer alone never fires
        try:
            slow.sock.sendall(b"x")
        except OSError:
            cut = True
            break
        # Meanwhile a normal client gets through.
        time.sleep(0.1)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=5) as c:
        assert c.sendmail("a@example.com", ["b@example.org"], MSG) == {}
    tail = slow.sock.recv(1000) if not cut else b""
    assert cut or b"421 4.4.2" in tail or tail == b""
    slow.close()


def test_starttls_with_configured_certificate(tmp_path, make_config) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import ssl
    import subprocess

    from .conftest import RunningListener

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    config = make_config()
    text = config.source.read_text().replace(
        'name = "in"', 'name = "in"\ntls_cert = "c.pem"\ntls_key = "k.pem"')
    config.source.write_text(text)
    from runtime.config.config import load_config

    gw = RunningListener(load_config(config.source))
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
        ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=5) as c:
            c.ehlo()
            assert c.has_extn("starttls")
            c.starttls(context=ctx)
            c.ehlo()
            assert not c.has_extn("auth")  # the gateway has no AUTH to offer
            assert c.docmd("AUTH PLAIN AHVzZXIAcGFzcw==")[0] == 504
            assert c.sendmail("a@example.com", ["b@example.org"], MSG) == {}
    finally:
        gw.close()
    assert len(gw.spool.list("incoming")) == 1


def test_ehlo_and_help_show_the_gateway_commands(listener: Callable[..., RunningListener]) -> None:
    """The protocol's command and hook tables are set from per-class caches, not by aiosmtpd's
    scan: EHLO still lists the extensions, HELP the commands, and each command still works."""
    gw = listener()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=5) as c:
        code, text = c.ehlo()
        assert code == 250
        for extension in ("size", "8bitmime", "pipelining", "enhancedstatuscodes", "dsn"):
            assert c.has_extn(extension), extension
        assert c.esmtp_features["size"] == "4096"  # the policy's size, from handle_EHLO
        assert not c.has_extn("auth")
        code, text = c.docmd("HELP")
        assert code == 250
        assert text == b"Supported commands: DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"
        assert c.docmd("HELP", "MAIL")[1].startswith(b"Syntax: MAIL FROM: <address> [SP")
        assert c.docmd("NOOP")[0] == 250
        assert c.sendmail("a@example.com", ["b@example.org"], MSG) == {}
    assert len(gw.spool.list("incoming")) == 1


def test_rate_limit_per_hour(listener: Callable[..., RunningListener]) -> None:
    import attrs

    gw = listener()
    # Tighten the fixture's policy for this test (policies are looked up at connect).
    gw.handler.config.policies["relay"] = attrs.evolve(
        gw.config.policies["relay"], max_messages_per_hour=2)
    raw = Raw(gw.port)
    raw.cmd(b"EHLO t\r\n")
    replies = []
    for _ in range(3):
        replies.append(raw.cmd(b"MAIL FROM:<a@example.com>\r\n").strip())
        raw.cmd(b"RSET\r\n")
    assert [r[:9] for r in replies] == ["250 2.1.0", "250 2.1.0", "452 4.7.0"]
    assert replies[2] == ("452 4.7.0 Too many messages this hour from your address "
                          "(max_messages_per_hour=2)")


def test_command_count_limit(listener: Callable[..., RunningListener]) -> None:
    gw = listener()
    raw = Raw(gw.port)
    replies = [raw.cmd(b"NOOP\r\n")[:3] for _ in range(gw.config.listeners[0].max_commands + 1)]
    assert replies[0] == "250" and replies[-1] == "421"


def test_time_cap_is_per_transaction(listener: Callable[..., RunningListener]) -> None:
    gw = listener(session_timeout=1.5)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=5) as c:
        for _ in range(3):  # 3 s of connection, but each transaction is quick
            assert c.sendmail("a@example.com", ["b@example.org"], MSG) == {}
            time.sleep(1.0)
    assert len(gw.spool.list("incoming")) == 3


@pytest.mark.parametrize("rcpt,expected", [
    ("b@example.org", "250"), ("b@sub.example.org", "250"), ("b@EXAMPLE.ORG", "250"),
    ("victim@elsewhere.example", "550 5.7.1"), ("b@notexample.org", "550 5.7.1"),
])
def test_accept_policy_is_not_an_open_relay(listener: Callable[..., RunningListener],
                                            rcpt: str, expected: str) -> None:
    raw = Raw(listener(policy="accept").port)
    raw.cmd(b"EHLO t\r\n")
    raw.cmd(b"MAIL FROM:<a@example.com>\r\n")
    assert raw.cmd(f"RCPT TO:<{rcpt}>\r\n".encode()).startswith(expected)


@pytest.mark.parametrize("length", [2_000, 100_000])
def test_overlong_command_line_is_500_and_the_session_goes_on(
        listener: Callable[..., RunningListener], length: int) -> None:
    """A command line longer than aiosmtpd's per-command cap, or longer than the connection's
    whole buffer, is refused; the session stays usable."""
    gw = listener()
    raw = Raw(gw.port)
    assert raw.cmd(b"EHLO t\r\n").startswith("250")
    assert raw.cmd(b"MAIL FROM:<" + b"a" * length + b"@example.com>\r\n").startswith("500")
    assert raw.cmd(b"MAIL FROM:<a@example.com>\r\n").startswith("250")


@pytest.mark.parametrize("line,reply", [
    (b"\r\n", "500 Error: bad syntax"),
    (b"MA\xc3\x8fL FROM:<a@example.com>\r\n", "500 Error: bad syntax"),
    (b"MAIL FROM:<\xc3\xa9@example.com>\r\n", "500 Error: strict ASCII mode"),
    (b"XYZZY plugh\r\n", '500 Error: command "XYZZY" not recognized'),
    (b"RCPT TO:<b@example.org>\r\n", "503 Error: need MAIL command"),
    (b"STARTTLS\r\n", "454 TLS not available"),
])
def test_command_loop_refusals_leave_the_session_usable(
        listener: Callable[..., RunningListener], line: bytes, reply: str) -> None:
    """The listener's command loop answers each malformed or out-of-order line with its
    refusal, and the session goes on to deliver a message."""
    gw = listener()
    raw = Raw(gw.port)
    assert raw.cmd(b"EHLO t\r\n").startswith("250")
    assert raw.cmd(line) == reply
    envelope(raw)
    assert raw.cmd(MSG + b".\r\n").startswith("250")
    assert len(gw.spool.list("incoming")) == 1


def test_unknown_commands_end_the_session_after_five(
        listener: Callable[..., RunningListener]) -> None:
    raw = Raw(listener().port)
    replies = [raw.cmd(b"XYZZY\r\n")[:3] for _ in range(5)]
    assert replies == ["500"] * 4 + ["502"]
    assert raw.read() == ""  # closed


def test_idle_client_is_disconnected_and_a_talking_one_is_not(
        listener: Callable[..., RunningListener]) -> None:
    """command_timeout: a NOOP every 0.4 s keeps a session open past it; silence ends it."""
    gw = listener(command_timeout=1.0)
    talking, silent = Raw(gw.port), Raw(gw.port)
    for _ in range(5):
        assert talking.cmd(b"NOOP\r\n").startswith("250")
        time.sleep(0.4)
    silent.sock.settimeout(5)
    assert silent.sock.recv(100) == b""  # closed by the gateway (after about 1 s)
    assert talking.cmd(b"NOOP\r\n").startswith("250")


@pytest.mark.parametrize("line", [b"\r\0\r\n", b"X\rY Z\r\n", b"\0\r\n"])
def test_a_reply_never_carries_a_cr_or_nul_from_the_command(
        listener: Callable[..., RunningListener], line: bytes) -> None:
    """Found by fuzzing (fuzz/targets/smtp.py): an unknown command is echoed in the 500 reply,
    and a CR or NUL in it reached the client inside the reply line."""
    gw = listener()
    raw = Raw(gw.port)
    assert raw.cmd(b"EHLO t\r\n").startswith("250")
    reply = raw.cmd(line)
    assert reply[:3] in ("500", "501") and "\r" not in reply and "\0" not in reply, reply
    envelope(raw)
    assert raw.cmd(MSG + b".\r\n").startswith("250")


@pytest.mark.parametrize("command", [b"MAIL FROM:<\r\n", b"MAIL FROM:<<\r\n", b"MAIL FROM:<a@[1\r\n",
                                     b"MAIL FROM:a@[\r\n", b'MAIL FROM:<"q u"@[063l\r\n'])
def test_a_lone_angle_bracket_is_a_malformed_address(
        listener: Callable[..., RunningListener], command: bytes) -> None:
    """Found by fuzzing: "MAIL FROM:<" made the address parser raise IndexError, and an
    unterminated domain literal ("<a@[1") AttributeError, which the listener answered 451 with
    a traceback in its log; each is a malformed address like any other."""
    gw = listener()
    raw = Raw(gw.port)
    assert raw.cmd(b"EHLO t\r\n").startswith("250")
    assert raw.cmd(command).startswith("553 5.1.3")
    envelope(raw)
    assert raw.cmd(MSG + b".\r\n").startswith("250")


def test_recipients_per_hour_per_ip_and_per_sender(listener: Callable[..., RunningListener]) -> None:
    import attrs

    gw = listener()
    gw.handler.config.policies["relay"] = attrs.evolve(
        gw.config.policies["relay"], max_recipients_per_hour=5,
        max_recipients_per_hour_per_sender=2)
    raw = Raw(gw.port)
    raw.cmd(b"EHLO t\r\n")

    def rcpts(sender: bytes, count: int) -> list[str]:
        raw.cmd(b"MAIL FROM:<" + sender + b">\r\n")
        out = [raw.cmd(b"RCPT TO:<r%d@example.org>\r\n" % i).strip() for i in range(count)]
        raw.cmd(b"RSET\r\n")
        return out

    got = rcpts(b"a@example.com", 3)
    assert [r[:9] for r in got] == ["250 2.1.5", "250 2.1.5", "452 4.7.0"]
    assert got[2] == ("452 4.7.0 Too many recipients this hour from this sender "
                      "(max_recipients_per_hour_per_sender=2)")
    # The null sender is no one sender: only the IP's five an hour hold (two taken above;
    # three a message at most, the fixture's max_recipients).
    assert [r[:9] for r in rcpts(b"", 3)] == ["250 2.1.5"] * 3
    got = rcpts(b"", 1)
    assert got[0] == ("452 4.7.0 Too many recipients this hour from your address "
                      "(max_recipients_per_hour=5)")


def test_messages_per_connection(listener: Callable[..., RunningListener]) -> None:
    import attrs

    gw = listener()
    gw.handler.config.policies["relay"] = attrs.evolve(
        gw.config.policies["relay"], max_messages_per_connection=2)
    raw = Raw(gw.port)
    raw.cmd(b"EHLO t\r\n")
    replies = []
    for _ in range(2):
        replies.append(raw.cmd(b"MAIL FROM:<a@example.com>\r\n")[:3])
        raw.cmd(b"RSET\r\n")  # counted all the same: MAIL commands, not messages sent
    third = raw.cmd(b"MAIL FROM:<a@example.com>\r\n")
    assert replies == ["250", "250"]
    assert third.strip() == ("421 4.7.0 Too many messages in this connection "
                             "(max_messages_per_connection=2), send the rest on a new one")
    assert raw.read() == ""  # and the connection closed
    raw = Raw(gw.port)  # a new connection starts again
    raw.cmd(b"EHLO t\r\n")
    assert raw.cmd(b"MAIL FROM:<a@example.com>\r\n")[:3] == "250"
