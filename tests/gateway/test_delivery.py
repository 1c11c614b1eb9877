"""Delivery: routing, retry schedule and deferred queue, permanent failures, expiry DSNs."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from runtime.config.config import Delivery
from runtime.mta.dsn import RecipientStatus, build_dsn
from runtime.mta.queue import QueueRunner
from runtime.mta.smtp_client import AsyncSMTPTransport, SMTPTransport
from runtime.mta.spool import Envelope, Spool
from runtime.mta.tracking import Tracker
from runtime.mta.transport import Destination, MemoryTransport, Result, StaticResolver

from .queue_support import run_queue

MSG = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nsecret body\r\n"
ENC = (b"From: a@example.com\r\nSubject: enc\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB...\r\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def runner(tmp_path: Path, transport: MemoryTransport, clock: Clock, **delivery: object) -> QueueRunner:
    cfg = Delivery(**{"relay": "127.0.0.1:10025", "retry_schedule": (60.0, 300.0),
                      "max_queue_lifetime": 3600.0, **delivery})  # type: ignore[arg-type]
    return QueueRunner(Spool(tmp_path / "spool"), cfg, transport, clock=clock,
                       tracker=Tracker(tmp_path / "track.jsonl"))


def store(r: QueueRunner, clock: Clock, data: bytes = MSG, sender: str = "a@example.com",
          rcpts: tuple[str, ...] = ("b@example.org",)) -> str:
    return r.spool.store(Envelope(sender, rcpts, received_at=clock.now), data)


def dsns(t: MemoryTransport) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(d, policy=email.policy.default)  # type: ignore[misc]
            for _dest, sender, _r, d in t.sent if sender == ""]


def test_delivers_and_tracks(tmp_path: Path) -> None:
    t, clock = MemoryTransport(), Clock()
    r = runner(tmp_path, t, clock)
    qid = store(r, clock)
    assert run_queue(r) == 1
    assert t.sent == [(Destination("127.0.0.1", 10025), "a@example.com", ("b@example.org",), MSG)]
    assert r.spool.counts() == dict.fromkeys(r.spool.counts(), 0)
    first, rec = (json.loads(line) for line in (tmp_path / "track.jsonl").read_text().splitlines())
    assert first["event"] == "received" and first["rcpts"] == ["b@example.org"]
    assert rec["event"] == "delivered" and rec["queue_id"] == qid and rec["rcpt"] == "b@example.org"


def test_temporary_failure_defers_then_delivers_when_next_hop_returns(tmp_path: Path) -> None:
    t, clock = MemoryTransport(answers={"b@example.org": Result(451, "4.4.1 down")}), Clock()
    r = runner(tmp_path, t, clock)
    store(r, clock)
    run_queue(r)
    assert len(r.spool.list("deferred")) == 1 and t.sent == []
    env, _ = r.spool.read("deferred", r.spool.list("deferred")[0])
    assert env.attempts == 1 and env.next_attempt == clock.now + 60 and "4.4.1" in env.last_error
    assert run_queue(r) == 0  # not before its time
    clock.now += 61
    t.answers.clear()  # the next hop is back
    assert run_queue(r) == 1
    assert [s[2] for s in t.sent] == [("b@example.org",)]
    assert r.spool.list("deferred") == []


def test_partial_failure_bounces_one_and_delivers_other(tmp_path: Path) -> None:
    t, clock = MemoryTransport(answers={"x@example.org": Result(550, "5.1.1 no such user")}), Clock()
    r = runner(tmp_path, t, clock)
    store(r, clock, rcpts=("b@example.org", "x@example.org"))
    assert run_queue(r) == 2  # the message, and the DSN it led to, in the same pass
    assert [s[2] for s in t.sent if s[1]] == [("b@example.org",)]
    [dsn] = dsns(t)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    status = parts[1].as_string()
    assert "Final-Recipient: rfc822; x@example.org" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status


def test_expiry_bounces_with_4_4_7(tmp_path: Path) -> None:
    t, clock = MemoryTransport(answers={"b@example.org": Result(421, "4.3.2 busy")}), Clock()
    r = runner(tmp_path, t, clock)
    store(r, clock)
    for _ in range(30):
        clock.now += 301
        run_queue(r)
    assert r.spool.list("deferred") == []
    t.answers.clear()
    run_queue(r)
    [dsn] = dsns(t)
    assert "Status: 4.4.7" in dsn.as_string() and "Action: failed" in dsn.as_string()


def test_never_bounce_to_null_sender(tmp_path: Path) -> None:
    t, clock = MemoryTransport(answers={"b@example.org": Result(550, "5.1.1 gone")}), Clock()
    r = runner(tmp_path, t, clock)
    store(r, clock, sender="")
    assert run_queue(r) == 1
    assert t.sent == [] and r.spool.counts()["incoming"] == 0


@pytest.mark.parametrize("data,ret,headers_only", [
    (ENC, (), True), (MSG, ("RET=HDRS",), True), (MSG, (), False)])
def test_dsn_never_carries_decrypted_content(data: bytes, ret: tuple[str, ...],
                                             headers_only: bool) -> None:
    env = Envelope("a@example.com", ("b@example.org",), mail_options=ret, queue_id="q1")
    dsn = build_dsn(env, data, [RecipientStatus("b@example.org", "failed", "5.0.0", "550 no")],
                    reporting_mta="gw.example")
    assert dsn is not None
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    last = list(parsed.iter_parts())[-1]  # type: ignore[attr-defined]
    assert last.get_content_type() == ("text/rfc822-headers" if headers_only else "message/rfc822")
    assert (b"MIIB" in dsn or b"secret body" in dsn) is (not headers_only)


def test_mx_routing_falls_back_to_next_mx(tmp_path: Path) -> None:
    class Flaky(MemoryTransport):
        def send(self, dest, mail_from, rcpts, data, mail_options=(), rcpt_options=()):  # type: ignore[no-untyped-def]
            if dest.host == "mx1.example.org":
                return {r: Result(421, "4.3.2 try later") for r in rcpts}
            return super().send(dest, mail_from, rcpts, data)

    t, clock = Flaky(), Clock()
    cfg = Delivery(mx=True)
    resolver = StaticResolver({"example.org": [Destination("mx1.example.org", 25),
                                               Destination("mx2.example.org", 25)]})
    r = QueueRunner(Spool(tmp_path), cfg, t, resolver=resolver, clock=clock)
    store(r, clock, rcpts=("b@example.org", "c@nomx.example"))
    run_queue(r)
    assert [(s[0].host, s[2]) for s in t.sent] == [("mx2.example.org", ("b@example.org",))]
    env, _ = r.spool.read("deferred", r.spool.list("deferred")[0])
    assert env.rcpt_tos == ("c@nomx.example",) and "no MX" in env.last_error


def test_maildir_target(tmp_path: Path) -> None:
    clock = Clock()
    r = runner(tmp_path, MemoryTransport(), clock, relay=None, maildir=tmp_path / "md")
    store(r, clock)
    run_queue(r)
    [f] = list((tmp_path / "md" / "b@example.org" / "new").iterdir())
    assert f.read_bytes() == b"Return-Path: <a@example.com>\r\n" + MSG


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    def __init__(self, pipelining: bool = False, refuse: str = "") -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self.pipelining = pipelining
        self.refuse = refuse

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        self.connections += 1
        session.host_name = hostname  # a new-style EHLO hook must record it itself
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address == self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 sunk"


class AsyncClient:
    """The gateway's asyncio client, driven by the test: its loop runs only inside send(), as
    the gateway's would not, so a connection the peer closed meanwhile is found out on use."""

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.transport = AsyncSMTPTransport(timeout=timeout)

    def send(self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
             mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = ()
             ) -> dict[str, Result]:
        return self.loop.run_until_complete(self.transport.send_async(
            dest, mail_from, rcpts, data, mail_options, rcpt_options))

    def close(self) -> None:
        self.loop.run_until_complete(self.transport.aclose())
        self.loop.close()


CLIENTS: dict[str, Callable[[], SMTPTransport | AsyncClient]] = {
    "blocking": lambda: SMTPTransport(timeout=5),
    "asyncio": lambda: AsyncClient(timeout=5),
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("pipelining", [False, True])
def test_smtp_transport_reuses_connection(tmp_path: Path, pipelining: bool, client: str) -> None:
    sink = Sink(pipelining)
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        transport = CLIENTS[client]()
        dest = Destination("127.0.0.1", port)
        for i in range(5):
            got = transport.send(dest, "a@example.com", [f"r{i}@example.org"], MSG)
            assert got[f"r{i}@example.org"].ok
        transport.close()
    finally:
        ctl.stop()
    assert len(sink.messages) == 5 and sink.messages[0][2] == MSG
    assert sink.connections == 1


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("pipelining", [False, True])
def test_smtp_transport_refused_recipient_and_dot_stuffing(pipelining: bool, client: str) -> None:
    sink = Sink(pipelining, refuse="nobody@example.org")
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    dotted = MSG + b".hidden line\r\n"
    try:
        transport = CLIENTS[client]()
        dest = Destination("127.0.0.1", port)
        got = transport.send(dest, "a@example.com", ["nobody@example.org", "b@example.org"], dotted)
        only_refused = transport.send(dest, "a@example.com", ["nobody@example.org"], MSG)
        after = transport.send(dest, "a@example.com", ["c@example.org"], MSG)
        transport.close()
    finally:
        ctl.stop()
    assert got["nobody@example.org"].code == 550 and got["b@example.org"].ok
    assert only_refused["nobody@example.org"].code == 550
    assert after["c@example.org"].ok
    assert [(m[1], m[2]) for m in sink.messages] == [(["b@example.org"], dotted),
                                                     (["c@example.org"], MSG)]
    assert sink.connections == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_reconnects_when_the_peer_closed_the_cached_connection(client: str) -> None:
    sink = Sink(pipelining=True)
    port = free_port()
    transport = CLIENTS[client]()
    dest = Destination("127.0.0.1", port)
    for i in range(2):  # the second server is a new one on the same port
        ctl = Controller(sink, hostname="127.0.0.1", port=port)
        ctl.start()
        try:
            assert transport.send(dest, "a@example.com", [f"r{i}@example.org"], MSG)[f"r{i}@example.org"].ok
        finally:
            ctl.stop()
    transport.close()
    assert len(sink.messages) == 2 and sink.connections == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_unreachable_next_hop_is_a_temporary_failure(client: str) -> None:
    transport = CLIENTS[client]()
    got = transport.send(Destination("127.0.0.1", free_port()), "a@example.com", ["b@example.org"], MSG)
    transport.close()
    assert got["b@example.org"].code == 451 and not got["b@example.org"].permanent


@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_uses_starttls_when_offered(tmp_path: Path, client: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    sink = TLSSink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
    ctl.start()
    try:
        transport = CLIENTS[client]()
        got = transport.send(Destination("127.0.0.1", port), "a@example.com", ["b@example.org"], MSG)
        transport.close()
    finally:
        ctl.stop()
    assert got["b@example.org"].ok
    assert sink.encrypted == [True]


class TLSSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_never_sends_a_line_break_inside_a_command(client: str) -> None:
    sink = Sink(pipelining=True)
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        transport = CLIENTS[client]()
        dest = Destination("127.0.0.1", port)
        got = transport.send(dest, "a@example.com", ["b@example.org>\r\nRCPT TO:<evil@example.net"], MSG)
        after = transport.send(dest, "a@example.com", ["c@example.org"], MSG)
        transport.close()
    finally:
        ctl.stop()
    [(rcpt, result)] = got.items()
    assert result.code == 553 and result.permanent
    assert after["c@example.org"].ok
    assert [m[1] for m in sink.messages] == [["c@example.org"]]


@pytest.mark.parametrize("greeting", [b"220 " + b"x" * 70_000 + b"\r\n",
                                      b"220-hello\r\n" * 2_000 + b"220 done\r\n"],
                         ids=["long-line", "endless-reply"])
@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_hostile_reply_is_a_temporary_failure(greeting: bytes, client: str) -> None:
    """A next hop that answers with a 70 KB line or thousands of continuation lines gets the
    message deferred (451), never parked in hold or read without end."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(greeting)
            conn.recv(100)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = CLIENTS[client]()
    got = transport.send(Destination("127.0.0.1", port), "a@example.com", ["b@example.org"], MSG)
    transport.close()
    server.close()
    assert got["b@example.org"].code == 451 and not got["b@example.org"].permanent


STALLS = {
    "no-greeting": [],
    "no-reply-to-mail": [b"220 hello\r\n", b"250-hi\r\n250 PIPELINING\r\n"],
    # 354, then the peer stops reading: the client waits on a full socket buffer.
    "stops-reading-the-body": [b"220 hello\r\n", b"250-hi\r\n250 PIPELINING\r\n",
                               b"250 ok\r\n250 ok\r\n354 go on\r\n"],
}


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("client", ["blocking", "asyncio"])
def test_smtp_transport_silent_next_hop_times_out_as_a_temporary_failure(
        stall: str, client: str) -> None:
    """A next hop that stops answering or reading costs the connection timeout and defers
    the message (451); the client neither hangs nor parks it."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for reply in STALLS[stall]:
                conn.sendall(reply)
                conn.recv(1000)  # EHLO, then MAIL+RCPT+DATA (one pipelined write)
            done.wait(10)  # then silence, with the connection open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = SMTPTransport(timeout=0.3) if client == "blocking" else AsyncClient(timeout=0.3)
    # Large enough to fill the socket buffers of a peer that does not read it.
    data = MSG + b"x" * 76 * 400_000 if stall == "stops-reading-the-body" else MSG
    got = transport.send(Destination("127.0.0.1", port), "a@example.com", ["b@example.org"], data)
    done.set()
    transport.close()
    server.close()
    result = got["b@example.org"]
    assert result.code == 451 and not result.permanent
    if stall == "no-greeting":
        assert result.text.startswith("4.4.1 cannot connect")
    else:
        assert result.text.endswith("failed: TimeoutError")


@pytest.mark.parametrize("client", CLIENTS)
def test_smtp_transport_reads_replies_however_they_are_cut(client: str) -> None:
    """Replies that arrive a byte at a time, multi-line ones, with bare LF line ends: the
    client reads the same codes and texts as from whole lines."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def trickle(conn: socket.socket, reply: bytes) -> None:
        for i in range(len(reply)):
            conn.sendall(reply[i : i + 1])

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            trickle(conn, b"220 hello\r\n")
            conn.recv(1000)  # EHLO
            trickle(conn, b"250-hi\n250 PIPELINING\n")
            conn.recv(1000)  # MAIL, RCPT and DATA in one write
            trickle(conn, b"250 ok\r\n250 ok\r\n354 go on\r\n")
            body = b""
            while not body.endswith(b"\r\n.\r\n"):
                body += conn.recv(65536)
            trickle(conn, b"250-queued\r\n250 as 42\r\n")
            conn.recv(1000)  # QUIT at close

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = CLIENTS[client]()
    got = transport.send(Destination("127.0.0.1", port), "a@example.com", ["b@example.org"], MSG)
    transport.close()
    thread.join(5)
    server.close()
    assert got["b@example.org"] == Result(250, "queued\nas 42")
