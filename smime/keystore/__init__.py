"""The key store: public keys, harvested keys with governance, on SQLite or PostgreSQL.

`open_keystore("sqlite:///var/keys.db")` or `open_keystore("postgresql://...")` returns a
`KeyStore`; both backends share one SQL implementation (`_sqlstore.SqlKeyStore`) and differ
only in how they connect and serialise writers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import attrs

from smime.errors import KeyStoreError

if TYPE_CHECKING:
    from smime.keystore._cert import CertInfo
    from smime.keystore._sqlstore import HarvestOutcome


class KeyNotFoundError(KeyStoreError):
    """No key (or pending change) has that name or id."""


class DuplicateKeyError(KeyStoreError):
    """A public key with that name already exists."""


class KeyStoreUnavailableError(KeyStoreError):
    """The store cannot be reached right now (database down, file locked too long).

    A temporary condition: the gateway answers a lookup that fails this way with a temporary
    SMTP failure (4xx) so the sender retries, never by sending the message in plain text.
    """


class ImportFileError(KeyStoreError):
    """An export file is malformed; the message names the line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@attrs.frozen
class KeyRecord:
    """One stored certificate, public (added by an administrator) or harvested."""

    id: int
    kind: str  # "public" or "harvested"
    name: str
    fingerprint: str
    subject: str
    emails: tuple[str, ...]
    domains: tuple[str, ...]
    not_before: int
    not_after: int
    pem: str
    pinned: bool
    revoked: bool
    first_seen: int
    last_seen: int
    last_used: int | None
    use_count: int
    source_message_id: str | None
    capabilities: tuple[str, ...]
    obtained: str  # "added", "imported", "harvested", "harvested-unverified", "accepted", "promoted"
    # Key usage, stored at insert time so that a lookup never has to parse the certificate.
    can_encrypt: bool = True
    can_sign: bool = True


@attrs.frozen
class PendingChange:
    """A harvested key held for review instead of replacing the stored one."""

    id: int
    address: str
    domain: str
    old_fingerprint: str | None
    new_fingerprint: str
    message_id: str | None
    reason: str
    created: int
    pem: str
    capabilities: tuple[str, ...]


@attrs.frozen
class AuditEntry:
    id: int
    at: int
    actor: str
    action: str
    name: str
    old_fingerprint: str | None
    new_fingerprint: str | None
    detail: str


@attrs.frozen
class AlertRecord:
    id: int
    at: int
    kind: str
    message: str


@attrs.frozen
class Candidate:
    """A key considered by a lookup and, when refused, why."""

    key: KeyRecord
    matched_by: str  # "address" / "domain" / "wildcard"
    refused: str | None


@attrs.frozen
class LookupResult:
    """The chosen key (or None) and every candidate with the reason it was or was not chosen."""

    address: str
    chosen: KeyRecord | None
    reason: str
    candidates: tuple[Candidate, ...]


class KeyStore(Protocol):
    """Everything the gateway and the CLI ask of the store."""

    def close(self) -> None: ...
    def add_public(self, name: str, pem: str, *, actor: str = "admin", now: datetime | None = None) -> KeyRecord: ...
    def get(self, name: str, *, kind: str = "public") -> KeyRecord: ...
    def list_keys(self, *, kind: str = "public", query: str | None = None, expires_before: int | None = None, limit: int | None = None) -> list[KeyRecord]: ...
    def remove(self, name: str, *, kind: str = "public", actor: str = "admin") -> None: ...
    def import_public(self, entries: Sequence[tuple[int, str, str]], *, actor: str = "admin",
                      progress: Callable[[int, int], None] | None = None) -> int: ...
    def harvest(self, info: CertInfo, *, message_id: str | None, capabilities: Sequence[str],
                obtained: str, now: datetime | None, replace_updated: bool,
                window_seconds: int, size_cap: int, actor: str = "harvester",
                names: Sequence[str] | None = None) -> HarvestOutcome: ...
    def candidates_for(self, address: str) -> list[tuple[KeyRecord, str]]: ...
    def record_use(self, key_id: int, now: datetime | None = None) -> None: ...
    def set_revoked(self, fingerprint: str, revoked: bool = True, *, actor: str = "admin") -> int: ...
    def set_pinned(self, name: str, pinned: bool, *, kind: str = "harvested", actor: str = "admin") -> None: ...
    def promote(self, name: str, *, new_name: str | None = None, actor: str = "admin") -> KeyRecord: ...
    def pending(self) -> list[PendingChange]: ...
    def resolve_pending(self, change_id: int, accept: bool, *, actor: str = "admin") -> PendingChange: ...
    def audit(self, limit: int = 100) -> list[AuditEntry]: ...
    def alerts(self, limit: int = 100) -> list[AlertRecord]: ...
    def harvested_size(self) -> int: ...


def open_keystore(url: str) -> KeyStore:
    """Open (creating and upgrading the schema if needed) the store at `url`."""
    if url.startswith("sqlite:///"):
        from smime.keystore._sqlite import open_sqlite

        return open_sqlite(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        from smime.keystore._postgres import open_postgres

        return open_postgres(url)
    raise KeyStoreError(f"unsupported key store URL {url!r}: use sqlite:///PATH or postgresql://...")


__all__ = [
    "AlertRecord",
    "AuditEntry",
    "Candidate",
    "DuplicateKeyError",
    "ImportFileError",
    "KeyNotFoundError",
    "KeyRecord",
    "KeyStore",
    "KeyStoreUnavailableError",
    "LookupResult",
    "PendingChange",
    "open_keystore",
]
