"""Read the facts the key store needs out of one PEM certificate (cryptography.x509)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smime.errors import KeyStoreError


class CertificateParseError(KeyStoreError):
    """A PEM block is not a certificate we can read."""


@attrs.frozen
class CertInfo:
    """What lookup and harvesting need to know about one certificate."""

    pem: str
    fingerprint: str  # SHA-256 of the DER, lower-case hex
    subject: str
    issuer: str
    emails: tuple[str, ...]
    domains: tuple[str, ...]  # dNSName entries, may start with "*."
    not_before: int  # epoch seconds
    not_after: int
    self_signed: bool
    can_encrypt: bool
    can_sign: bool
    der_size: int


def _epoch(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp()) if value.tzinfo is None else int(value.timestamp())


def parse_pem(pem: str) -> CertInfo:
    """Parse one PEM certificate; raise CertificateParseError with the reason."""
    try:
        return _parse(pem)
    except CertificateParseError:
        raise
    except Exception as exc:  # noqa: BLE001
        # cryptography parses names and extensions lazily, on first access, and raises a
        # zoo of types there (ValueError for a bad subject, DuplicateExtension, InvalidVersion,
        # UnsupportedGeneralNameType): each is one unreadable certificate, never a traceback.
        raise CertificateParseError(f"not a readable certificate: {exc}") from None


def _parse(pem: str) -> CertInfo:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        der = cert.public_bytes(Encoding.DER)
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateParseError(f"not a readable certificate: {exc}") from None
    emails: list[str] = []
    domains: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for mail in san.get_values_for_type(x509.RFC822Name):
            if "@" in mail:
                emails.append(mail.lower())
            else:  # a bare domain in rfc822Name means "any mailbox at this domain"
                domains.append(mail.lower().lstrip("."))
        domains.extend(d.lower() for d in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    except ValueError as exc:
        raise CertificateParseError(f"unreadable subjectAltName: {exc}") from None
    if not emails:
        # Legacy certificates carry the address only in the subject's emailAddress attribute.
        for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            if isinstance(attr.value, str) and "@" in attr.value:
                emails.append(attr.value.lower())
    can_encrypt, can_sign = True, True
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        can_encrypt = ku.key_encipherment or ku.key_agreement
        can_sign = ku.digital_signature or ku.content_commitment
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ok = ExtendedKeyUsageOID.EMAIL_PROTECTION in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
        can_encrypt, can_sign = can_encrypt and ok, can_sign and ok
    except x509.ExtensionNotFound:
        pass
    self_signed = cert.subject == cert.issuer
    if self_signed:
        try:
            cert.verify_directly_issued_by(cert)
        except Exception:  # any failure means the signature is not its own
            self_signed = False
    return CertInfo(
        pem=pem_of(der),
        fingerprint=hashlib.sha256(der).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        emails=tuple(dict.fromkeys(emails)),
        domains=tuple(dict.fromkeys(domains)),
        not_before=_epoch(cert.not_valid_before_utc),
        not_after=_epoch(cert.not_valid_after_utc),
        self_signed=self_signed,
        can_encrypt=can_encrypt,
        can_sign=can_sign,
        der_size=len(der),
    )


def pem_of(der: bytes) -> str:
    """Canonical PEM (64-column base64) so that export files round-trip byte for byte."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
