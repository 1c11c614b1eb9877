"""Transports: how one message copy reaches one destination (SMTP, maildir, in memory).

A transport returns one `Result` per recipient; it never raises for a delivery problem. The
SMTP transports live in runtime/smtp_client.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from attrs import define, field, frozen

from runtime.engine.fieldline import field as header_field


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


@frozen(cache_hash=True)
class TlsRequirement:
    """What a TLS session must be for mail that may only go in clear over TLS (rule 1 of an
    encryption profile): STARTTLS offered and negotiated, and with `verify` a certificate that
    verifies (against `ca_file`, else the system's CAs) for the host connected to."""

    verify: bool = False
    ca_file: Path | None = None


# What an SMTP transport answers, without sending, when the session does not meet the
# TlsRequirement it was given: the queue then encrypts the message instead.
TLS_NOT_MET = Result(454, "4.7.0 no TLS session that meets the policy; not sent in clear")


@frozen(cache_hash=True)  # a dict key several times per message (routes, idle connections)
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
                    fh.write(header_field("Return-Path", f"<{mail_from}>"))
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
