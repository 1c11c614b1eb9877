"""Transports: how one message copy reaches one destination (SMTP, maildir, in memory).

A transport returns one `Result` per recipient; it never raises for a delivery problem. The
SMTP transport keeps one open connection per destination and reuses it (RSET between
messages), so a queue burst to the relay host costs one TCP+EHLO handshake.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from attrs import define, field, frozen


@frozen
class Result:
    """Outcome for one recipient: an SMTP-style code and text."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


@frozen
class Destination:
    """Where to connect: `host:port`, or `maildir:` for local delivery."""

    host: str
    port: int = 25

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Destination:
        host, _, port = text.rpartition(":")
        return cls(host.strip("[]"), int(port))


class Transport(Protocol):
    def send(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
    ) -> dict[str, Result]: ...

    def close(self) -> None: ...


class Resolver(Protocol):
    def mx(self, domain: str) -> list[Destination]: ...


@define
class StaticResolver:
    """A fixed MX table for tests and for site routes; unknown domains have no MX."""

    table: dict[str, list[Destination]] = field(factory=dict)

    def mx(self, domain: str) -> list[Destination]:
        return list(self.table.get(domain.lower(), []))


class DnsResolver:
    """MX lookup with dnspython; falls back to the domain itself (RFC 5321 5.1 implicit MX)."""

    def mx(self, domain: str) -> list[Destination]:
        import dns.exception
        import dns.resolver

        try:
            answer = dns.resolver.resolve(domain, "MX")
        except dns.resolver.NoAnswer:
            return [Destination(domain, 25)]
        except dns.exception.DNSException:
            return []
        records = sorted(answer, key=lambda r: r.preference)
        return [Destination(str(r.exchange).rstrip("."), 25) for r in records]


@define
class MemoryTransport:
    """Records what would be sent; `answers` maps recipient → Result to simulate failures."""

    sent: list[tuple[Destination, str, tuple[str, ...], bytes]] = field(factory=list)
    answers: dict[str, Result] = field(factory=dict)

    def send(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
    ) -> dict[str, Result]:
        results = {r: self.answers.get(r, Result(250, "2.0.0 OK")) for r in rcpts}
        ok = tuple(r for r in rcpts if results[r].ok)
        if ok:
            self.sent.append((dest, mail_from, ok, data))
        return results

    def close(self) -> None:
        return None


class MaildirTransport:
    """Deliver into `<root>/<recipient>/new` (one maildir per recipient), fsync'd."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._n = 0

    def send(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
    ) -> dict[str, Result]:
        results: dict[str, Result] = {}
        for rcpt in rcpts:
            safe = "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in rcpt.lower()) or "_"
            box = self.root / safe
            try:
                for sub in ("tmp", "new", "cur"):
                    (box / sub).mkdir(parents=True, exist_ok=True)
                self._n += 1
                name = f"{time.time_ns()}.P{os.getpid()}T{threading.get_ident()}N{self._n}.filterlang"
                tmp = box / "tmp" / name
                with open(tmp, "wb") as fh:
                    fh.write(f"Return-Path: <{mail_from}>\r\n".encode("utf-8", "replace"))
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.rename(tmp, box / "new" / name)
                fd = os.open(box / "new", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                results[rcpt] = Result(250, "2.0.0 delivered to maildir")
            except OSError as exc:
                results[rcpt] = Result(451, f"4.3.0 maildir write failed: {exc.strerror}")
        return results

    def close(self) -> None:
        return None


def _send_body(conn: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """The message after a 354, then the final reply.

    Spooled messages are CRLF-only (the listener refuses bare CR/LF), so only dot-stuffing
    could change them; when no line starts with a dot the bytes go out as they are, without
    smtplib's whole-message copies.
    """
    if data.startswith(b".") or b"\n." in data:
        data = re.sub(rb"(?m)^\.", b"..", data)
    conn.send(data)
    conn.send(b".\r\n" if data.endswith(b"\r\n") or not data else b"\r\n.\r\n")
    return conn.getreply()


class _Stale(Exception):
    """A reused connection was closed by the peer before it answered anything: nothing was
    delivered, so the transaction may be tried again on a new connection."""


def _text(reply: bytes) -> str:
    return reply.decode("utf-8", "replace")


class SMTPTransport:
    """SMTP client with one cached connection per destination (per thread)."""

    def __init__(self, timeout: float = 30.0, helo: str | None = None) -> None:
        self.timeout = timeout
        self.helo = helo or socket.getfqdn()
        self._local = threading.local()

    def _conns(self) -> dict[Destination, smtplib.SMTP]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _connect(self, dest: Destination) -> tuple[smtplib.SMTP, bool]:
        """The cached connection (True) or a new one (False).

        A cached connection is used as it is, without a RSET round trip: every transaction
        ends clean (DATA answered, or RSET after a refusal), and one that the peer closed in
        the meantime shows up as `_Stale` on the first reply.
        """
        conns = self._conns()
        conn = conns.get(dest)
        if conn is not None:
            return conn, True
        conn = smtplib.SMTP(dest.host, dest.port, local_hostname=self.helo, timeout=self.timeout)
        conn.ehlo()
        if conn.has_extn("starttls"):
            try:
                conn.starttls()
                conn.ehlo()
            except (smtplib.SMTPException, OSError):
                conn.close()
                conn = smtplib.SMTP(dest.host, dest.port, local_hostname=self.helo, timeout=self.timeout)
                conn.ehlo()
        if conn.sock is not None:
            # smtplib writes a message in several sends (commands, body, final dot). With
            # Nagle's algorithm on, a small send waits for the ACK of the one before, which the
            # peer delays (40 ms on Linux): about one stall per message, so each delivery
            # thread managed some 20 messages a second.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[dest] = conn
        return conn, False

    def _drop(self, dest: Destination) -> None:
        conn = self._conns().pop(dest, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def send(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
    ) -> dict[str, Result]:
        for _ in range(2):  # a second time only when a reused connection turned out closed
            try:
                conn, reused = self._connect(dest)
            except (smtplib.SMTPException, OSError) as exc:
                return {r: Result(451, f"4.4.1 cannot connect to {dest}: {exc}") for r in rcpts}
            try:
                return self._transaction(conn, reused, mail_from, rcpts, data, mail_options,
                                         rcpt_options)
            except _Stale:
                self._drop(dest)
                continue
            except smtplib.SMTPResponseException as exc:
                self._drop(dest)
                return {r: Result(exc.smtp_code, str(exc.smtp_error)) for r in rcpts}
            except (smtplib.SMTPException, OSError) as exc:
                self._drop(dest)
                return {r: Result(451, f"4.4.2 connection to {dest} failed: {exc}") for r in rcpts}
        return {r: Result(451, f"4.4.2 connection to {dest} closed twice") for r in rcpts}

    def _transaction(
        self, conn: smtplib.SMTP, reused: bool, mail_from: str, rcpts: Sequence[str],
        data: bytes, mail_options: Sequence[str], rcpt_options: Sequence[Sequence[str]],
    ) -> dict[str, Result]:
        dsn = conn.has_extn("dsn")
        opts = [o for o in mail_options if dsn or not o.startswith(("RET=", "ENVID="))]
        opts = [o for o in opts if o.startswith(("BODY=", "RET=", "ENVID=", "SMTPUTF8"))]
        ropts = [list(rcpt_options[i]) if i < len(rcpt_options) and dsn else []
                 for i in range(len(rcpts))]
        mail_cmd = " ".join([f"MAIL FROM:{smtplib.quoteaddr(mail_from)}", *opts])
        rcpt_cmds = [" ".join([f"RCPT TO:{smtplib.quoteaddr(r)}", *o]) for r, o in zip(rcpts, ropts, strict=True)]
        ascii_only = all(c.isascii() for c in (mail_cmd, *rcpt_cmds))
        # RFC 2920: MAIL, every RCPT and DATA in one write, the replies read in order; a
        # message costs two round trips (envelope, then data) instead of 3 + recipients.
        pipelined = ascii_only and conn.has_extn("pipelining")
        try:
            if pipelined:
                conn.send("".join(f"{c}\r\n" for c in (mail_cmd, *rcpt_cmds, "DATA")))
                mail_code, mail_text = conn.getreply()
            else:
                mail_code, mail_text = conn.mail(mail_from, opts)
        except (smtplib.SMTPServerDisconnected, OSError):
            if reused:
                raise _Stale() from None
            raise
        if mail_code == 421 and reused:
            raise _Stale()
        results: dict[str, Result] = {}
        accepted: list[str] = []
        if mail_code != 250:
            results = {r: Result(mail_code, _text(mail_text)) for r in rcpts}
            if pipelined:
                for _ in rcpt_cmds:
                    conn.getreply()
                if conn.getreply()[0] == 354:  # a broken peer: end the empty message
                    conn.send(".\r\n")
                    conn.getreply()
            conn.rset()
            return results
        for rcpt, o in zip(rcpts, ropts, strict=True):
            code, text = conn.getreply() if pipelined else conn.rcpt(rcpt, o)
            results[rcpt] = Result(code, _text(text))
            if code in (250, 251):
                accepted.append(rcpt)
        code, text = conn.getreply() if pipelined else ((0, b"") if not accepted else conn.docmd("DATA"))
        if code == 354 and not accepted:  # RFC 2920 3.1: DATA went ahead of the refusals
            conn.send(".\r\n")
            conn.getreply()
        if code != 354 or not accepted:
            for rcpt in accepted:
                results[rcpt] = Result(code, _text(text))
            conn.rset()
            return results
        code, text = _send_body(conn, data)
        for rcpt in accepted:
            results[rcpt] = Result(code, _text(text))
        return results

    def close(self) -> None:
        for dest in list(self._conns()):
            self._drop(dest)
