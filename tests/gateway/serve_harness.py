"""`filterlang serve` as a subprocess from a written gateway.toml, a real next hop (an aiosmtpd
sink) and SMTP over loopback: the harness of the message-integrity tests (issue 13).

A `Served` gateway has one listener and one queue process, delivers every message to its
sink by `relay`, and decrypts and verifies inbound S/MIME with an organisation certificate
issued by the test PKI. Tests wait for conditions with generous deadlines, never fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization

from tests.smime.pki import Issued, Pki, make_pki

FILTERLANG = Path(sys.executable).parent / "filterlang"
DEADLINE = 60.0  # seconds: generous, for a machine shared by many test runs

CONFIG = """
workers = 1
queue_workers = 1
local_domains = ["example.org"]
message_filters = ["message.filter"]

[storage]
data_dir = "data"

[[listeners]]
name = "in"
address = "127.0.0.1"
port = {port}

[policies.default]
action = "ACCEPT"
smime_decrypt_verify = true
smime_signature = "retain"
{policy_extra}

[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["trust.pem"]
{smime_extra}

[quarantines.held]

[delivery]
relay = "127.0.0.1:{sink}"
retry_schedule = [1]
connect_timeout = 5
{extra}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Sink:
    """The next hop: keeps every message it is given, bytes exactly as they arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._ctl = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  bytes(envelope.original_content)))
        return "250 2.0.0 stored"

    def start(self) -> None:
        self._ctl.start()

    def stop(self) -> None:
        self._ctl.stop()

    def wait(self, count: int = 1) -> list[bytes]:
        wait_for(lambda: len(self.messages) >= count, f"{count} message(s) at the sink")
        with self._lock:
            return [m for _, _, m in self.messages]


_PKI: Pki | None = None


def pki() -> Pki:
    """One test PKI per session (RSA keys take time to make on a loaded machine)."""
    global _PKI
    if _PKI is None:
        _PKI = make_pki()
    return _PKI


def key_pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


class Served:
    """A gateway under `filterlang serve`, started by `with Served(...) as gw:`."""

    def __init__(self, root: Path, *, filters: str = "", policy_extra: str = "",
                 smime_extra: str = "", extra: str = "", org: Issued | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.org = org or pki().user("gateway@example.org", kind="rsa",
                                     key_usage="key_encipherment")
        (root / "org.crt.pem").write_bytes(self.org.pem + pki().inter.pem)
        (root / "org.key.pem").write_bytes(key_pem(self.org.key))
        (root / "trust.pem").write_bytes(pki().root.pem)
        (root / "message.filter").write_text(filters)
        self.port = free_port()
        self.sink = Sink()
        (root / "gateway.toml").write_text(CONFIG.format(
            port=self.port, sink=self.sink.port, policy_extra=policy_extra,
            smime_extra=smime_extra, extra=extra))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        self.sink.start()
        self._log = (self.root / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [str(FILTERLANG), "serve", "-c", str(self.root / "gateway.toml")],
            stdout=self._log, stderr=self._log, start_new_session=True)
        wait_for(self._ready, f"filterlang serve on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"filterlang serve exited:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.sink.stop()

    def log(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")

    def send(self, data: bytes, mail_from: str = "eve@outside.example",
             rcpts: tuple[str, ...] = ("bob@example.org",)) -> tuple[int, bytes]:
        """One SMTP transaction; the reply to DATA (or to the first refused command)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.ehlo("client.outside.example")
            code, text = s.mail(mail_from)
            if code >= 400:
                return code, text
            for r in rcpts:
                code, text = s.rcpt(r)
                if code >= 400:
                    return code, text
            try:
                return s.data(data)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error

    def spool_names(self, queue: str) -> list[str]:
        folder = self.root / "data" / queue
        return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
