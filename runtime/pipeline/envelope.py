"""The envelope: what SMTP told the gateway about a message, plus its queue bookkeeping.

It travels with the message through the pipeline and is stored as the JSON header of a queue
file (`runtime.mta.spool`), so it lives below both.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen

FORMAT_VERSION = 2  # of the queue file's JSON header (2 adds the body's length and CRC-32)
READABLE_VERSIONS = (1, 2)


class CorruptEntry(Exception):
    """A queue file that cannot be read back."""


@frozen
class Envelope:
    """What SMTP told us, plus queue bookkeeping. Recipients are the ones still pending."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[tuple[str, ...], ...] = ()
    peer: str = ""
    policy: str = ""
    helo: str = ""
    received_at: float = 0.0
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    queue_id: str = ""
    processed: bool = False  # the pipeline ran; retries only redo delivery
    alt_mailhost: str = ""  # set by the alt-mailhost action: deliver to this host instead
    trace: tuple[str, ...] = ()  # what the pipeline did (filters matched, actions, profile)
    listener: str = ""  # the listener's configured name (recv-listener in filters)
    auth_user: str = ""  # the SMTP AUTH identity (smtp-auth-id in filters); "" unauthenticated
    interface: str = ""  # the receiving interface's nickname (recv-int in filters)
    # The subject (RFC 4514) of the client certificate the listener verified ($TLSClientSubject)
    tls_client_subject: str = ""
    # The message was encrypted when it arrived: a DSN returns its headers only, never the
    # content the gateway decrypted (kept here so a restart does not forget it).
    headers_only_dsn: bool = False
    delay_notified: bool = False  # the NOTIFY=DELAY notice went out (one per message)
    # encrypt(..., 1) "TLS first": the encryption profile that encrypts the message at delivery
    # unless the next hop's TLS meets its policy, and the subject the encrypted message takes.
    encrypt_unless_tls: str = ""
    encrypt_subject: str = ""
    # Parked in a quarantine before the outgoing DKIM signing (which signs only what leaves):
    # released, it is signed then, so released mail leaves signed like the rest.
    dkim_on_release: bool = False

    def to_json(self) -> dict[str, Any]:
        # Not attrs.asdict(): its generic recursion ran for every message received (~3% of a
        # worker's CPU). Every field, by name (tuples become JSON arrays all the same).
        data = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        data["version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        if data.get("version") not in READABLE_VERSIONS:
            raise CorruptEntry(f"unknown spool format version {data.get('version')!r}")
        try:
            return cls(
                mail_from=str(data["mail_from"]),
                rcpt_tos=tuple(str(r) for r in data["rcpt_tos"]),
                mail_options=tuple(data.get("mail_options", ())),
                rcpt_options=tuple(tuple(o) for o in data.get("rcpt_options", ())),
                peer=str(data.get("peer", "")),
                policy=str(data.get("policy", "")),
                helo=str(data.get("helo", "")),
                received_at=float(data.get("received_at", 0.0)),
                attempts=int(data.get("attempts", 0)),
                next_attempt=float(data.get("next_attempt", 0.0)),
                last_error=str(data.get("last_error", "")),
                queue_id=str(data.get("queue_id", "")),
                processed=bool(data.get("processed", False)),
                alt_mailhost=str(data.get("alt_mailhost", "")),
                trace=tuple(str(t) for t in data.get("trace", ())),
                listener=str(data.get("listener", "")),
                auth_user=str(data.get("auth_user", "")),
                interface=str(data.get("interface", "")),
                tls_client_subject=str(data.get("tls_client_subject", "")),
                headers_only_dsn=bool(data.get("headers_only_dsn", False)),
                delay_notified=bool(data.get("delay_notified", False)),
                encrypt_unless_tls=str(data.get("encrypt_unless_tls", "")),
                encrypt_subject=str(data.get("encrypt_subject", "")),
                dkim_on_release=bool(data.get("dkim_on_release", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptEntry(f"bad envelope header: {exc}") from None


_ENVELOPE_FIELDS = tuple(f.name for f in attrs.fields(Envelope))
