"""Harvesting: whether to keep a signer's certificate, and the alerts that governance raises."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import attrs

from smime.binding import ADDRESS, covering_domains, sender_binding
from smime.keystore import KeyStore, KeyStoreUnavailableError
from smime.keystore._cert import CertificateParseError, parse_pem
from smime.keystore._sqlstore import HarvestOutcome


class AlertSink(Protocol):
    def alert(self, kind: str, message: str, at: int) -> None: ...


@attrs.frozen
class JsonLinesAlertSink:
    """Appends one JSON object per alert to a log file (one write per line: safe to share)."""

    path: Path

    def alert(self, kind: str, message: str, at: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": at, "kind": kind, "message": message}, sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)


@attrs.frozen
class HarvestPolicy:
    """The mail flow policy's harvesting options plus our governance settings."""

    harvest: bool = True
    harvest_failed_verification: bool = False
    harvest_updated_keys: bool = True
    review_window_hours: int = 48
    size_cap_bytes: int = 512 * 1024 * 1024
    # A certificate naming the sender's domain (a partner gateway's) is kept under that
    # domain: the gateway's `[smime] accept_domain_certificates`, as for verifying.
    domain_certificates: bool = False


@attrs.frozen
class SignedMessageReport:
    """What the verifier tells the harvester about one incoming signed message."""

    signer_pem: str
    verified: bool
    capabilities: tuple[str, ...]
    message_id: str | None
    sender: str
    now: datetime | None = None


def harvest(store: KeyStore, report: SignedMessageReport, policy: HarvestPolicy = HarvestPolicy(),
            sinks: Sequence[AlertSink] = ()) -> HarvestOutcome:  # fmt: skip
    """Decide whether to keep the signer's certificate and apply governance.

    Never raises on a bad certificate or an unreachable store: the outcome says why nothing
    was kept.
    """
    if not policy.harvest:
        return HarvestOutcome("skipped", "harvesting is off in the mail flow policy")
    if not report.verified and not policy.harvest_failed_verification:
        return HarvestOutcome("skipped", "the signature did not verify")
    try:
        info = parse_pem(report.signer_pem)
    except CertificateParseError as exc:
        return HarvestOutcome("skipped", f"signer certificate unreadable: {exc}")
    at = int(report.now.timestamp()) if report.now else int(time.time())
    if at >= info.not_after:
        return HarvestOutcome("skipped", "the signer certificate has expired")
    if at < info.not_before:
        return HarvestOutcome("skipped", "the signer certificate is not yet valid")
    if info.self_signed and not report.verified:
        # A verified signature had its path validated, so a self-signed signer was one of our
        # configured trust anchors (a partner gateway's pinned certificate, smime.md 5.3 and
        # 5.6); unverified, a self-signed certificate vouches for nothing.
        return HarvestOutcome("skipped", "the signer certificate is self-signed")
    binding = sender_binding(info.emails, info.domains, report.sender,
                             domain_certificates=policy.domain_certificates)
    if binding is None:
        # Only keep what the message vouches for: the certificate must name the sender.
        return HarvestOutcome("skipped", f"the certificate does not name the sender {report.sender}")
    # Kept under the certificate's own addresses (smime.md 5.6); a domain certificate also
    # under the domain name(s) that named the sender, so that lookup finds it for the domain.
    names = info.emails if binding == ADDRESS else (
        *info.emails, *covering_domains(info.domains, report.sender))
    try:
        outcome = store.harvest(
            info,
            names=names,
            message_id=report.message_id,
            capabilities=report.capabilities,
            obtained="harvested" if report.verified else "harvested-unverified",
            now=report.now,
            replace_updated=policy.harvest_updated_keys,
            window_seconds=policy.review_window_hours * 3600,
            size_cap=policy.size_cap_bytes,
        )
    except KeyStoreUnavailableError as exc:
        # Harvesting is a side effect of receiving mail: a store outage must not fail the
        # message. Nothing was written (the transaction did not commit); the reason is logged.
        return HarvestOutcome("skipped", f"key store unavailable: {exc}")
    for message in outcome.alerts:
        for sink in sinks:
            sink.alert("keystore", message, at)
    return outcome
