"""The message-integrity tests' gateway (issue 13): `filterlang serve` with one listener and
one queue process, relaying every message to its own sink, and decrypting and verifying inbound
S/MIME with an organisation certificate issued by the test PKI (tests/smime/pki.py).

The process and the sink are the end-to-end harness's (tests/e2e/harness.py); this module adds
the configuration and the PKI.
"""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Self

from tests.e2e.harness import (  # noqa: F401  (re-exported for the integrity tests)
    FILTERLANG,
    Serve,
    Sink,
    free_port,
    wait_until,
)
from tests.smime.pki import Issued, Pki, key_pem, make_pki

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

_PKI: Pki | None = None


def pki() -> Pki:
    """One test PKI per session (RSA keys take time to make on a loaded machine)."""
    global _PKI
    if _PKI is None:
        _PKI = make_pki()
    return _PKI


class Served(Serve):
    """A gateway under `filterlang serve`, with its sink, started by `with Served(...) as gw:`."""

    def __init__(self, root: Path, *, filters: str = "", policy_extra: str = "",
                 smime_extra: str = "", extra: str = "", org: Issued | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / "gateway.toml", free_port())
        self.org = org or pki().user("gateway@example.org", kind="rsa",
                                     key_usage="key_encipherment")
        (root / "org.crt.pem").write_bytes(self.org.pem + pki().inter.pem)
        (root / "org.key.pem").write_bytes(key_pem(self.org.key))
        (root / "trust.pem").write_bytes(pki().root.pem)
        (root / "message.filter").write_text(filters)
        self.sink = Sink()
        self.config.write_text(CONFIG.format(
            port=self.port, sink=self.sink.port, policy_extra=policy_extra,
            smime_extra=smime_extra, extra=extra))

    def start(self) -> Self:
        self.sink.start()
        return super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.sink.stop()

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
