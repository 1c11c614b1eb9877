"""Loading private keys and certificates (PEM, DER, PKCS#12) and small key-type helpers."""

from __future__ import annotations

import base64
import binascii
import re

from asn1crypto import pkcs12 as apkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import pkcs12

from smime.errors import CertificateError, MalformedError

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | x25519.X25519PrivateKey
)
_PRIVATE_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    x25519.X25519PrivateKey,
)


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when `key` is the private half of the certificate's public key."""
    try:
        return _public_der(key.public_key()) == _public_der(cert.public_key())
    except Exception:  # noqa: BLE001 - an unloadable certificate key simply does not match
        return False


def load_private_key(data: bytes, password: bytes | None = None, *, where: str = "key") -> PrivateKey:
    """Load a PEM or DER private key (PKCS#8 or traditional), optionally encrypted."""
    loaders = (
        (serialization.load_pem_private_key if b"-----BEGIN" in data
         else serialization.load_der_private_key),
    )
    try:
        key = loaders[0](data, password)
    except TypeError as exc:
        raise MalformedError(
            f"{where}: {exc}; give the passphrase if the key is encrypted, none if it is not"
        ) from None
    except ValueError:
        raise MalformedError(
            f"{where}: not a readable private key (PEM or DER), or the passphrase is wrong"
        ) from None
    if not isinstance(key, _PRIVATE_TYPES):
        raise CertificateError(
            f"{where}: key type {type(key).__name__} is not supported; use RSA, EC, Ed25519 or X25519"
        )
    return key


def load_certificate(data: bytes, *, where: str = "certificate") -> x509.Certificate:
    """Load one PEM or DER certificate (the first one of a PEM bundle)."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise MalformedError(f"{where}: not a readable X.509 certificate (PEM or DER)") from None


def load_certificates(data: bytes, *, where: str = "certificates") -> list[x509.Certificate]:
    """Load every certificate of a PEM bundle, or one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise MalformedError(f"{where}: not readable X.509 certificates (PEM or DER)") from None


def load_pkcs12(
    data: bytes, password: bytes | None, *, where: str = "PKCS#12 file"
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Key, certificate and extra (chain) certificates of a PKCS#12 file."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(pkcs12_der(data), password)
    except ValueError:
        raise MalformedError(
            f"{where}: cannot be read: the passphrase is wrong or the file is not PKCS#12"
        ) from None
    if key is None or cert is None:
        raise CertificateError(
            f"{where}: needs both a private key and its certificate; export both from the client"
        )
    if not isinstance(key, _PRIVATE_TYPES):
        raise CertificateError(f"{where}: key type {type(key).__name__} is not supported")
    return key, cert, list(extra)


_PEM_P12 = re.compile(rb"-----BEGIN PKCS12-----(.*?)-----END PKCS12-----", re.S)


def pkcs12_der(data: bytes) -> bytes:
    """The DER form of a PKCS#12 file: PEM armour (`-----BEGIN PKCS12-----`, as gpgsm and
    notmuch write it) is taken off, and the indefinite lengths NSS writes (Thunderbird,
    Firefox exports start `30 80`) are re-encoded as definite ones. cryptography accepts BER
    today only with a warning that it may become an error. Only the framing changes: the
    MAC covers the authSafe octets, whose value stays byte for byte the same."""
    armoured = _PEM_P12.search(data)
    if armoured:
        try:
            data = base64.b64decode(re.sub(rb"\s+", b"", armoured.group(1)), validate=True)
        except binascii.Error:
            return data  # reported as unreadable by the loader
    if data[:2] != b"\x30\x80":
        return data
    try:
        return apkcs12.Pfx.load(data).dump(force=True)
    except (ValueError, TypeError, KeyError):
        return data  # let the loader report it as unreadable


def key_description(public_key: object) -> str:
    """Short readable key type: 'RSA-2048', 'EC P-256', 'Ed25519', 'X25519'."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {names.get(public_key.curve.name, public_key.curve.name)}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, x25519.X25519PublicKey):
        return "X25519"
    return type(public_key).__name__
