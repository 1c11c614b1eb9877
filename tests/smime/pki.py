"""A small test PKI: root CA, intermediate, end-entity certificates and CRLs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def new_key(kind: str = "rsa") -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa1024":  # below the RSA floor: only for weak-key tests
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if kind == "p224":  # a curve outside the allowed list
        return ec.generate_private_key(ec.SECP224R1())
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


@attrs.frozen
class Issued:
    key: Key
    cert: x509.Certificate

    @property
    def asn1(self) -> ax509.Certificate:
        return ax509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _sign_hash(key: Key) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def issue(
    cn: str,
    issuer: Issued | None = None,
    *,
    kind: str = "rsa",
    ca: bool = False,
    emails: Sequence[str] = (),
    dns: Sequence[str] = (),
    key_usage: str | None = "digital_signature",
    eku: bool = True,
    eku_oid: str | None = None,
    not_before: dt.datetime = NOW - dt.timedelta(days=30),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
    unknown_critical: bool = False,
    key: Key | None = None,
    serial: int | None = None,
) -> Issued:
    key = key or new_key(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    flags = dict.fromkeys(
        ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False)
    if ca:
        flags["key_cert_sign"] = flags["crl_sign"] = True
    elif key_usage:
        flags[key_usage] = True
    if ca or key_usage:
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if emails or dns:
        names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
        names += [x509.DNSName(d) for d in dns]
        b = b.add_extension(x509.SubjectAlternativeName(names), False)
    if eku and not ca:
        purpose = x509.ObjectIdentifier(eku_oid) if eku_oid else ExtendedKeyUsageOID.EMAIL_PROTECTION
        b = b.add_extension(x509.ExtendedKeyUsage([purpose]), False)
    if unknown_critical:
        b = b.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
    signer = issuer.key if issuer else key
    return Issued(key, b.sign(signer, _sign_hash(signer)))


def crl(ca: Issued, revoked: Sequence[Issued], now: dt.datetime = NOW) -> bytes:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(days=1))
        .next_update(now + dt.timedelta(days=30))
        .add_extension(x509.CRLNumber(1), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    for r in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(r.cert.serial_number)
            .revocation_date(now - dt.timedelta(days=2))
            .build()
        )
    return b.sign(ca.key, _sign_hash(ca.key)).public_bytes(serialization.Encoding.DER)


@attrs.frozen
class Pki:
    root: Issued
    inter: Issued

    def user(self, email: str = "alice@example.com", **kw: object) -> Issued:
        return issue(email, self.inter, emails=[email], **kw)  # type: ignore[arg-type]


def key_pem(key: Key) -> bytes:
    """A private key as the PEM (PKCS#8, unencrypted) file a gateway configuration names."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki() -> Pki:
    root = issue("Test Root", ca=True, kind="p256")
    return Pki(root, issue("Test Intermediate", root, ca=True, kind="p256"))
