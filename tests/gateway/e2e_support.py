"""End-to-end harness: whole gateways in-process on loopback, real SMTP between them.

An `Org` is one organisation: its CA, its gateway certificate (naming its users and its
domain), a key store, a mailbox server (an aiosmtpd capture) and a gateway whose listener and
queue runner are the real ones with every pipeline stage built from its gateway.toml.
Users submit from 127.0.0.2 (sender group `users`, RELAY: outgoing); other gateways connect
from 127.0.0.1 (the default ACCEPT policy: incoming, S/MIME decrypt and verify).
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from runtime.config.config import load_config
from runtime.mta.queue import QueueRunner
from runtime.mta.smtp_client import AsyncSMTPTransport
from runtime.mta.supervisor import make_runner
from runtime.mta.transport import Destination, StaticResolver
from runtime.pipeline.stages import build_stages
from smime.keystore import KeyStore, open_keystore
from tests.smime.pki import Issued, issue, key_pem

from .conftest import RunningListener, free_port
from .queue_support import run_queue


class Capture:
    """A mailbox server: keeps (mail_from, rcpts, bytes) of every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 stored"

    def for_rcpt(self, rcpt: str) -> list[bytes]:
        return [m for _, rcpts, m in self.messages if rcpt in rcpts]


GATEWAY_TOML = """
workers = 1
local_domains = ["{domain}"]
message_filters = ["outbound.filter"]

[storage]
data_dir = "data"
keystore_url = "sqlite:///{root}/keys.sqlite3"

[[listeners]]
name = "main"
address = "127.0.0.1"
port = {port}
session_timeout = {session_timeout}

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
harvest_updated_keys = {updated}
max_message_size = {max_size}
max_recipients = {max_rcpts}

[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["trust"]

[profiles.protect]
mode = "{mode}"
signing_certificate = "org"
sign_mode = "{sign_mode}"
missing_key_action = "{missing}"
{cipher}

[quarantines.smime_failed]

[delivery]
mx = true
retry_schedule = [60]
max_queue_lifetime = 3600
connect_timeout = 5
"""

OUTBOUND_FILTER = """
protect_outgoing:
  if sendergroup == 'users' {
      smime-gateway-deferred('protect');
  }

mark_failed_smime:
  if smime-gateway-message and not smime-gateway-verified {
      insert-header('X-SMIME-Check', 'failed');
  }
"""


class Org:
    def __init__(self, root: Path, domain: str, users: tuple[str, ...], *, mode: str = "sign-encrypt",
                 sign_mode: str = "detached", missing: str = "bounce", signature: str = "remove",
                 cipher: str | None = None, filters: str = OUTBOUND_FILTER, extra: str = "",
                 session_timeout: float = 30.0, max_size: int = 20 * 1024 * 1024,
                 max_rcpts: int = 100, harvest_updated_keys: bool = False) -> None:
        self.root, self.domain = root, domain
        root.mkdir(parents=True)
        (root / "trust").mkdir()
        self.ca = issue(f"{domain} CA", ca=True)
        self.cert: Issued = issue(f"gateway.{domain}", self.ca, key_usage=None,
                                  emails=[*(f"{u}@{domain}" for u in users), domain])
        (root / "org.crt.pem").write_bytes(self.cert.pem)
        (root / "org.key.pem").write_bytes(key_pem(self.cert.key))
        (root / "trust" / f"{domain}.pem").write_bytes(self.ca.pem)
        (root / "outbound.filter").write_text(filters)
        self.port = free_port()
        (root / "gateway.toml").write_text(GATEWAY_TOML.format(
            domain=domain, root=root, port=self.port, signature=signature, mode=mode,
            sign_mode=sign_mode, missing=missing, session_timeout=session_timeout,
            max_size=max_size, max_rcpts=max_rcpts, updated=str(harvest_updated_keys).lower(),
            cipher=f'cipher = "{cipher}"' if cipher else "") + extra)
        self.mailbox = Capture()
        self.mailbox_port = free_port()
        self.mailbox_ctl = Controller(self.mailbox, hostname="127.0.0.1", port=self.mailbox_port)
        self.routes: dict[str, list[Destination]] = {domain: [Destination("127.0.0.1", self.mailbox_port)]}
        self._listener: RunningListener | None = None
        self.runner: QueueRunner | None = None
        self._store: KeyStore | None = None

    @property
    def store(self) -> KeyStore:
        if self._store is None:
            self._store = open_keystore(f"sqlite:///{self.root}/keys.sqlite3")
        return self._store

    def trust(self, other: Org) -> None:
        (self.root / "trust" / f"{other.domain}.pem").write_bytes(other.ca.pem)

    def route(self, domain: str, port: int) -> None:
        self.routes[domain] = [Destination("127.0.0.1", port)]

    def start(self) -> None:
        config = load_config(self.root / "gateway.toml")
        self.mailbox_ctl.start()
        self._listener = RunningListener(config)
        self.alerts: list[tuple[str, str]] = []
        stages = build_stages(config, store=self.store, alert=lambda k, t: self.alerts.append((k, t)))
        self.runner = make_runner(config, self._listener.spool, transport=AsyncSMTPTransport(5.0),
                                  resolver=StaticResolver(self.routes), stages=stages)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.mailbox_ctl.stop()
        if self._store is not None:
            self._store.close()

    def submit(self, mail_from: str, rcpts: list[str], data: bytes, *, source: str = "127.0.0.2") -> None:
        with smtplib.SMTP("127.0.0.1", self.port, source_address=(source, 0), timeout=10) as s:
            refused = s.sendmail(mail_from, rcpts, data)
            assert not refused, refused

    def tracking(self) -> str:
        path = self.root / "data" / "tracking.jsonl"
        return path.read_text() if path.exists() else ""


def pump(*orgs: Org, until: Callable[[], bool] = lambda: False, rounds: int = 40) -> None:
    """Run every queue until `until()` holds or nothing moves any more."""
    for _ in range(rounds):
        moved = sum(run_queue(o.runner) for o in orgs if o.runner is not None)
        if until():
            return
        if not moved:
            time.sleep(0.05)


def message(mail_from: str, to: str, subject: str, body: str = "Hello,\r\nthe report is attached.\r\n") -> bytes:
    return (f"From: <{mail_from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash((subject, to))) % 10**12}@{mail_from.split('@')[1]}>\r\n"
            f"Date: Sun, 29 Nov 2026 03:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}").encode("ascii")
