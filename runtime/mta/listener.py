"""The SMTP listener (aiosmtpd): host access table, limits, smuggling guard, durable 250.

The handler answers 250 to DATA only after the message's file and its directory were synced
(Spool.stage, then a group commit shared with the messages that finish close by). A large
message is written in a thread so it never blocks the event loop that serves the other
sessions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import email.utils
import fnmatch
import functools
import inspect
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections import defaultdict
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    BOGUS_LIMIT,
    MISSING,
    SMTP,
    AuthResult,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    syntax,
)
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from runtime.config.config import GatewayConfig, Listener, MailFlowPolicy
from runtime.config.users import UsersFile
from runtime.engine.fieldline import field
from runtime.engine.limits import check_structure
from runtime.mta import memtrim
from runtime.mta.connlimits import ConnectionLimits
from runtime.mta.diskspace import FreeSpace
from runtime.mta.groupcommit import GroupCommit
from runtime.mta.hostlimits import MESSAGES, RECIPIENTS, HostCounters, client_of
from runtime.mta.spool import Envelope, Spool, SpoolError

log = logging.getLogger("filterlang.smtp")


class _LoginDataDeprecation(logging.Filter):
    """aiosmtpd's smtp_AUTH sets the deprecated Session.login_data after every successful
    AUTH, and that setter logs a warning each time: one line per submitted message in the
    gateway's log that says nothing an operator can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


logging.getLogger("mail.log").addFilter(_LoginDataDeprecation())

# Reply codes (RFC 5321 + RFC 3463 enhanced codes).
OK_QUEUED = "250 2.0.0 OK queued as {queue_id}"
OK_SENDER = "250 2.1.0 OK"
OK_RCPT = "250 2.1.5 OK"
TEMP_LOCAL_ERROR = "451 4.3.0 Temporary local problem, try again later"
TEMP_SPOOL_ERROR = "451 4.3.1 Queue write failed, try again later"
DISK_LOW = "452 4.3.1 Insufficient system storage, try again later"
TOO_MANY_RCPTS = "452 4.5.3 Too many recipients (max_recipients={limit})"
RELAY_DENIED = "550 5.7.1 Relaying denied"
# The host access table's rates and per-connection cap, each reply naming the policy's key
# that refused (AsyncOS names its limits in the reply too): 452 at MAIL or RCPT keeps the
# session (the client tries that message or recipient again later); past the messages of one
# connection the client is told to reconnect (421, as Exim's smtp_accept_max_per_connection).
MESSAGES_PER_HOUR = ("452 4.7.0 Too many messages this hour from your address "
                     "(max_messages_per_hour={limit})")
RECIPIENTS_PER_HOUR = ("452 4.7.0 Too many recipients this hour from your address "
                       "(max_recipients_per_hour={limit})")
RECIPIENTS_PER_SENDER = ("452 4.7.0 Too many recipients this hour from this sender "
                         "(max_recipients_per_hour_per_sender={limit})")
MESSAGES_PER_CONNECTION = ("421 4.7.0 Too many messages in this connection "
                           "(max_messages_per_connection={limit}), send the rest on a new one")
SESSION_TIMEOUT = "421 4.4.2 Session time limit exceeded, closing connection"
POLICY_REJECT = "554 5.7.1 Access denied"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
BARE_LINE_END = "550 5.5.2 Message contains bare CR or LF line endings; use CRLF"
NUL_IN_MESSAGE = "550 5.6.0 Message contains NUL characters"
# A CR, LF or NUL inside a command line: an address or parameter carrying one would end up
# in a header we write, or in what a next hop reads (issue 13 item 1).
BAD_COMMAND_BYTES = "501 5.5.2 Syntax error: CR, LF or NUL in command"
TLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_REQUIRED = "530 5.7.0 Authentication required"  # aiosmtpd's, under auth_required
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_TEMP = "454 4.7.0 Temporary authentication failure"
AUTH_LOCKED = "421 4.7.0 Too many failed authentication attempts from your address, try again later"

TOO_MANY_HOPS = "554 5.4.6 Too many hops (mail loop?)"
LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
DATA_TOO_BIG = "552 5.3.4 Too much mail data"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
STREAM_LIMIT = 32 * 1024  # bytes buffered per connection before reading pauses: 2x this
SPLIT_LINES_UP_TO = 1 << 20  # bytes: longest_line splits a message up to this size at once

DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")
# MAIL's AUTH= (RFC 4954 5): accepted since AUTH is offered, and dropped: it is the client's
# claim about who submitted the message, never passed on to a next hop.
IGNORED_PARAMS = ("AUTH",)
INLINE_STORE = 256 * 1024  # bytes: larger messages are written and fsync'd in a thread
MAX_HOPS = 30  # Received: headers; more means a mail loop (Postfix's hopcount_limit is 50)


_REPLY_UNSAFE = re.compile(r"[\r\n\0]")
_REPLY_UNSAFE_BYTES = re.compile(rb"[\r\n\0]")


def count_hops(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else len(data)]
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


@functools.lru_cache(maxsize=4)
def _local_date(second: int) -> str:
    # The date has whole seconds: formatting it once per second, not once per message (local
    # time zone lookup and all, ~1% of a worker's CPU).
    return email.utils.formatdate(second, localtime=True)


def received_header(session: Session, hostname: str, queue_id: str, rcpts: list[str],
                    tls: bool, auth: bool = False) -> bytes:
    """Our trace line (RFC 5321 4.4); the `for` clause only for a single recipient. The
    protocol names TLS and SMTP AUTH as RFC 3848 has them (ESMTPS, ESMTPA, ESMTPSA), as
    Postfix writes them; the user name stays out of it (Postfix's default, for privacy)."""
    ip = str(session.peer[0]) if session.peer else "unknown"
    helo = "".join(c for c in (session.host_name or "unknown") if c.isprintable() and c not in "()")
    proto = (("ESMTPS" if tls else "ESMTP") + ("A" if auth else "")
             if session.extended_smtp or tls or auth else "SMTP")
    date = _local_date(int(time.time()))
    by = f"by {hostname} (filterlang) with {proto} id {queue_id}"
    if len(rcpts) == 1:
        return field("Received", f"from {helo[:200]} ([{ip}])", by, f"for <{rcpts[0]}>;", date)
    return field("Received", f"from {helo[:200]} ([{ip}])", f"{by};", date)


def _matches_host(hostname: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(hostname.lower(), p.lower()) for p in patterns)


def choose_policy(config: GatewayConfig, ip: str, hostname: str = "",
                  tls_subject: str = "") -> MailFlowPolicy:
    """Host access table: the first sender group that matches decides; else the default.
    `tls_subject`: a verified client certificate's subject, once STARTTLS gave one."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        addr = None
    for group in config.sender_groups:
        if addr is not None and any(addr in net for net in group.networks):
            return config.policies[group.policy]
        if hostname and _matches_host(hostname, group.hosts):
            return config.policies[group.policy]
        if tls_subject and any(fnmatch.fnmatchcase(tls_subject.lower(), p.lower())
                               for p in group.tls_subjects):
            return config.policies[group.policy]
    return config.policies[config.default_policy]


def client_peer(peername: Any) -> tuple[Any, ...]:
    """The client's (address, port) as the gateway names it. A listener on "::" takes IPv4
    clients too (Linux's dual stack) and the socket names them ::ffff:192.0.2.1: an address
    in no IPv4 sender group, so such a client fell to the default policy (our own relays were
    refused, a blocklisted network accepted) and SPF, Received and tracking named it wrongly.
    It is its IPv4 address."""
    if not peername:
        return ("", 0)
    try:
        addr = ipaddress.ip_address(peername[0])
    except (ValueError, TypeError):
        return tuple(peername)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return (str(addr.ipv4_mapped), *tuple(peername)[1:2])
    return tuple(peername)


def client_subject(transport: asyncio.BaseTransport) -> str:
    """The subject (RFC 4514) of the client certificate this TLS session verified, or ""."""
    obj = transport.get_extra_info("ssl_object")
    # getpeercert() is a non-empty dict only for a certificate that was verified.
    if obj is None or not obj.getpeercert():
        return ""
    der = obj.getpeercert(binary_form=True)
    if not der:
        return ""
    from cryptography import x509  # only for sessions with a client certificate

    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


def may_relay(policy: MailFlowPolicy, auth_user: str) -> bool:
    """Whether a session under `policy` may mail any domain: a RELAY policy, or a session that
    authenticated where the policy lets authenticated sessions relay."""
    return policy.action == "RELAY" or bool(auth_user and policy.auth_relay)


# Password checks (argon2, ~50-150 ms of CPU and 64 MiB each) run here: off the event loop,
# and at most two at once, so a flood of AUTH attempts costs a bounded amount of memory and
# never holds up the default executor that large spool writes use.
_VERIFY = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="smtp-auth")


_BARE_LF = re.compile(rb"(?<!\r)\n")


def normalize_line_endings(data: bytes, policy: MailFlowPolicy) -> bytes:
    """Under ``bare_line_endings = "normalize"``, every LF not after a CR becomes CRLF (what
    the client meant); otherwise the data as sent, for `check_line_endings` to judge."""
    if policy.bare_line_endings == "normalize" and b"\n" in data:
        return _BARE_LF.sub(b"\r\n", data)
    return data


def check_line_endings(data: bytes) -> str | None:
    """Refuse SMTP-smuggling shapes: any CR not before LF, any LF not after CR, any NUL."""
    if b"\0" in data:
        return NUL_IN_MESSAGE
    if data.count(b"\r") != data.count(b"\r\n") or data.count(b"\n") != data.count(b"\r\n"):
        return BARE_LINE_END
    return None


def _raw_params(arg: str | None) -> list[str]:
    """ESMTP parameters after the address, keyword upper-cased, value kept as sent."""
    if not arg or ">" not in arg:
        return []
    out = []
    for item in arg.rsplit(">", 1)[1].split():
        key, sep, value = item.partition("=")
        out.append(f"{key.upper()}{sep}{value}")
    return out


def _keep_case(server: SMTP, options: list[str]) -> list[str]:
    raw = getattr(server, "raw_params", None)
    return raw if raw is not None and len(raw) == len(options) else options


_COMMANDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _commands(cls: type) -> tuple[tuple[str, str], ...]:
    """(command, method name) for the smtp_* methods of `cls`, found once per class."""
    found = _COMMANDS.get(cls)
    if found is None:
        found = _COMMANDS[cls] = tuple(
            (name[5:], name) for name in dir(cls) if name.startswith("smtp_")
        )
    return found


# `<dot-atom@domain>`, what almost every client sends: matched directly. The email header
# parser that handles everything else was ~5% of a worker's CPU for MAIL and RCPT alone.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ANGLE = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


def _simple_angle_addr(arg: str) -> tuple[str, str] | None:
    """get_angle_addr's (address, rest) for a plain `<local@domain>`, or None to parse fully.

    The parser also drops the folding white space and comments after `>`: this covers only
    spaces and tabs followed by no comment, and leaves the rest to it."""
    m = _SIMPLE_ANGLE.match(arg)
    if m is None:
        return None
    rest = arg[m.end():].lstrip(" \t")
    if rest[:1] == "(" or rest[:1].isspace():
        return None
    return m.group(1), rest


def longest_line(data: bytes) -> int:
    """The length of the longest CRLF-terminated line, CRLF included (a bare CR or LF is part
    of its line, as for aiosmtpd; such messages are refused later anyway)."""
    if len(data) <= SPLIT_LINES_UP_TO:
        *lines, rest = data.split(b"\r\n")
        return max(max(map(len, lines), default=-2) + 2, len(rest))
    # A large message: one line at a time, no list of lines as big as the message.
    longest = start = 0
    find = data.find
    while True:
        end = find(b"\r\n", start)
        if end < 0:
            return max(longest, len(data) - start)
        longest = max(longest, end + 2 - start)
        start = end + 2


def unstuff(data: bytes) -> bytes:
    """Remove the transparency dot of every line that starts with one (RFC 5321 4.5.2)."""
    if data[:1] == b".":
        data = data[1:]
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n")
    return data


async def read_data(reader: asyncio.StreamReader, size_limit: int | None, line_limit: int,
                    policy: MailFlowPolicy | None = None) -> tuple[bytes, str | None]:
    """The message after DATA, up to the line that holds only a dot: (content, None), or
    (b"", reply) when a line or the message is too long (read to its end all the same).

    aiosmtpd reads one line per await, ~70 us of a listener's CPU for a 4 KB message; this
    reads up to each ".<CR><LF>" instead and keeps it only when the dot starts a line, i.e.
    when the two bytes before it are CRLF (the DATA command's own CRLF for the first line).
    A dot after a bare CR or LF therefore never ends the message: no smuggling shape can.
    Bare LFs are normalized here (before the transparency dots come off) when the `policy`
    says so; a long "line" that is really lines with bare LFs is refused as that, not as a
    line too long, since that is what the sender has to fix.
    """
    pieces: list[bytes] = []
    size = 0
    tail = b"\r\n"  # the last two bytes read so far
    too_big = False
    while True:
        try:
            chunk = await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as exc:
            # More than the stream's limit before the next ".<CR><LF>": take what can be
            # taken (the reader keeps back any partial separator) and look again.
            chunk = await reader.readexactly(exc.consumed)
            end = False
        else:
            # The two bytes before the dot, without copying a chunk of up to STREAM_LIMIT.
            before = chunk[-5:-3] if len(chunk) >= 5 else (tail + chunk[:-3])[-2:]
            end = before == b"\r\n"
        body = len(chunk) - 3 if end else len(chunk)
        size += body
        if size_limit and size > size_limit:
            too_big = True
            pieces.clear()  # keep reading to the end, holding nothing
        elif body:
            pieces.append(chunk[:body] if end else chunk)
        if end:
            break
        tail = chunk[-2:] if len(chunk) >= 2 else (tail + chunk)[-2:]
    if too_big:
        return b"", DATA_TOO_BIG
    data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    del pieces
    if policy is not None:
        data = normalize_line_endings(data, policy)
    if len(data) > line_limit and longest_line(data) > line_limit:
        return b"", check_line_endings(data) or LINE_TOO_LONG
    return unstuff(data), None


class GatewaySMTP(SMTP):
    """aiosmtpd's protocol with the host access table at connect and a session time limit.

    Three fast paths use aiosmtpd's private internals, each measured worth 5% or more of the
    gateway's CPU per message (bench/gateway.py, alternating runs, issue 12 item 6): the
    per-connection tables set from caches (``__dir__``), ``_getaddr`` without a class made per
    call, and ``smtp_DATA`` reading with ``read_data``. A ``push`` without the drain and one
    idle timer per connection gained under 2% each and were dropped. The copy of aiosmtpd's
    command loop gains under 2% too, but stays for what aiosmtpd's loop cannot do (see
    ``_handle_client``). aiosmtpd is pinned below 1.5, and
    tests/dependencies/test_aiosmtpd_internals.py names what moved in a new release.
    """

    # aiosmtpd sizes each connection's stream buffer from this class attribute (it pauses
    # reading at twice the limit): at its 1,001 bytes a 4 KB message paused and resumed the
    # socket twice, four epoll_ctl calls per message. Commands stay capped by aiosmtpd's
    # command_size_limits and DATA lines by the instance's `line_length_limit` (the listener's
    # max_line_length), set in __init__.
    line_length_limit = STREAM_LIMIT

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ builds its tables of command methods, handler hooks and AUTH
        # mechanisms from inspect.getmembers() and dir() of the protocol and the handler, and
        # checks handle_EHLO's signature with inspect, for every connection: 27 us of the
        # ~30 us it took to make one, with each message on its own connection. Nothing else
        # looks here, so it finds nothing, and __init__ below sets the tables from what is
        # found once per class and handler.
        return []

    def __init__(self, handler: GatewayHandler, listener: Listener, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._smtp_methods = {cmd: getattr(self, name) for cmd, name in _commands(type(self))}
        if self._proxy_timeout is not None:
            # aiosmtpd's own command loop runs (see _handle_client), which lets a CR or NUL
            # inside a line through to the command: refuse it before the command sees it.
            self._smtp_methods = {cmd: self._refusing_bad_bytes(method)
                                  for cmd, method in self._smtp_methods.items()}
        self._handle_hooks = handler.hooks
        # Our handle_EHLO takes the responses and returns them (aiosmtpd's "new" form). AUTH
        # mechanisms only where the listener offers them (with LOGIN and PLAIN offered and
        # failing always, a client set to authenticate would defer its mail); ours, since
        # aiosmtpd's check the password in its event loop (its authenticator is synchronous).
        self._ehlo_hook_ver = "new"
        self._auth_methods = {
            mech: _AuthMechAttr(getattr(self, f"auth_mech_{mech}"), True) for mech in listener.auth
        }
        self._gw_users = handler.users.get(listener.name)
        self._gw_handler = handler
        self._gw_listener = listener
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False  # counted in by the connection caps
        # Its records in the shared counts (its listener's, its IP's), for the release.
        self._ticket: tuple[int, ...] = ()
        self._mails = 0  # MAIL commands accepted in this session
        self.raw_params: list[str] | None = None
        self.line_length_limit = listener.max_line_length + 1
        self._held_lines: list[bytes] = []  # a multi-line reply's lines until its last

    def _refusing_bad_bytes(self, method: Any) -> Any:
        async def guarded(arg: str | None) -> None:
            if arg and ("\r" in arg or "\n" in arg or "\0" in arg):
                await self.push(BAD_COMMAND_BYTES)
                return
            await method(arg)

        return guarded

    async def _handle_client(self) -> None:
        """aiosmtpd's command loop with the same replies, limits and error handling, and the
        raw command line in hand: aiosmtpd's loop strips every CR and LF at the end of a line
        before any command sees it, so a bare CR there could not be refused (issue 13 item 1;
        under PROXY, where aiosmtpd's loop runs, such a CR is stripped, never stored). It also
        skips the two log calls aiosmtpd makes per command line (under 2% of the gateway's CPU
        per message, bench/gateway.py). With the PROXY protocol configured, aiosmtpd's own
        loop runs."""
        if self._proxy_timeout is not None:
            await super()._handle_client()
            return
        assert self.session is not None and self._reader is not None
        reader = self._reader
        await self.push(f"220 {self.hostname} {self.__ident__}")
        call_limit: dict[str, int] = (
            defaultdict(lambda: self._call_limit_default, self._call_limit_base)
            if self._enforce_call_limit else {}
        )
        bogus_budget = BOGUS_LIMIT
        while self.transport is not None:
            try:
                try:
                    line = await reader.readuntil()
                except asyncio.LimitOverrunError as error:
                    # Longer than the stream buffer: read to the end of the line, then refuse.
                    await reader.read(error.consumed)
                    while True:
                        try:
                            await reader.readuntil()
                            break
                        except asyncio.LimitOverrunError as more:
                            await reader.read(more.consumed)
                    await self.push("500 Command line too long")
                    continue
                # Only the line's own end goes: "RCPT TO:<a>\r\r\n" keeps its bare CR,
                # refused below (rstrip would have taken both).
                line = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
                if not line:
                    await self.push("500 Error: bad syntax")
                    continue
                if b"\r" in line or b"\n" in line or b"\0" in line:
                    await self.push(BAD_COMMAND_BYTES)
                    continue
                command_bytes, _, arg_bytes = line.partition(b" ")
                try:
                    command = command_bytes.upper().decode("ascii")
                except UnicodeDecodeError:
                    await self.push("500 Error: bad syntax")
                    continue
                arg: str | None = None
                if arg_bytes:
                    arg_bytes = arg_bytes.strip()
                    if self.enable_SMTPUTF8:
                        arg = str(arg_bytes, encoding="utf-8", errors="surrogateescape")
                    else:
                        try:
                            arg = str(arg_bytes, encoding="ascii", errors="strict")
                        except UnicodeDecodeError:
                            await self.push("500 Error: strict ASCII mode")
                            continue
                max_size = (self.command_size_limits[command] if self.session.extended_smtp
                            else self.command_size_limit)
                if len(line) > max_size:
                    await self.push("500 Command line too long")
                    continue
                if not self._tls_handshake_okay and command != "QUIT":
                    await self.push("554 Command refused due to lack of security")
                    continue
                if (self.require_starttls and not self._tls_protocol
                        and command not in ALLOWED_BEFORE_STARTTLS):
                    await self.push("530 Must issue a STARTTLS command first")
                    continue
                if self._enforce_call_limit:
                    budget = call_limit[command]
                    if budget < 1:
                        log.warning("%r over limit for %s", self.session.peer, command)
                        await self.push(f"421 4.7.0 {command} sent too many times")
                        self.transport.close()
                        continue
                    call_limit[command] = budget - 1
                method = self._smtp_methods.get(command)
                if method is None:
                    log.warning("%r unrecognised: %s", self.session.peer, command)
                    bogus_budget -= 1
                    if bogus_budget < 1:
                        log.warning("%r too many bogus commands", self.session.peer)
                        await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
                        self.transport.close()
                        continue
                    await self.push(f'500 Error: command "{command}" not recognized')
                    continue
                self._reset_timeout()  # a valid command: the client is not idle
                await method(arg)
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()  # the connection went away (during DATA, maybe)
                raise
            except Exception as error:
                try:
                    status = await self.handle_exception(error)
                except Exception as inner:
                    log.exception("%r exception in handle_exception()", self.session.peer)
                    try:
                        status = f"500 Error: ({inner.__class__.__name__}) {inner}"
                    except Exception:
                        status = "500 Error: Cannot describe error"
                if isinstance(error, TLSSetupException):
                    self.transport.close()
                    self.connection_lost(error)
                else:
                    await self.push(status)

    async def push(self, status: str | bytes) -> None:
        # An unknown command word is echoed in its 500 reply: a CR or NUL in it would reach
        # the client inside the reply line. Replies are one line each.
        if isinstance(status, str):
            if "\r" in status or "\n" in status or "\0" in status:
                status = _REPLY_UNSAFE.sub("?", status)
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        elif b"\r" in status or b"\n" in status or b"\0" in status:
            status = _REPLY_UNSAFE_BYTES.sub(b"?", status)
        # The lines of a multi-line reply (EHLO's) go out in one write: aiosmtpd writes each
        # line on its own, one send(2) each, and under STARTTLS one TLS record and send each.
        # bench/gateway.py --tls: 24 sends per message on a TLS session, 13 plain, before.
        if status[3:4] == b"-":
            self._held_lines.append(status + b"\r\n")
            return
        if self._held_lines:
            status = b"".join(self._held_lines) + status
            self._held_lines.clear()
        await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's version, minus a typing.Protocol class it defines on every call (a new
        # class per MAIL and RCPT: ~2% of a worker's CPU). Same parsing, same results.
        if not arg:
            return "", ""
        address: Any
        simple = _simple_angle_addr(arg)
        try:
            if simple is not None:
                addr, rest = simple
            elif arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            if simple is None:
                addr = str(address.addr_spec)
        except (HeaderParseError, IndexError, AttributeError):
            # Found by fuzzing, each a syntax error answered like any other: IndexError, the
            # standard library's parser runs off the end of a lone "<"; AttributeError, it
            # builds an unterminated domain literal ("<a@[1") that cannot render its address.
            return None, None
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    def _getparams(self, params: Any) -> Any:
        # Keep DSN parameters (RFC 3461): they stay in mail_options / rcpt_options for the
        # queue and DSN generation instead of being refused as unknown.
        result = super()._getparams(params)
        if result is not None:
            for key in DSN_PARAMS + IGNORED_PARAMS:
                result.pop(key, None)
        return result

    # aiosmtpd upper-cases MAIL/RCPT parameters; ENVID and ORCPT values are case-sensitive
    # (RFC 3461), so keep the raw argument for the handler to re-read.
    # (@syntax as on aiosmtpd's own methods: HELP lists only commands that carry it.)
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str) -> None:
        assert self.session is not None and self.envelope is not None
        limit = _policy(self.session).max_messages_per_connection
        if limit and self._mails >= limit:
            # Counted in MAIL commands accepted, as Exim counts them: a client cannot get
            # round it with RSET.
            await self.push(MESSAGES_PER_CONNECTION.format(limit=limit))
            if self.transport is not None:
                self.transport.close()
            return
        self.raw_params = _raw_params(arg)
        started = self.envelope.mail_from is None  # else a nested MAIL, refused 503
        await super().smtp_MAIL(arg)
        if started and self.envelope.mail_from is not None:
            self._mails += 1

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str) -> None:
        self.raw_params = _raw_params(arg)
        await super().smtp_RCPT(arg)

    @syntax("AUTH <mechanism>", when="_auth_methods")
    async def smtp_AUTH(self, arg: str) -> None:
        # aiosmtpd's checks and replies (538 5.7.11 before STARTTLS, 503 once authenticated,
        # 504 for a mechanism not offered), behind the lock-out of an address that failed too
        # often. Without mechanisms it is left out of HELP and answers 504.
        assert self.session is not None
        if self._auth_methods and self._tls_protocol is not None \
                and self._gw_handler.counters.auth_locked(
                    self._client_key(), self._gw_listener.auth_max_failures,
                    self._gw_listener.auth_failure_window):
            await self._lock_out()
            return
        await super().smtp_AUTH(arg)

    def _peer_ip(self) -> str:
        assert self.session is not None
        return str(self.session.peer[0]) if self.session.peer else ""

    def _client_key(self) -> bytes:
        """The client's key in the host access table (its address, or its IPv6 /64)."""
        assert self.session is not None
        return _peer_key(self.session, self._gw_handler)

    async def _lock_out(self) -> None:
        log.warning("%s: too many failed AUTH attempts, disconnected", self._peer_ip())
        await self.push(AUTH_LOCKED)
        if self.transport is not None:
            self.transport.close()

    async def _read_credential(self, challenge: str) -> bytes | None:
        # aiosmtpd's challenge_auth answers a "*" (501 5.7.0) and bad base64 (501 5.5.2).
        got = await self.challenge_auth(challenge)
        return got if isinstance(got, bytes) else None

    def _initial(self, args: list[str]) -> bytes | None:
        try:
            return base64.b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            return None

    async def auth_mech_PLAIN(self, _: object, args: list[str]) -> AuthResult:
        """RFC 4616: [authzid] NUL authcid NUL passwd, as the initial response or after 334."""
        if len(args) == 1:
            blob = await self._read_credential("")
            if blob is None:
                return AuthResult(success=False, handled=True)
        else:
            blob = self._initial(args)
            if blob is None:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            # Acting for another user is not something a password file can grant.
            return await self._refuse(login)
        return await self._verify(login, password)

    async def auth_mech_LOGIN(self, _: object, args: list[str]) -> AuthResult:
        """The LOGIN mechanism (draft-murchison-sasl-login): user name, then password."""
        if len(args) == 1:
            login = await self._read_credential(self.AuthLoginUsernameChallenge)
            if login is None:
                return AuthResult(success=False, handled=True)
        else:
            login = self._initial(args)
            if login is None:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self._read_credential(self.AuthLoginPasswordChallenge)
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._verify(login, password)

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        try:
            name, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            return await self._refuse(login)
        users = self._gw_users
        if users is None or not name:
            return await self._refuse(login)
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                _VERIFY, users.check, name, secret)
        except Exception:  # the argon2 library failing is our problem, not a wrong password
            log.exception("checking the password of %r failed", name)
            return AuthResult(success=False, handled=False, message=AUTH_TEMP)
        if not ok:
            return await self._refuse(login)
        # The address's failures stay counted: logging in to an account of one's own must not
        # buy more guesses at the others.
        assert self.session is not None
        self.session.auth_user = name.lower()  # type: ignore[attr-defined]
        log.info("%s: authenticated as %r", self._peer_ip(), name.lower())
        return AuthResult(success=True, auth_data=name.lower(), message=AUTH_OK)

    async def _refuse(self, login: bytes) -> AuthResult:
        lst = self._gw_listener
        ip = self._peer_ip()
        # Counted in the table every listener process shares, so the limit holds for the
        # address however the kernel spreads its connections over the processes.
        locked = self._gw_handler.counters.auth_failed(self._client_key(),
                                                       lst.auth_max_failures,
                                                       lst.auth_failure_window)
        log.warning("%s: AUTH failed for %r", ip, login.decode("utf-8", "replace")[:100])
        # Every failure waits before its answer (Postfix's smtpd_error_sleep_time), in this
        # session only: the event loop serves the others meanwhile.
        await asyncio.sleep(lst.auth_failure_delay)
        if locked:
            await self._lock_out()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=AUTH_INVALID)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's checks and replies, with the message read by `read_data`.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self._reader is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push(START_DATA)
        try:
            data, problem = await read_data(self._reader, self.data_size_limit,
                                            self.line_length_limit, _policy(self.session))
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            log.info("connection closed during DATA")
            self._writer.close()
            return
        if problem is not None:
            self._set_post_data_state()
            await self.push(problem)
            return
        self.envelope.content = self.envelope.original_content = data
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = client_peer(transport.get_extra_info("peername"))
        ip = str(peer[0])
        if self._original_transport is not None:
            # The TLS session after STARTTLS (aiosmtpd calls this again, with a new session):
            # the client was admitted and counted at connect. Its policy is chosen again,
            # now that a verified client certificate may name a partner's sender group.
            super().connection_made(transport)
            assert self.session is not None
            self.session.peer = peer  # type: ignore[assignment]
            self.session.client_key = self._gw_handler.client_key(ip)  # type: ignore[attr-defined]
            subject = client_subject(transport) if self._gw_listener.tls_client_ca else ""
            self.session.tls_subject = subject  # type: ignore[attr-defined]
            self.session.policy = choose_policy(  # type: ignore[attr-defined]
                self._gw_handler.config, ip, tls_subject=subject)
            self.session.listener = self._gw_listener.name  # type: ignore[attr-defined]
            return
        policy = choose_policy(self._gw_handler.config, ip)
        if policy.action == "TCPREFUSE":
            transport.close()
            return
        client_key = self._gw_handler.client_key(ip)
        refusal, ticket = self._gw_handler.limits.admit(
            self._gw_listener.name, client_key, policy.max_connections_per_ip)
        if refusal is not None:
            # Past a connection cap: the reply and the close, no session made for it.
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal.encode("ascii") + b"\r\n")
            transport.close()
            return
        self._admitted, self._ticket = True, ticket
        super().connection_made(transport)
        assert self.session is not None
        # aiosmtpd's is the socket's name (see client_peer); typed str, it holds the tuple.
        self.session.peer = peer  # type: ignore[assignment]
        self.session.client_key = client_key  # type: ignore[attr-defined]
        self.session.policy = policy  # type: ignore[attr-defined]
        self.session.listener = self._gw_listener.name  # type: ignore[attr-defined]
        self.session.tls_subject = ""  # type: ignore[attr-defined]
        self.arm_deadline()

    def arm_deadline(self) -> None:
        """(Re)start the time cap. A slow-drip client resets aiosmtpd's idle timer with every
        byte, so we also cap the time to the first MAIL and each transaction (MAIL to the end
        of DATA); a client that sends many messages over one connection is not cut off."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(
            self._gw_listener.session_timeout, lambda: asyncio.ensure_future(self._expire())
        )

    async def _expire(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                await self.push(SESSION_TIMEOUT)
            finally:
                if self.transport is not None:
                    self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if not self._admitted:
            return  # refused at connect (or already lost): aiosmtpd never had a session
        self._gw_handler.limits.release(self._ticket)
        self._admitted, self._ticket = False, ()
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)


def _policy(session: Session) -> MailFlowPolicy:
    return session.policy  # type: ignore[attr-defined]


def _auth_user(session: Session) -> str:
    """Who the session authenticated as (SMTP AUTH), or "" (set by GatewaySMTP._verify)."""
    return str(getattr(session, "auth_user", "")) if session.authenticated else ""


def _peer_key(session: Session, handler: GatewayHandler) -> bytes:
    """The session's client's key in the host access table, made once at connect."""
    key = getattr(session, "client_key", None)
    if key is None:  # (a session made without connection_made: in-process tests)
        key = handler.client_key(str(session.peer[0]) if session.peer else "")
    return bytes(key)


class GatewayHandler:
    """aiosmtpd handler hooks: policy checks at MAIL/RCPT, durable enqueue at DATA."""

    def __dir__(self) -> list[str]:
        return []  # see GatewaySMTP.__dir__: aiosmtpd takes `hooks` instead

    def __init__(self, config: GatewayConfig, spool: Spool, on_queued: Any = None,
                 counters: HostCounters | None = None, region: int = 0) -> None:
        self.config = config
        # `counters` (and this process's `region` in them): the host access table's counts
        # the listener processes share (connections, rates, failed AUTH attempts).
        self.limits = ConnectionLimits({lst.name: lst.max_connections for lst in config.listeners},
                                       counters=counters, region=region)
        self.counters = self.limits.counters
        self._prefixes = (config.client_ipv4_prefix_length, config.client_ipv6_prefix_length)
        self.spool = spool
        # Each submission listener's users file, read once here and again when it changes.
        self.users = {lst.name: UsersFile(lst.users_file) for lst in config.listeners
                      if lst.auth and lst.users_file is not None}
        self.on_queued = on_queued
        self.commits = GroupCommit(spool)
        self.space = FreeSpace(spool.root, config.storage.min_free_space)
        self.postmaster = config.postmaster.lower()
        # aiosmtpd's hook table (command -> handle_* method), made once for every connection.
        self.hooks: dict[str, Any] = {
            name[7:]: getattr(self, name) for name in dir(type(self)) if name.startswith("handle_")
        }

    def client_key(self, ip: str) -> bytes:
        """The key `ip` is counted under in the host access table: its address's, or its
        network's (client_ipv4_prefix_length, client_ipv6_prefix_length)."""
        return self.counters.ip_key(client_of(ip, *self._prefixes))

    def _is_local(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.config.local_domains)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        size = f"250-SIZE {_policy(session).max_message_size}"
        # aiosmtpd lists AUTH once TLS is up, with no mechanisms where none are offered.
        out = [size if r.startswith("250-SIZE") else r for r in responses[:-1]
               if r.rstrip() != "250-AUTH"]
        return [*out, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-DSN", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str,
        options: list[str],
    ) -> str:
        policy = _policy(session)
        if isinstance(server, GatewaySMTP):
            server.arm_deadline()
        if policy.action == "REJECT":
            return POLICY_REJECT
        if session.ssl is None and (policy.require_tls or (
                isinstance(server, GatewaySMTP) and server._gw_listener.require_tls)):
            return TLS_REQUIRED
        declared = 0
        for opt in options:
            if opt.startswith("SIZE=") and opt[5:].isdigit():
                declared = int(opt[5:])
                if declared > policy.max_message_size:
                    return MESSAGE_TOO_BIG
        if not self.space.enough(declared):
            return DISK_LOW
        limit = policy.max_messages_per_hour
        if limit and self.counters.take([(_peer_key(session, self), MESSAGES, limit)]) is not None:
            return MESSAGES_PER_HOUR.format(limit=limit)
        envelope.mail_from = address
        envelope.mail_options.extend(o for o in _keep_case(server, options)
                                     if o[:5].upper() != "AUTH=")
        return OK_SENDER

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str,
        options: list[str],
    ) -> str:
        policy = _policy(session)
        if len(envelope.rcpt_tos) >= policy.max_recipients:
            return TOO_MANY_RCPTS.format(limit=policy.max_recipients)
        if policy.action == "ACCEPT" and not self._is_local(address) \
                and address.lower() != self.postmaster \
                and not may_relay(policy, _auth_user(session)):
            return RELAY_DENIED
        refused = self._recipient_rates(session, envelope, policy)
        if refused is not None:
            return refused
        envelope.rcpt_tos.append(address)
        options = _keep_case(server, options)
        # One option list per recipient (aiosmtpd flattens them; the DSN needs them apart).
        per_rcpt: list[list[str]] = getattr(envelope, "per_rcpt_options", [])
        per_rcpt.append(list(options))
        envelope.per_rcpt_options = per_rcpt  # type: ignore[attr-defined]
        envelope.rcpt_options.extend(options)
        return OK_RCPT

    def _recipient_rates(self, session: Session, envelope: SMTPEnvelope,
                         policy: MailFlowPolicy) -> str | None:
        """Count one more recipient this hour for the client's IP and the envelope sender,
        or the 452 naming the limit it would pass (then neither is counted)."""
        checks: list[tuple[bytes, int, int]] = []
        replies: list[str] = []
        if policy.max_recipients_per_hour:
            checks.append((_peer_key(session, self), RECIPIENTS,
                           policy.max_recipients_per_hour))
            replies.append(RECIPIENTS_PER_HOUR.format(limit=policy.max_recipients_per_hour))
        sender = envelope.mail_from or ""
        per_sender = policy.max_recipients_per_hour_per_sender
        # The null sender is not one sender (bounces from everywhere): the IP's limit holds.
        if per_sender and sender not in ("", "<>"):
            checks.append((self.counters.sender_key(sender), RECIPIENTS, per_sender))
            replies.append(RECIPIENTS_PER_SENDER.format(limit=per_sender))
        if not checks:
            return None
        refused = self.counters.take(checks)
        return None if refused is None else replies[refused]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SMTPEnvelope) -> str:
        data = envelope.original_content or b""
        policy = _policy(session)
        if len(data) > policy.max_message_size:
            return MESSAGE_TOO_BIG
        problem = check_line_endings(data)
        if problem:
            return problem
        if count_hops(data) >= MAX_HOPS:
            return TOO_MANY_HOPS
        refused = check_structure(data, policy)  # issue 13: limits named in the reply
        if refused:
            return refused
        queue_id = self.spool.new_id(data)
        env = Envelope(
            queue_id=queue_id,
            # The null sender as "": aiosmtpd keeps "<>" (its test for "MAIL given"), which
            # a next hop would have received as MAIL FROM:<<>> and refused.
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            mail_options=tuple(envelope.mail_options),
            rcpt_options=tuple(tuple(o) for o in getattr(envelope, "per_rcpt_options", [])),
            peer=str(session.peer[0]) if session.peer else "",
            policy=policy.name,
            listener=str(getattr(session, "listener", "")),
            tls_client_subject=str(getattr(session, "tls_subject", "")),
            auth_user=_auth_user(session),
            helo=session.host_name or "",
            received_at=time.time(),
        )
        trace = received_header(session, server.hostname, queue_id, envelope.rcpt_tos,
                                session.ssl is not None, bool(_auth_user(session)))
        try:
            if len(data) <= INLINE_STORE:
                # A small message's write takes a few microseconds: here it costs less than
                # the executor's two thread switches, which took ~0.2 ms of CPU per message
                # (bench/gateway.py: listener CPU 1.1-1.6 -> 1.0-1.2 ms). Its sync and the
                # folder's fsync are shared with the messages that finish close by.
                staged = self.spool.stage(env, data, queue_id=queue_id, prefix=trace,
                                          batched=True)
                await self.commits.publish(staged)
            else:
                # A large one in a thread, so it never holds up the other sessions (and
                # batches meanwhile sync file by file: see Spool.large_writes).
                self.spool.large_writes += 1
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        None, lambda: self.spool.store(env, data, queue_id=queue_id, prefix=trace)
                    )
                finally:
                    self.spool.large_writes -= 1
        except SpoolError as exc:
            log.error("spool write failed: %s", exc)
            return TEMP_SPOOL_ERROR
        if len(data) >= memtrim.LARGE:
            # Wake the queue runner (and trim the heap) only once aiosmtpd has dropped its own
            # copy of the message, right after this handler returns: otherwise signing could
            # start while that copy is still alive, one more message size at the peak.
            asyncio.get_running_loop().call_soon(self._queued_large, queue_id, len(data))
        elif self.on_queued is not None:
            self.on_queued(queue_id)
        return OK_QUEUED.format(queue_id=queue_id)

    def _queued_large(self, queue_id: str, size: int) -> None:
        memtrim.after_message(size)
        if self.on_queued is not None:
            self.on_queued(queue_id)

    async def handle_exception(self, error: Exception) -> str:
        # Never a 500 carrying internals: log the details, answer a neutral temporary failure.
        log.exception("SMTP handler error", exc_info=error)
        return TEMP_LOCAL_ERROR


# aiosmtpd inspects handle_EHLO's signature for every connection (to tell its old 4-argument
# form from the new one); a precomputed __signature__ makes that a lookup.
GatewayHandler.handle_EHLO.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    GatewayHandler.handle_EHLO)


def tls_context(listener: Listener) -> ssl.SSLContext | None:
    """The listener's STARTTLS context, read from its files now: each worker makes its own at
    start, so after a SIGHUP (new workers) a renewed certificate and key are in use."""
    if listener.tls_cert is None or listener.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(listener.tls_cert), str(listener.tls_key))
    if listener.tls_client_ca is not None:
        # Only the configured CAs vouch for a client (the default context also trusts the
        # system's web CAs for client certificates): a fresh context without them.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(listener.tls_cert), str(listener.tls_key))
        ca = listener.tls_client_ca
        ctx.load_verify_locations(**({"capath": str(ca)} if ca.is_dir() else {"cafile": str(ca)}))
        # Asked for, not required: a client without a certificate is served by its IP's
        # policy. One whose certificate does not verify fails the handshake (OpenSSL aborts
        # it), and the client may then retry without TLS, where require_tls refuses it.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def protocol_factory(
    config: GatewayConfig, listener: Listener, handler: GatewayHandler
) -> Any:
    """A factory for `loop.create_server`, one protocol per connection."""
    ctx = tls_context(listener)
    # aiosmtpd would call socket.getfqdn() (a DNS lookup) for every connection; do it once.
    hostname = listener.hostname or config.hostname or socket.getfqdn()
    max_size = max(p.max_message_size for p in config.policies.values())

    def make() -> GatewaySMTP:
        return GatewaySMTP(
            handler,
            listener,
            # The running loop, given: aiosmtpd would look it up for every connection under a
            # warnings filter (~2% of a listener's CPU).
            loop=asyncio.get_running_loop(),
            data_size_limit=max_size,
            hostname=hostname,
            ident="filterlang",
            tls_context=ctx,
            # aiosmtpd's own AUTH gates: never before STARTTLS (538 5.7.11 to AUTH, no AUTH in
            # the EHLO reply), and with auth_required 530 5.7.0 to MAIL, RCPT, DATA, VRFY, HELP.
            auth_require_tls=True,
            auth_required=listener.auth_required,
            timeout=listener.command_timeout,
            command_call_limit=listener.max_commands,
        )

    return make
