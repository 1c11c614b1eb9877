"""End-to-end harness: real `filterlang serve` processes, real SMTP, real next hops.

Everything here talks to the product from outside, as an operator and its peers do: it writes
a `gateway.toml`, starts `filterlang serve -c` as a subprocess, sends over loopback SMTP,
receives at an aiosmtpd sink run in the test process, and reads the gateway's tracking lines,
alert log and the `filterlang queue` / `quarantine` / `keys` command output. Nothing here
imports the product's packages (runtime/, smime/): a scenario passes only if the shipped
command does the work.

Peers that are not ours: `filterlang cert create` makes the certificates an operator would
have, and `openssl cms` plays the partner's S/MIME client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Self, TypeVar

from aiosmtpd.controller import Controller

FILTERLANG = Path(sys.executable).parent / "filterlang"

# Generous: the machine is shared by several engineers' test runs at once. Tests wait for a
# condition up to this long and return as soon as it holds, so the figure costs nothing when
# things go well.
DEADLINE = 60.0

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE,
               explain: Callable[[], str] = lambda: "") -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    end = time.monotonic() + timeout
    pause = 0.02
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


def run(*args: str | Path, check: bool = True, timeout: float = 120.0,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}")
    return proc


def filterlang(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run(FILTERLANG, *args, check=check)


# --- the next hop ----------------------------------------------------------------------------


class Received:
    """One message as the next hop got it."""

    def __init__(self, mail_from: str, rcpts: list[str], data: bytes, *, tls: bool = False) -> None:
        self.mail_from, self.rcpts, self.data = mail_from, rcpts, data
        self.tls = tls  # the session that brought it had negotiated STARTTLS

    @property
    def headers(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        """The first header `name` (unfolded), or None."""
        want = name.lower().encode() + b":"
        lines = self.headers.split(b"\r\n")
        for i, line in enumerate(lines):
            if line.lower().startswith(want):
                value = line[len(want):]
                for cont in lines[i + 1:]:
                    if cont[:1] not in (b" ", b"\t"):
                        break
                    value += cont
                return value.decode("utf-8", "replace").strip()
        return None

    def __repr__(self) -> str:
        return f"<Received from {self.mail_from!r} to {self.rcpts} {len(self.data)} bytes>"


class Sink:
    """A real SMTP next hop (aiosmtpd on loopback) run in the test process.

    It stores what it gets. `answer(rcpt)`, when given, is the reply to each RCPT; `tempfail` recipients get `451` at RCPT (a next hop that cannot
    take them yet), `reject` recipients `550` (no such user); mail for a domain in `forward` is passed on over SMTP to that port (the
    Internet between two organisations' gateways) and kept in `forwarded` as it crossed.
    `start()` may come later than construction: until then the port is closed (a next hop
    that is down). With `tls` (a certificate and key), it offers STARTTLS.
    """

    def __init__(self, answer: Callable[[str], str] | None = None, *, port: int | None = None,
                 tempfail: Iterable[str] = (), reject: Iterable[str] = (),
                 forward: dict[str, int] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.port = port or free_port()
        self.answer = answer
        self.tls = tls
        self.tempfail = {r.lower() for r in tempfail}
        self.reject = {r.lower() for r in reject}
        self.forward = dict(forward or {})
        self.messages: list[Received] = []
        self.forwarded: list[Received] = []
        self._lock = threading.Lock()
        self._ctl: Controller | None = None

    # aiosmtpd handler hooks
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower() in self.tempfail:
            return "451 4.3.2 not now, try later"
        if address.lower() in self.reject:
            return "550 5.1.1 no such user here"
        reply = self.answer(address) if self.answer is not None else "250 2.1.5 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                       tls=session.ssl is not None)
        domain = {r.rpartition("@")[2].lower() for r in got.rcpts}
        port = self.forward.get(next(iter(domain))) if len(domain) == 1 else None
        if port is not None:
            try:
                await asyncio.to_thread(send, port, got.mail_from, got.rcpts, got.data,
                                        source="127.0.0.1")
            except (OSError, smtplib.SMTPException) as exc:
                return f"451 4.4.1 could not pass it on: {exc}"
            with self._lock:
                self.forwarded.append(got)
            return "250 2.0.0 passed on"
        with self._lock:
            self.messages.append(got)
        return "250 2.0.0 stored"

    def start(self) -> Self:
        extra: dict[str, Any] = {}
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            extra["tls_context"] = ctx
        self._ctl = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=DEADLINE,
                               **extra)
        self._ctl.start()
        return self

    def stop(self) -> None:
        if self._ctl is not None:
            self._ctl.stop()
            self._ctl = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, count: int = 1) -> list[bytes]:
        """The bytes of the first `count` messages to arrive, once they have."""
        wait_until(f"{count} message(s) at the next hop", lambda: len(self.messages) >= count)
        with self._lock:
            return [m.data for m in self.messages]

    def to(self, rcpt: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if rcpt in m.rcpts]

    def dsns(self, sender: str) -> list[Received]:
        """Delivery status notifications for `sender`: null return path (aiosmtpd keeps it as
        `<>`), multipart/report."""
        return [m for m in self.to(sender)
                if m.mail_from in ("", "<>") and b"multipart/report" in m.headers]

    def wait_for(self, rcpt: str, count: int = 1, *, explain: Callable[[], str] = lambda: "",
                 match: Callable[[Received], bool] = lambda m: True) -> list[Received]:
        return wait_until(f"{count} message(s) for {rcpt} at the next hop",
                          lambda: (lambda got: got if len(got) >= count else None)(
                              [m for m in self.to(rcpt) if match(m)]),
                          explain=explain)


def send(port: int, mail_from: str, rcpts: list[str], data: bytes, *,
         source: str = "127.0.0.2", timeout: float = DEADLINE) -> None:
    """One SMTP transaction; every recipient must be accepted."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=timeout) as s:
        refused = s.sendmail(mail_from, rcpts, data)
        assert not refused, refused


# --- raw SMTP, for what smtplib refuses to send ------------------------------------------------


@contextlib.contextmanager
def connection(port: int, timeout: float = 30.0) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        yield s


def read_reply(s: socket.socket) -> str:
    """One SMTP reply (all its lines), as text; "" when the server closed the connection."""
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return buf.decode(errors="replace")
        buf += chunk
        lines = buf.split(b"\r\n")
        if buf.endswith(b"\r\n") and lines[-2][3:4] == b" ":
            return buf.decode(errors="replace")


@contextlib.contextmanager
def held() -> Iterator[list[socket.socket]]:
    """Connections a test keeps open (to fill a connection cap), all closed at the end."""
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def connect(port: int, source: str, opened: list[socket.socket]) -> str:
    """Open a connection from `source` and keep it in `opened`: the greeting (or refusal)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    opened.append(s)
    return read_reply(s)


def dialogue(port: int, commands: list[bytes]) -> list[str]:
    """The greeting, then each command (sent as given, CRLF added) and its reply."""
    with connection(port) as s:
        replies = [read_reply(s)]
        for cmd in commands:
            s.sendall(cmd + b"\r\n")
            replies.append(read_reply(s))
        return replies


def replies_to(port: int, mail_from: str, rcpts: list[str], data: bytes,
               rcpt_params: str = "") -> list[str]:
    """One message by raw SMTP, refusals and all: the replies to MAIL, each RCPT, and the end
    of DATA (when the server let DATA begin)."""
    cmds = [b"EHLO client.example", f"MAIL FROM:<{mail_from}>".encode()]
    cmds += [f"RCPT TO:<{r}>{(' ' + rcpt_params) if rcpt_params else ''}".encode() for r in rcpts]
    with connection(port) as s:
        read_reply(s)
        replies = []
        for cmd in cmds:
            s.sendall(cmd + b"\r\n")
            replies.append(read_reply(s))
        s.sendall(b"DATA\r\n")
        if read_reply(s).startswith("354"):
            s.sendall(data + b"\r\n.\r\n")
            replies.append(read_reply(s))
        s.sendall(b"QUIT\r\n")
        return replies[1:]


def message(mail_from: str, to: str | list[str], subject: str, body: str | bytes = "Hello.\r\n",
            *, extra: str = "") -> bytes:
    """A plain RFC 5322 message with CRLF line ends."""
    rcpts = [to] if isinstance(to, str) else to
    raw = body if isinstance(body, bytes) else body.encode()
    return (f"From: <{mail_from}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
            f"Subject: {subject}\r\nDate: {formatdate()}\r\nMessage-ID: {make_msgid('e2e')}\r\n"
            f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode() + raw


def body_of_size(size: int, tag: str = "line") -> bytes:
    """ASCII text of about `size` bytes in 76-character CRLF lines."""
    line = (tag + " " + "x" * 80)[:74].encode() + b"\r\n"
    return line * max(1, size // len(line))


# --- certificates and S/MIME peers ------------------------------------------------------------


class CA:
    """A certification authority run with openssl, as a commercial or company CA would be: it
    signs the certificate requests that operators and partners make."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.cert = folder / f"{name}.crt.pem"
        self.key = folder / f"{name}.key.pem"
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-subj", f"/O={name}/CN={name} Root", "-keyout", self.key, "-out", self.cert,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, csr: Path, out: Path) -> None:
        """Sign a request, keeping the extensions it asks for (its SAN, key and e-mail usage)."""
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
            "-CAcreateserial", "-days", "365", "-copy_extensions", "copyall", "-out", out)


    def tls_identity(self, folder: Path, name: str, cn: str,
                     dns: Iterable[str] = ()) -> tuple[Path, Path]:
        """A TLS certificate (server and client use, DNS names in its subjectAltName) signed
        by this CA, as an MTA's operator gets one: (certificate, key) PEM files."""
        key, csr, cert = (folder / f"{name}.tls.key.pem", folder / f"{name}.tls.csr.pem",
                          folder / f"{name}.tls.crt.pem")
        ext = folder / f"{name}.tls.ext"
        sans = ",".join(f"DNS:{d}" for d in dns)
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"
                       + (f"subjectAltName={sans}\n" if sans else ""))
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/O={name}/CN={cn}",
            "-keyout", key, "-out", csr)
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
            "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", cert)
        return cert, key


class OrgCA:
    """An organisation's own CA made with `filterlang cert create --ca`; it signs requests with
    `filterlang cert sign` (no outside CA, no openssl: what a small deployment does)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        filterlang("cert", "create", "--ca", "--cn", f"{name} CA", "--org", name, "--key", "p256",
                   "--out", folder / name)
        self.cert = folder / f"{name}.crt.pem"
        self.key = folder / f"{name}.key.pem"

    def issue(self, csr: Path, out: Path) -> None:
        filterlang("cert", "sign", "--ca", self.cert, "--ca-key", self.key, "--csr", csr,
                   "--out", str(out).removesuffix(".crt.pem"))


class Identity:
    """A certificate and key as an operator or a partner has them: `filterlang cert create`
    makes the key and the request, and a CA signs the request (without a CA, the certificate
    stays self-signed)."""

    def __init__(self, folder: Path, name: str, cn: str, *, emails: Iterable[str] = (),
                 domains: Iterable[str] = (), ca: CA | OrgCA | None = None) -> None:
        self.name, self.cn = name, cn
        args: list[str | Path] = ["cert", "create", "--cn", cn, "--org", f"{name} Ltd",
                                  "--out", folder / name]
        for email in emails:
            args += ["--san-email", email]
        for domain in domains:
            args += ["--san-domain", domain]
        filterlang(*args)
        self.cert = folder / f"{name}.crt.pem"
        self.key = folder / f"{name}.key.pem"
        if ca is not None:
            ca.issue(folder / f"{name}.csr.pem", self.cert)


def fingerprint(identity: Identity) -> str:
    """The SHA-256 fingerprint (hex) of an identity's certificate, as the key store shows it."""
    der = run("openssl", "x509", "-in", identity.cert, "-outform", "DER").stdout
    return hashlib.sha256(der).hexdigest()


def _openssl_cms(*args: str | Path, data: bytes) -> bytes:
    # -binary: the MIME entity is already canonical (CRLF); -crlfeol: the S/MIME output too,
    # except the base64 lines, which OpenSSL 3.0 still ends with a bare LF. A mail client sends
    # CRLF on the wire, so those become CRLF (outside the signed content, which is CRLF already).
    if "-binary" not in args:
        args = (*args, "-binary", "-crlfeol")
    out = run("openssl", "cms", *args, input=data).stdout
    return re.sub(rb"(?<!\r)\n", b"\r\n", out)


def entity(body: bytes, content_type: str = "text/plain; charset=us-ascii") -> bytes:
    """A MIME entity (Content-Type, blank line, body) for openssl to sign or encrypt."""
    return f"Content-Type: {content_type}\r\n\r\n".encode() + body


def sign(data: bytes, signer: Identity, *, opaque: bool = False, certs: bool = True) -> bytes:
    """`certs=False` leaves the signer's certificate out, as gpgsm does (RFC 5652 5.1)."""
    return _openssl_cms("-sign", "-signer", signer.cert, "-inkey", signer.key,
                        *(["-nodetach"] if opaque else []), *([] if certs else ["-nocerts"]),
                        data=data)


def encrypt(data: bytes, *recipients: Identity | Path) -> bytes:
    certs = [r.cert if isinstance(r, Identity) else r for r in recipients]
    return _openssl_cms("-encrypt", "-aes256", "-binary", "-crlfeol", *certs, data=data)


def decrypt(data: bytes, recipient: Identity) -> bytes:
    return run("openssl", "cms", "-decrypt", "-recip", recipient.cert, "-inkey", recipient.key,
               input=data).stdout


def verify(data: bytes, anchor: CA | OrgCA | Identity) -> bytes:
    """The signed content; fails the test unless openssl verifies the signature."""
    ca = anchor.cert
    return run("openssl", "cms", "-verify", "-CAfile", ca, "-purpose", "any", input=data).stdout


def with_headers(smime: bytes, mail_from: str, to: str, subject: str) -> bytes:
    """Put the routing headers in front of an S/MIME entity that openssl wrote."""
    head = (f"From: <{mail_from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: {make_msgid('e2e')}\r\n").encode()
    return head + smime


def content_type(data: bytes) -> str:
    return (Received("", [], data).header("Content-Type") or "").lower()


# --- the gateway --------------------------------------------------------------------------------

# The B2B set-up of the two-gateway scenarios: our users' mail (sender group `users`) goes out
# signed and encrypted through the sending profile `partners`, signed with the organisation
# certificate `org` (Gateway.install); partners' gateways are trusted through `trust/`.
B2B_FILTER = """
protect_outgoing:
  if sendergroup == 'users' {
      smime-gateway-deferred('partners');
  }
"""

B2B_CONFIG = """
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["trust"]

[profiles.partners]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "bounce"
"""

# The parts of gateway.toml that every scenario shares. One listener and one queue process
# (unless a scenario is about several listener processes), and retry timers in seconds, keep a
# scenario small and quick.
BASE_TOML = """\
{top}
workers = {workers}
queue_workers = 1
local_domains = {local_domains}
message_filters = {filters}

[storage]
data_dir = "data"
keystore_url = "sqlite:///{root}/keys.sqlite3"

[[listeners]]
name = "main"
address = "127.0.0.1"
port = {port}
session_timeout = 60
command_timeout = 60
{listener}

# Our own users submit from 127.0.0.2; everyone else (partners, other gateways) is inbound.
[sender_groups.users]
ips = ["127.0.0.2/32"]
policy = "users"

[policies.users]
action = "RELAY"

[policies.default]
action = "ACCEPT"
smime_decrypt_verify = true
smime_signature = "{signature}"
harvest = true

[alerts]
log = "data/alerts.jsonl"

[delivery]
relay = "127.0.0.1:{next_hop}"
retry_schedule = [1]
max_queue_lifetime = {lifetime}
connect_timeout = 5
"""


class Logged:
    """A daemon the tests run whose output goes to the file `log`: reading it, and waiting for
    a line a process may write a moment after the effect a test saw."""

    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def explain(self) -> str:
        return f"--- log ({self.log})\n{self.log_text()[-4000:]}"

    def wait_log(self, what: str, pattern: str) -> re.Match[str]:
        """Wait for a match of `pattern` (a regex) in the log."""
        return wait_until(what, lambda: re.search(pattern, self.log_text()), explain=self.explain)


class Serve(Logged):
    """`filterlang serve -c CONFIG` as a subprocess, started and stopped as an operator does;
    its output goes to `log`. Subclasses write the configuration."""

    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.log = config.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.preexec: Callable[[], None] | None = None  # run in the child before exec

    def start(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(self.config)],
                                         stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=self.preexec)
        wait_until(f"filterlang serve to greet on port {self.port}", self._greets,
                   explain=self.explain)
        return self

    def _greets(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"filterlang serve exited {self.proc.returncode}\n{self.explain()}")
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=DEADLINE) as s:
                return s.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit; kill the process group if it does not come."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"filterlang serve did not stop on SIGTERM\n{self.explain()}") from None

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash, as the spool must survive it."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def explain(self) -> str:
        return f"--- serve log ({self.log})\n{self.log_text()[-4000:]}"

    def holder(self, client: socket.socket) -> int | None:
        """The pid of the worker process that holds the server side of `client`'s connection
        (which listener process the kernel gave it to), or None if none does (yet)."""
        assert self.proc is not None
        mine = client.getsockname()
        # /proc/net/tcp: local and remote address as hex "ADDR:PORT"; the socket's inode.
        want_local = f":{self.port:04X}"
        want_remote = f"{socket.inet_aton(mine[0])[::-1].hex().upper()}:{mine[1]:04X}"
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2] == want_remote:
                inode = fields[9]
        if inode is None:
            return None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        for pid in map(int, children.split()):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) == f"socket:[{inode}]":
                            return pid
        return None

    def __enter__(self) -> Self:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Gateway(Serve):
    """One `filterlang serve` process with its own folder, configuration and data."""

    def __init__(self, root: Path, *, next_hop: int, local_domains: Iterable[str] = ("b.example",),
                 filters: dict[str, str] | None = None, signature: str = "remove",
                 lifetime: float = 3600, extra: str = "", top: str = "",
                 listener: str = "", workers: int = 1) -> None:
        """`extra`: TOML after the shared sections; `top`: top-level keys (before any table);
        `listener`: more keys of the one [[listeners]] section; `workers`: listener processes."""
        self.root = root
        self.workers = workers
        self.top, self.listener = top, listener
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / "gateway.toml", free_port())
        self.next_hop = next_hop
        self.local_domains = list(local_domains)
        self.signature, self.lifetime, self.extra = signature, lifetime, extra
        self.filters = dict(filters or {})
        self.write_config()

    @property
    def keystore(self) -> str:
        return f"sqlite:///{self.root}/keys.sqlite3"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def write_config(self) -> None:
        for name, text in self.filters.items():
            (self.root / name).write_text(text)
        # Written whole, then renamed: a reload never reads a half-written file.
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(BASE_TOML.format(
            local_domains=json.dumps(self.local_domains), filters=json.dumps(sorted(self.filters)),
            root=self.root, port=self.port, signature=self.signature, next_hop=self.next_hop,
            lifetime=self.lifetime, top=self.top, listener=self.listener,
            workers=self.workers) + self.extra)
        tmp.replace(self.config)

    def install(self, identity: Identity, name: str = "org") -> None:
        """Copy an identity's certificate and key in as `[certificates.NAME]` files."""
        (self.root / f"{name}.crt.pem").write_bytes(identity.cert.read_bytes())
        (self.root / f"{name}.key.pem").write_bytes(identity.key.read_bytes())
        os.chmod(self.root / f"{name}.key.pem", 0o600)

    def trust(self, *identities: Identity | CA | OrgCA) -> None:
        (self.root / "trust").mkdir(exist_ok=True)
        for ident in identities:
            (self.root / "trust" / f"{ident.name}.pem").write_bytes(ident.cert.read_bytes())

    def add_key(self, name: str, identity: Identity) -> None:
        """What the operator does to import a partner's certificate: `filterlang keys add`."""
        filterlang("keys", "--store", self.keystore, "add", name, identity.cert)

    def send(self, mail_from: str, rcpts: str | list[str], data: bytes, *,
             source: str = "127.0.0.2") -> str:
        """Submit over SMTP (from 127.0.0.2: our users; 127.0.0.1: the outside world); the
        message's Message-ID, by which the tracking lines and the next hop's copy are found."""
        send(self.port, mail_from, [rcpts] if isinstance(rcpts, str) else rcpts, data, source=source)
        mid = Received("", [], data).header("Message-ID")
        assert mid, "scenario messages carry a Message-ID"
        return mid

    # What the operator reads.

    def tracking(self) -> list[dict[str, Any]]:
        path = self.data / "tracking.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def queue_id(self, message_id: str) -> str | None:
        """The queue id under which the message with this Message-ID was received (first)."""
        for rec in self.tracking():
            if rec["event"] == "received" and rec.get("message_id") == message_id:
                return str(rec["queue_id"])
        return None

    def records(self, message_id: str) -> list[dict[str, Any]]:
        """Every tracking record of the message with this Message-ID, and of the copies it was
        split into (each has a queue id of its own)."""
        recs = self.tracking()
        qids = {r["queue_id"] for r in recs if r.get("message_id") == message_id}
        return [r for r in recs if r["queue_id"] in qids]

    def _not_held(self, message_id: str) -> None:
        # A message that went to `hold` will not move again by itself: say so at once instead
        # of waiting out the deadline.
        qid = self.queue_id(message_id)
        if qid is not None and f"{qid} moved to hold" in self.alerts():
            raise AssertionError(f"{message_id} ({qid}) went to hold\n{self.explain()}")

    def wait_event(self, message_id: str, event: str, rcpt: str | None = None) -> dict[str, Any]:
        """The first tracking record `event` (for `rcpt`) of the message with this Message-ID."""
        def probe() -> dict[str, Any] | None:
            for rec in self.records(message_id):
                if rec["event"] == event and (rcpt is None or rec.get("rcpt") == rcpt):
                    return rec
            self._not_held(message_id)
            return None
        return wait_until(f"a {event!r} tracking record of {message_id}"
                          + (f" for {rcpt}" if rcpt else ""), probe, explain=self.explain)

    def delivered(self, sink: Sink, rcpt: str, message_id: str) -> tuple[Received, dict[str, Any]]:
        """The message as the next hop got it for `rcpt`, and its `delivered` tracking line."""
        def probe() -> list[Received] | None:
            self._not_held(message_id)
            return [m for m in sink.to(rcpt) if m.header("Message-ID") == message_id] or None
        got = wait_until(f"{message_id} for {rcpt} at the next hop", probe, explain=self.explain)
        assert len(got) == 1, f"{len(got)} copies of {message_id} for {rcpt}"
        return got[0], self.wait_event(message_id, "delivered", rcpt)

    def alerts(self) -> str:
        path = self.data / "alerts.jsonl"
        return path.read_text() if path.exists() else ""

    def cli(self, command: str, *args: str, check: bool = True) -> str:
        """`filterlang queue|quarantine -c gateway.toml ...` output."""
        return filterlang(command, "-c", self.config, *args, check=check).stdout.decode()

    def keys(self, *args: str) -> str:
        return filterlang("keys", "--store", self.keystore, *args).stdout.decode()

    def explain(self) -> str:
        """What an operator would look at when something went wrong."""
        tracking = (self.data / "tracking.jsonl")
        track = tracking.read_text()[-4000:] if tracking.exists() else ""
        queue = run(FILTERLANG, "queue", "-c", self.config, "list", check=False).stdout.decode()[-2000:]
        return (f"{super().explain()}\n--- tracking\n{track}\n--- queue\n{queue}\n"
                f"--- alerts\n{self.alerts()[-2000:]}")


REPO = Path(__file__).resolve().parents[2]


def make_run_certificate(out: Path) -> None:
    """The organisation certificate exactly as `make run` creates it: the Makefile's own
    `filterlang cert create` line, with only the output prefix changed."""
    recipe = re.search(r"filterlang (cert create .*?) --out \S+$",
                       (REPO / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile no longer creates var/certs/org with `filterlang cert create`"
    filterlang(*shlex.split(recipe.group(1)), "--out", out)


class ExampleGateway(Gateway):
    """`make run`'s gateway: a copy of examples/ and its gateway.toml, with the organisation
    certificate made as the Makefile makes it. Only what two of them on one host need differs:
    ports, one listener process, our users being 127.0.0.2 (so that the other gateway's
    127.0.0.1 is the outside world), and, when given, a relay instead of the maildir and a
    partner certificate pinned in `[smime] trust_anchors`."""

    def __init__(self, root: Path, *, relay: int | None = None,
                 trust: Path | None = None) -> None:
        self.relay, self.anchor, self.home = relay, trust, root
        shutil.copytree(REPO / "examples", root / "examples")
        (root / "var" / "certs").mkdir(parents=True)
        make_run_certificate(root / "var" / "certs" / "org")
        self.metrics_port = free_port()
        super().__init__(root / "examples", next_hop=relay or 0)

    @property
    def keystore(self) -> str:
        return f"sqlite:///{self.home}/var/keys.sqlite3"

    @property
    def data(self) -> Path:
        return self.home / "var"

    @property
    def org_cert(self) -> Path:
        return self.home / "var" / "certs" / "org.crt.pem"

    def write_config(self) -> None:
        text = (REPO / "examples" / "gateway.toml").read_text()
        edits = [("workers = 0", "workers = 1"), ("port = 2525", f"port = {self.port}"),
                 ("port = 9125", f"port = {self.metrics_port}"),
                 ('ips = ["127.0.0.0/8", "::1"]', 'ips = ["127.0.0.2/32"]')]
        if self.relay:
            edits.append(('maildir = "../var/maildir"', f'relay = "127.0.0.1:{self.relay}"'))
        if self.anchor:
            edits.append(("trust_anchors = []", f"trust_anchors = [{json.dumps(str(self.anchor))}]"))
        for old, new in edits:
            assert old in text, f"examples/gateway.toml no longer says {old!r}"
            text = text.replace(old, new, 1)
        self.config.write_text(text)

    def maildir(self, rcpt: str) -> list[bytes]:
        """What the example's maildir delivery wrote for `rcpt`."""
        folder = self.data / "maildir" / rcpt / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


class Postfix(Logged):
    """A throwaway Postfix on loopback (/work/shared/reference/test-peers.md's recipe): its own
    configuration, queue and data folders, `postfix -c CONF start-fg` in the foreground, its
    log in `log`. `main` and `master` are lines added to main.cf and master.cf. Needs root."""

    def __init__(self, main: str = "", master: str = "", *, hostname: str = "postfix.test") -> None:
        self.port = free_port()
        # Not under pytest's tmp folders (0700 root): the postfix user must reach its files.
        self.root = Path(tempfile.mkdtemp(prefix="fl-postfix-"))
        self.root.chmod(0o755)
        self.conf = self.root / "conf"
        for sub in ("conf", "q", "data"):
            (self.root / sub).mkdir()
        shutil.chown(self.root / "data", "postfix")
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                fields[4] = "n"  # no chroot: the private queue folder has no /etc copies
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{self.port}"
                line = "  ".join(fields)
            lines.append(line)
        (self.conf / "master.cf").write_text("\n".join(lines) + "\n" + master + "\n")
        (self.conf / "main.cf").write_text(f"""
queue_directory = {self.root / 'q'}
data_directory = {self.root / 'data'}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = {hostname}
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
compatibility_level = 3.6
maillog_file = /dev/stdout
smtp_tls_loglevel = 1
smtpd_tls_loglevel = 1
""" + main + "\n")
        self.log = self.root / "postfix.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """Why Postfix cannot run here, or None."""
        if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
            return "postfix is not installed (.ci/run installs it)"
        if os.geteuid() != 0:
            return "a throwaway Postfix needs root to start"
        return None

    def start(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["postfix", "-c", str(self.conf), "start-fg"],
                                         stdout=log, stderr=log, start_new_session=True)
        wait_until(f"Postfix to greet on port {self.port}", self._greets, explain=self.explain)
        return self

    def _greets(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postfix exited {self.proc.returncode}\n{self.explain()}")
        try:
            with connection(self.port, timeout=5) as s:
                return read_reply(s).startswith("220")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        run("postfix", "-c", self.conf, "stop", check=False)
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def explain(self) -> str:
        return f"--- postfix log\n{self.log_text()[-4000:]}"


@contextlib.contextmanager
def running(*things: Serve | Sink | Postfix) -> Iterator[None]:
    """Start sinks and gateways in the order given; stop them all (in reverse) at the end."""
    started: list[Serve | Sink | Postfix] = []
    try:
        for thing in things:
            thing.start()
            started.append(thing)
        yield
    finally:
        for thing in reversed(started):
            thing.stop()
