"""Transports: how one message copy reaches one destination (SMTP, maildir, in memory).

A transport returns one `Result` per recipient; it never raises for a delivery problem. The
SMTP transports live in runtime/smtp_client.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from attrs import define, field, frozen

from runtime.engine.fieldline import field as header_field
from runtime.engine.providers.resolver import Resolver as EngineResolver
from runtime.engine.providers.resolver import shared_resolver


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
class TlsNotMet(Result):
    """What an SMTP transport answers, without sending, when mail that may go in clear only
    over TLS (rule 1 of an encryption profile, `send_async(..., tls_first=True)`) finds no
    session that meets its TLS policy: the queue encrypts the copy instead. A class of its own
    rather than a code and text, so that no reply of a peer can be taken for it."""


def tls_not_met(reason: str) -> TlsNotMet:
    return TlsNotMet(454, f"{reason}; not sent in clear")


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


class MxFailure(Exception):
    """The recipient's domain cannot be routed now (temporary) or at all (permanent)."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.text)
        self.result = result


class DnsResolver:
    """MX delivery (RFC 5321 5.1) through the gateway's one resolver: MX hosts in preference
    order, each by its A and AAAA addresses; no MX record: the domain's own addresses (the
    implicit MX); a null MX (RFC 7505) or a domain that does not exist: permanent failure;
    SERVFAIL or a timeout: temporary failure, so the message waits and is tried again."""

    def __init__(self, resolver: EngineResolver | None = None, port: int = 25) -> None:
        self.resolver = resolver or shared_resolver()
        self.port = port

    async def _addresses(self, host: str) -> tuple[list[Destination], str]:
        found = await asyncio.gather(self.resolver.lookup(host, "A"),
                                     self.resolver.lookup(host, "AAAA"))
        dests = [Destination(r.address, self.port) for f in found for r in f.records]
        return dests, next((f.problem for f in found if f.status == "temperror"), "")

    async def mx_async(self, domain: str) -> list[Destination]:
        domain = domain.strip().rstrip(".").lower()
        if domain.startswith("[") and domain.endswith("]"):  # an address literal
            return [Destination(domain.strip("[]").removeprefix("IPv6:"), self.port)]
        found = await self.resolver.lookup(domain, "MX")
        if found.status == "temperror":
            raise MxFailure(Result(451, f"4.4.3 DNS lookup of {domain} MX failed: {found.problem}"))
        if found.status == "nxdomain":
            raise MxFailure(Result(550, f"5.1.2 domain {domain} does not exist"))
        if found.status == "nodata":
            dests, problem = await self._addresses(domain)
            if dests:
                return dests
            if problem:
                raise MxFailure(Result(451, f"4.4.3 DNS lookup of {domain} failed: {problem}"))
            raise MxFailure(Result(550, f"5.1.2 domain {domain} has no MX and no address"))
        records = sorted(found.records, key=lambda r: r.preference)
        if len(records) == 1 and records[0].exchange.to_text(True) in ("", "."):
            raise MxFailure(Result(556, f"5.1.10 domain {domain} accepts no mail (null MX)"))
        out: list[Destination] = []
        problems = []
        for r in records:
            dests, problem = await self._addresses(r.exchange.to_text(True))
            out += [d for d in dests if d not in out]
            if problem:
                problems.append(problem)
        if not out:
            if problems:
                raise MxFailure(Result(451, f"4.4.3 DNS lookup of {domain}'s MX hosts failed"))
            raise MxFailure(Result(451, f"4.4.4 no MX host of {domain} has an address"))
        return out

    def mx(self, domain: str) -> list[Destination]:
        """`mx_async` for code outside an event loop (`filterlang test` with a configuration)."""
        try:
            return asyncio.run(self.mx_async(domain))
        except MxFailure:
            return []


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
