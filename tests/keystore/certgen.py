"""Fast test certificates: one CA key and one leaf key, many certificates."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@functools.cache
def _keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def make_cert(
    emails: tuple[str, ...] = ("alice@example.com",),
    dns: tuple[str, ...] = (),
    *,
    not_before: datetime = NOW - timedelta(days=30),
    days: int = 365,
    encrypt: bool = True,
    self_signed: bool = False,
    serial: int | None = None,
    other_key: bool = False,
) -> str:
    ca_key, leaf_key = _keys()
    key = ec.generate_private_key(ec.SECP256R1()) if other_key else leaf_key
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, emails[0] if emails else dns[0])])
    issuer = subject if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    sans: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    sans += [x509.DNSName(d) for d in dns]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, encrypt, False, encrypt and False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    )
    signer = key if self_signed else ca_key
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
