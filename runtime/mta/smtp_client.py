"""The gateway's outbound SMTP client on asyncio: pipelined transactions, reused connections.

Why asyncio, not smtplib in threads: a gateway worker used to run 16 delivery threads, each
blocking on its connection. Every socket call released and re-took the GIL, so the threads, the
queue runner and the listener's event loop spent about a third of the worker's CPU handing the
GIL to each other (some 250 futex calls per message). In the gateway's queue processes this
client runs in the process's event loop: waiting for the next hop costs nothing, and there is
one thread to run Python. `SMTPTransport` gives the same client to blocking code (the
command-line tools), on an event loop of each calling thread's own.

One `Result` per recipient, never an exception for a delivery problem; MAIL, every RCPT and DATA in one write when the peer offers PIPELINING
(RFC 2920); STARTTLS by the destination's TLS policy (runtime.config's TlsPolicy: opportunistic
`may` by default, with a plain retry when the handshake fails; `encrypt`, `verify` and `secure`
never fall back, and a peer that does not meet them gets a 4.7.x temporary failure naming why);
DSN parameters only to a peer that offers DSN; a reused connection that turns out closed is
replaced once, since nothing was delivered on it.
Mail that may go in clear only over TLS (rule 1 of an encryption profile) is sent with
`tls_first=True`: a session that does not meet its policy sends nothing and answers
`TlsNotMet`, so that the queue encrypts the copy instead of waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import re
import socket
import ssl
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from runtime.config.config import TlsPolicy
from runtime.mta.transport import Destination, Result, tls_not_met

CHUNK = 1 << 20  # bytes per write of a large body: the transport buffers at most this much
IDLE_PER_DESTINATION = 64  # open connections kept for reuse, per next hop
MAX_REPLY_LINES = 1000  # lines of one reply; a peer that sends more is broken or hostile
LINE_LIMIT = 1 << 16  # bytes of one reply line (asyncio StreamReader's limit, used before)
QUEUED_REPLIES = 1000  # replies read ahead before we stop reading until some are taken


def envelope_commands(
    mail_from: str, rcpts: Sequence[str], mail_options: Sequence[str],
    rcpt_options: Sequence[Sequence[str]], dsn: bool,
) -> tuple[str, list[str]] | None:
    """The MAIL command and one RCPT command per recipient, with the parameters the next hop
    may see: BODY and SMTPUTF8 always, DSN ones (RFC 3461) only to a peer that offers DSN.
    None when an address or parameter holds a line break (a command injection)."""
    opts = [o for o in mail_options if dsn or not o.startswith(("RET=", "ENVID="))]
    opts = [o for o in opts if o.startswith(("BODY=", "RET=", "ENVID=", "SMTPUTF8"))]
    ropts = [list(rcpt_options[i]) if i < len(rcpt_options) and dsn else []
             for i in range(len(rcpts))]
    # "<>" is how a queue file written before the listener stored "" holds the null sender.
    sender = "" if mail_from == "<>" else mail_from
    mail_cmd = " ".join([f"MAIL FROM:<{sender}>", *opts])
    rcpt_cmds = [" ".join([f"RCPT TO:<{r}>", *o]) for r, o in zip(rcpts, ropts, strict=True)]
    if any("\r" in c or "\n" in c for c in (mail_cmd, *rcpt_cmds)):
        return None
    return mail_cmd, rcpt_cmds


BAD_ADDRESS = Result(553, "5.1.3 an address or parameter holds a line break; not sent")
# RFC 6531 3.2: an internationalized address needs a next hop that takes it.
NO_SMTPUTF8 = Result(553, "5.6.7 the next hop does not support SMTPUTF8 addresses")


class ProtocolError(Exception):
    """The peer's reply was not SMTP, or the connection ended in the middle of one."""


class TlsPolicyFailure(Exception):
    """The next hop does not meet the destination's TLS policy: the text is the reply that
    each recipient gets (a temporary failure: the policy or the peer may be fixed)."""


MAY = TlsPolicy()
_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
             "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def tls_context(policy: TlsPolicy) -> ssl.SSLContext:
    """The client context for a policy. Names are checked by `check_names`, not by OpenSSL:
    the names to accept come from the policy (several, with .domain forms), not from the
    host we connect to."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    if policy.level in ("verify", "secure"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        if policy.ca_file is not None:
            ctx.load_verify_locations(**({"capath": str(policy.ca_file)}
                                         if policy.ca_file.is_dir()
                                         else {"cafile": str(policy.ca_file)}))
    else:
        # may and encrypt: any certificate; the peer's certificate is not what decides
        # whether mail goes out (as smtplib's starttls() by default, and Postfix's levels).
        ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ValueError):  # a version this OpenSSL was built without
        ctx.minimum_version = _VERSIONS[policy.min_version]
    if policy.ciphers:
        ctx.set_ciphers(policy.ciphers)
    return ctx


def certificate_names(cert: dict[str, Any]) -> list[str]:
    """The DNS names of a verified peer certificate (getpeercert()): its subjectAltName DNS
    entries, else (RFC 6125 6.4.4) its subject's common name."""
    sans = cert.get("subjectAltName") or ()
    names = [str(v).lower() for k, v in sans if k == "DNS"]
    if names:
        return names
    for rdn in cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                names.append(str(value).lower())
    return names


def _name_matches(cert_name: str, wanted: str) -> bool:
    """One certificate name against one policy name: "host" exactly (a certificate's
    "*.example.com" covers one label), ".example.com" any name below example.com,
    "*.example.com" (an MTA-STS mx pattern) a name one label below it."""
    wanted = wanted.lower().rstrip(".")
    cert_name = cert_name.rstrip(".")
    if wanted.startswith("*."):
        if cert_name == wanted:
            return True
        head, _, rest = cert_name.partition(".")
        return bool(head) and head != "*" and rest == wanted[2:]
    if wanted.startswith("."):
        base = cert_name[2:] if cert_name.startswith("*.") else cert_name
        return base.endswith(wanted) and len(base) > len(wanted)
    if cert_name.startswith("*."):
        head, _, rest = wanted.partition(".")
        return bool(head) and rest == cert_name[2:]
    return cert_name == wanted


def check_names(cert: dict[str, Any], wanted: Sequence[str]) -> str | None:
    """None when one of the certificate's names matches one of `wanted`; else why not."""
    names = certificate_names(cert)
    for name in names:
        if any(_name_matches(name, w) for w in wanted):
            return None
    return (f"certificate names {', '.join(names) or '(none)'} do not match "
            f"{', '.join(wanted)}")


class _Stale(Exception):
    """A reused connection was closed before it answered anything: nothing was delivered."""


_EOF = ProtocolError("end of stream")  # marks the end in _Conn._replies
_SEPARATORS = (b" ", b"-", b"\r", b"")  # after the code; b"": the line ends there


def _text(lines: list[bytes]) -> str:
    return b"\n".join(lines).decode("utf-8", "replace")


class _Conn(asyncio.Protocol):
    """One connection to a next hop: the SMTP replies, parsed as the bytes arrive, and the
    connection's watchdog.

    Why a protocol of our own rather than asyncio's streams: each reply line cost a
    readline() and a readuntil() of the StreamReader, and every write and drain went through
    the StreamWriter. Here the bytes are cut into replies where they arrive, and `reply` hands
    out one that is already there without waiting: the client alone went from 55 to 45 us of
    CPU per message to smtp-sink, bench/queue_cpu.py --bare from 225-240 to 185-205 (best of
    3 rounds, three alternating runs each).

    Every wait on the peer (a reply, a drain of what we wrote) must end within `timeout` of
    its start. An `asyncio.timeout` around each wait cost a Timeout object and a timer armed
    and cancelled, six times per message; here each wait only moves `_deadline` forward, and
    one timer per connection fires when the earliest deadline may have passed: it re-arms
    itself for a deadline that moved, and aborts the connection when it has really passed.
    The wait then ends (end of stream, or a reset) and `timed_out` turns it into TimeoutError,
    as asyncio.timeout did."""

    def __init__(self, timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.extensions: set[str] = set()
        self.timed_out = False
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._deadline = math.inf  # none while the connection waits in the idle pool
        self._timer: asyncio.TimerHandle | None = None
        self._buf = b""  # the start of a reply line not complete yet
        self._lines: list[bytes] = []  # lines of the reply being received
        # Complete replies not asked for yet, in order; an exception ends the list for good
        # (what was wrong with the stream, raised to every later `reply`).
        self._replies: collections.deque[tuple[int, str] | BaseException] = collections.deque()
        self._failed = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None  # a `reply` waiting for bytes
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None  # a `drain` waiting for room
        self._lost = False
        self._lost_by: Exception | None = None  # what ended the connection, if an error did

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        pieces = (self._buf + data if self._buf else data).split(b"\n")
        self._buf = pieces.pop()  # what follows the last line end: the start of a line
        lines = self._lines
        for line in pieces:  # each without its "\n"
            if len(line) >= LINE_LIMIT:  # asyncio's StreamReader limit, which readline used
                self._fail(ProtocolError("reply line too long"))
                return
            if len(lines) >= MAX_REPLY_LINES:
                self._fail(ProtocolError("reply too long"))
                return
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in _SEPARATORS:
                self._fail(ProtocolError(f"not an SMTP reply: {line[:60]!r}"))
                return
            lines.append(line[4:].rstrip(b"\r"))
            if line[3:4] != b"-":
                self._replies.append((int(line[:3]), _text(lines)))
                lines = self._lines = []
        if len(self._buf) >= LINE_LIMIT:
            self._fail(ProtocolError("reply line too long"))
            return
        # A peer that sends replies nobody asked for must not fill our memory.
        if len(self._replies) > QUEUED_REPLIES and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._end(None)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._lost_by = exc
        self._end(exc)
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self, exc: Exception | None) -> None:
        """The stream ended: with a half reply, or with an error, the next `reply` raises."""
        if not self._failed:
            self._fail(exc if exc is not None else _EOF)

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self._buf = b""
        self._replies.append(exc)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- what the client uses ------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport took what was written (when it holds too much)."""
        if not self._writing_paused and not self._lost:
            return
        if not self._lost:
            self.wait_starts()
            self._drained = self._loop.create_future()
            await self._drained
        if self._lost:  # as StreamWriter.drain: the reader's error, else "Connection lost"
            raise self._lost_by or ConnectionResetError("Connection lost")

    async def reply(self) -> tuple[int, str]:
        """The next reply of the peer: (code, text with the lines joined by newlines)."""
        replies = self._replies
        if not replies:
            self.wait_starts()
            while not replies:
                self._waiter = self._loop.create_future()
                await self._waiter
        got = replies[0]
        if isinstance(got, BaseException):
            if got is _EOF:
                if self.timed_out:
                    raise TimeoutError()
                raise ProtocolError("connection closed in the middle of a reply")
            raise got
        replies.popleft()
        if self._reading_paused and len(replies) <= QUEUED_REPLIES // 2:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return got

    def discard_replies(self) -> None:
        """Forget whatever the peer sent ahead (RFC 3207 4.2: nothing read before the TLS
        handshake may be taken as said after it)."""
        if not self._failed:
            self._buf = b""
            self._lines = []
            self._replies.clear()

    def usable(self) -> bool:
        return not self._failed and self.transport is not None \
            and not self.transport.is_closing()

    def wait_starts(self) -> None:
        """The next wait on the peer must end within the timeout from now."""
        self._deadline = self._loop.time() + self._timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._watch)

    def waits_done(self) -> None:
        """Idle from now on (back in the pool): no deadline."""
        self._deadline = math.inf

    def _watch(self) -> None:
        self._timer = None
        if self._deadline == math.inf:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._watch)
            return
        self.timed_out = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


class AsyncSMTPTransport:
    """SMTP client for the gateway's event loop; `send_async` is its one operation."""

    def __init__(self, timeout: float = 30.0, helo: str | None = None) -> None:
        self.timeout = timeout
        self.helo = helo or socket.getfqdn()
        # Idle connections per next hop and TLS policy: a connection made under `may` (maybe
        # in the clear) must never carry mail whose domain requires `verify`.
        # (Under `secure` without `match`, the names checked are the domain's: its domain too.)
        self._idle: dict[tuple[Destination, TlsPolicy, str], list[_Conn]] = defaultdict(list)
        self._contexts: dict[TlsPolicy, ssl.SSLContext] = {}

    def _context(self, policy: TlsPolicy) -> ssl.SSLContext:
        ctx = self._contexts.get(policy)
        if ctx is None:
            ctx = self._contexts[policy] = tls_context(policy)
        return ctx

    # -- the wire --------------------------------------------------------------------------

    async def _drain(self, conn: _Conn) -> None:
        try:
            await conn.drain()
        except ConnectionError:
            if conn.timed_out:
                raise TimeoutError() from None
            raise

    async def _command(self, conn: _Conn, line: str) -> tuple[int, str]:
        conn.write(line.encode("utf-8") + b"\r\n")
        await self._drain(conn)
        return await conn.reply()

    async def _ehlo(self, conn: _Conn) -> None:
        code, text = await self._command(conn, f"EHLO {self.helo}")
        if code != 250:
            code, text = await self._command(conn, f"HELO {self.helo}")
            if code != 250:
                raise ProtocolError(f"HELO refused: {code} {text}")
            conn.extensions = set()
            return
        conn.extensions = {ln.split(" ", 1)[0].strip().lower() for ln in text.split("\n")[1:]}

    async def _open(self, dest: Destination, policy: TlsPolicy, tls: bool,
                    domain: str) -> _Conn:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            _, conn = await loop.create_connection(lambda: _Conn(self.timeout), dest.host,
                                                   dest.port)
        required = policy.level not in ("none", "may")
        what = f"TLS policy '{policy.level}' for {domain or dest.host}"
        try:
            code, text = await conn.reply()
            if code != 220:
                raise ProtocolError(f"greeting {code} {text}")
            await self._ehlo(conn)
            if required and "starttls" not in conn.extensions:
                raise TlsPolicyFailure(f"4.7.4 {what}: {dest} does not offer STARTTLS")
            if tls and "starttls" in conn.extensions:
                code, text = await self._command(conn, "STARTTLS")
                if code != 220:
                    if required:
                        raise TlsPolicyFailure(f"4.7.4 {what}: {dest} refused STARTTLS: "
                                               f"{code} {text}")
                    raise ssl.SSLError(f"STARTTLS refused: {code} {text}")
                # The handshake has a timeout of its own; the watchdog must not abort the
                # transport that start_tls is replacing.
                conn.waits_done()
                conn.discard_replies()
                assert conn.transport is not None
                try:
                    async with asyncio.timeout(self.timeout):
                        secured = await loop.start_tls(
                            conn.transport, conn, self._context(policy),
                            server_hostname=dest.host if not _is_ip(dest.host) else None)
                except ssl.SSLCertVerificationError as exc:
                    raise TlsPolicyFailure(f"4.7.5 {what}: certificate of {dest} not "
                                           f"verified: {exc.verify_message}") from None
                except (ssl.SSLError, OSError, TimeoutError) as exc:
                    if required:
                        raise TlsPolicyFailure(f"4.7.5 {what}: TLS handshake with {dest} "
                                               f"failed: {exc or type(exc).__name__}") from None
                    raise
                assert isinstance(secured, asyncio.Transport)
                conn.transport = secured
                if policy.level in ("verify", "secure"):
                    wanted = policy.match or (
                        (dest.host,) if policy.level == "verify" else (domain, "." + domain))
                    cert = secured.get_extra_info("peercert") or {}
                    problem = check_names(cert, wanted)
                    if problem is not None:
                        raise TlsPolicyFailure(f"4.7.5 {what}: certificate of {dest} not "
                                               f"verified: {problem}")
                await self._ehlo(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self, dest: Destination, policy: TlsPolicy,
                       domain: str) -> tuple[_Conn, bool]:
        """An idle connection to `dest` under `policy` (True) or a new one (False)."""
        idle = self._idle[(dest, policy, _checked_domain(policy, domain))]
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        if policy.level != "may":
            return await self._open(dest, policy, policy.level != "none", domain), False
        try:
            return await self._open(dest, policy, True, domain), False
        except (ssl.SSLError, ssl.CertificateError):
            # A peer that offers STARTTLS but cannot finish it: deliver in the clear rather
            # than not at all, as an MTA does without a policy that requires TLS.
            return await self._open(dest, policy, False, domain), False

    def _release(self, key: tuple[Destination, TlsPolicy, str], conn: _Conn) -> None:
        idle = self._idle[key]
        if conn.usable() and len(idle) < IDLE_PER_DESTINATION:
            conn.waits_done()
            idle.append(conn)
        else:
            conn.close()

    # -- one message -----------------------------------------------------------------------

    async def send_async(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
        tls: TlsPolicy = MAY, *, tls_first: bool = False,
    ) -> dict[str, Result]:
        """Deliver one copy; `tls` is the TLS policy of the recipients' domain. A session that
        does not meet it gets each recipient a 451 4.7.x naming why; with `tls_first` (rule 1,
        whose policy the queue raised to at least `encrypt`) a `TlsNotMet` instead, so that the
        queue sends the copy encrypted rather than waiting."""
        domain = rcpts[0].rpartition("@")[2].lower() if rcpts else ""
        for _ in range(2):  # a second time only when a reused connection turned out closed
            try:
                conn, reused = await self._connect(dest, tls, domain)
            except TlsPolicyFailure as exc:
                if tls_first:
                    return dict.fromkeys(rcpts, tls_not_met(str(exc)))
                return {r: Result(451, str(exc)) for r in rcpts}
            except (OSError, ProtocolError, TimeoutError, ssl.SSLError) as exc:
                return {r: Result(451, f"4.4.1 cannot connect to {dest}: {exc}") for r in rcpts}
            try:
                results, clean = await self._transaction(conn, reused, mail_from, rcpts, data,
                                                         mail_options, rcpt_options)
            except _Stale:
                conn.close()
                continue
            except (OSError, ProtocolError, TimeoutError, ssl.SSLError) as exc:
                conn.close()
                text = str(exc) or type(exc).__name__
                return {r: Result(451, f"4.4.2 connection to {dest} failed: {text}") for r in rcpts}
            except BaseException:
                conn.close()  # cancelled mid-transaction: the connection's state is unknown
                raise
            if clean:
                self._release((dest, tls, _checked_domain(tls, domain)), conn)
            else:
                conn.close()
            return results
        return {r: Result(451, f"4.4.2 connection to {dest} closed twice") for r in rcpts}

    async def _transaction(
        self, conn: _Conn, reused: bool, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str], rcpt_options: Sequence[Sequence[str]],
    ) -> tuple[dict[str, Result], bool]:
        """(results, whether the connection is at a clean state for another message)."""
        commands = envelope_commands(mail_from, rcpts, mail_options, rcpt_options,
                                     "dsn" in conn.extensions)
        if commands is None:
            return {r: BAD_ADDRESS for r in rcpts}, True
        mail_cmd, rcpt_cmds = commands
        ascii_only = all(c.isascii() for c in (mail_cmd, *rcpt_cmds))
        if not ascii_only and "smtputf8" not in conn.extensions:
            return {r: NO_SMTPUTF8 for r in rcpts}, True
        pipelined = "pipelining" in conn.extensions
        try:
            if pipelined:
                conn.write("".join(f"{c}\r\n" for c in (mail_cmd, *rcpt_cmds, "DATA"))
                                  .encode("utf-8"))
                await self._drain(conn)
                mail_code, mail_text = await conn.reply()
            else:
                mail_code, mail_text = await self._command(conn, mail_cmd)
        except (OSError, ProtocolError):
            if reused:
                raise _Stale() from None
            raise
        if mail_code == 421 and reused:
            raise _Stale()
        results: dict[str, Result] = {}
        if mail_code != 250:
            results = {r: Result(mail_code, mail_text) for r in rcpts}
            if pipelined:
                for _ in rcpt_cmds:
                    await conn.reply()
                if (await conn.reply())[0] == 354:  # a broken peer: end the empty message
                    conn.write(b".\r\n")
                    await conn.reply()
            return results, await self._rset(conn)
        accepted: list[str] = []
        for rcpt, cmd in zip(rcpts, rcpt_cmds, strict=True):
            code, text = await conn.reply() if pipelined else await self._command(conn, cmd)
            results[rcpt] = Result(code, text)
            if code in (250, 251):
                accepted.append(rcpt)
        if pipelined:
            code, text = await conn.reply()
        elif accepted:
            code, text = await self._command(conn, "DATA")
        else:
            code, text = 0, ""
        if code == 354 and not accepted:  # RFC 2920 3.1: DATA went ahead of the refusals
            conn.write(b".\r\n")
            await conn.reply()
        if code != 354 or not accepted:
            for rcpt in accepted:
                results[rcpt] = Result(code, text)
            return results, await self._rset(conn)
        code, text = await self._body(conn, data)
        for rcpt in accepted:
            results[rcpt] = Result(code, text)
        return results, True

    async def _rset(self, conn: _Conn) -> bool:
        with contextlib.suppress(OSError, ProtocolError, TimeoutError):
            return (await self._command(conn, "RSET"))[0] == 250
        return False

    async def _body(self, conn: _Conn, data: bytes) -> tuple[int, str]:
        # Spooled messages are CRLF-only (the listener refuses bare CR/LF), so dot-stuffing is
        # the one change; a message without a line that starts with a dot goes out as it is.
        if data.startswith(b".") or b"\n." in data:
            data = re.sub(rb"(?m)^\.", b"..", data)
        end = b".\r\n" if data.endswith(b"\r\n") or not data else b"\r\n.\r\n"
        if len(data) <= CHUNK:
            conn.write(data + end)
        else:
            # In slices, each drained before the next: the transport copies what the socket
            # does not take at once, and a 50 MB message must not be copied whole.
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                conn.write(view[start:start + CHUNK])
                await self._drain(conn)
            conn.write(end)
        await self._drain(conn)
        return await conn.reply()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.write(b"QUIT\r\n")
                conn.close()
        self._idle.clear()


def _checked_domain(policy: TlsPolicy, domain: str) -> str:
    """The recipient domain when the policy checks the certificate against it (`secure`
    without `match`), else "": what a connection's check depended on besides the policy."""
    return domain if policy.level == "secure" and not policy.match else ""


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


class SMTPTransport:
    """The same client for blocking callers: each thread drives its own event loop, so each
    thread keeps its own connections (reused from one message to the next)."""

    def __init__(self, timeout: float = 30.0, helo: str | None = None) -> None:
        self.timeout = timeout
        self.helo = helo
        self._local = threading.local()

    def _client(self) -> tuple[asyncio.AbstractEventLoop, AsyncSMTPTransport]:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = (asyncio.new_event_loop(),
                                         AsyncSMTPTransport(self.timeout, self.helo))
        return state

    def send(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
    ) -> dict[str, Result]:
        loop, client = self._client()
        return loop.run_until_complete(
            client.send_async(dest, mail_from, rcpts, data, mail_options, rcpt_options))

    def close(self) -> None:
        """Close the calling thread's connections."""
        state = getattr(self._local, "state", None)
        if state is not None:
            loop, client = state
            loop.run_until_complete(client.aclose())
            loop.close()
            self._local.state = None
