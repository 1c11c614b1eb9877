"""DKIM signing of outgoing mail (dkimpy), per signing domain (`[dkim.DOMAIN]`).

The signing domain is the one of the From field (RFC 7489 alignment wants d= to match it): the
configured domain itself or a parent of it. Keys are RSA, PEM, made by `filterlang dkim keygen`.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import dkim
from attrs import frozen
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from runtime.engine.providers.auth import _DKIMPY_INPUT_ERRORS, _from_domains

log = logging.getLogger("filterlang.providers")

# dkimpy signs with its own RSA in Python integers (23 ms a signature here, 30 times OpenSSL's).
# It stays the signer (canonicalisation, the header hash, the DKIM-Signature field); only the
# RSA step over the finished digest goes to OpenSSL, for the keys loaded below. PKCS#1 v1.5 is
# deterministic: the signature is the same bytes dkimpy would make (tests/auth checks it).
_OPENSSL: dict[int, rsa.RSAPrivateKey] = {}  # modulus -> the loaded key
_dkimpy_rsa_sign = dkim.RSASSA_PKCS1_v1_5_sign


def _rsa_sign(digest: Any, pk: dict[str, int]) -> bytes:
    key = _OPENSSL.get(pk.get("modulus", 0))
    if key is None:
        return bytes(_dkimpy_rsa_sign(digest, pk))
    value = digest.digest()
    algorithm = hashes.SHA256() if len(value) == 32 else hashes.SHA1()
    return key.sign(value, padding.PKCS1v15(), Prehashed(algorithm))


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign
# dkimpy also parses the PEM again (its own ASN.1 reader) for every signature: our keys are
# parsed once, when loaded.
_PARSED: dict[bytes, Any] = {}
_dkimpy_parse = dkim.parse_pem_private_key


def _parse_pem(data: bytes) -> Any:
    found = _PARSED.get(data)
    return found if found is not None else _dkimpy_parse(data)


dkim.parse_pem_private_key = _parse_pem


class DkimKeyError(Exception):
    """A configured key cannot be used (unreadable, not an RSA private key, too short)."""


@frozen
class DomainKey:
    domain: str
    selector: str
    key_pem: bytes
    canonicalization: tuple[bytes, bytes]
    headers: tuple[bytes, ...]


def load_key(path: Path, where: str) -> bytes:
    """The PEM at `path`, checked to be an RSA private key of 1024 bits or more."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"{where}: {path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"{where}: {path} is not an RSA key; DKIM signs with RSA (RFC 8301)")
    if key.key_size < 1024:
        raise DkimKeyError(f"{where}: {path} has {key.key_size} bits; RFC 8301 needs 1024 or more")
    _OPENSSL[key.private_numbers().public_numbers.n] = key
    # dkimpy reads PKCS#1 ("BEGIN RSA PRIVATE KEY"); whatever was given is handed over as that.
    pkcs1 = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    _PARSED[pkcs1] = _dkimpy_parse(pkcs1)
    return pkcs1


class DkimSigner:
    """Signs a message for the configured domain its From field belongs to."""

    def __init__(self, keys: dict[str, DomainKey]) -> None:
        self.keys = {d.lower(): k for d, k in keys.items()}

    def key_for(self, data: bytes) -> DomainKey | None:
        domains = _from_domains(data)
        if len(domains) != 1:
            return None
        parts = domains[0].split(".")
        for i in range(len(parts) - 1):
            found = self.keys.get(".".join(parts[i:]))
            if found is not None:
                return found
        return None

    def sign(self, data: bytes) -> bytes | None:
        """`data` with a DKIM-Signature field first; None when no configured domain applies."""
        key = self.key_for(data)
        if key is None:
            return None
        present = {line.split(b":", 1)[0].strip().lower()
                   for line in data[: data.find(b"\r\n\r\n")].split(b"\r\n") if b":" in line}
        # Sign the headers the message has, and From always (RFC 6376 5.4).
        headers = [h for h in key.headers if h in present or h == b"from"]
        try:
            field = dkim.sign(data, key.selector.encode(), key.domain.encode(), key.key_pem,
                              canonicalize=key.canonicalization, include_headers=headers,
                              linesep=b"\r\n")
        except (dkim.DKIMException, *_DKIMPY_INPUT_ERRORS) as exc:
            # A header block dkimpy cannot read (one that begins with white space raised
            # IndexError out of the stage): the message leaves unsigned, as unsignable.
            log.warning("DKIM signing for %s skipped: the message cannot be signed (%s: %s)",
                        key.domain, type(exc).__name__, exc)
            return None
        return bytes(field) + data

    def unsign(self, data: bytes) -> bytes | None:
        """`data` without the DKIM-Signature field `sign` put first (this signer's domain and
        selector for the message's From); None when the first field is no such signature."""
        key = self.key_for(data)
        if key is None or data[:15].lower() != b"dkim-signature:":
            return None
        end = data.find(b"\r\n")
        while end != -1 and data[end + 2: end + 3] in (b" ", b"\t"):  # folded lines
            end = data.find(b"\r\n", end + 2)
        if end == -1:
            return None
        tags = {t.split(b"=", 1)[0].strip(): t.split(b"=", 1)[1].strip()
                for t in b"".join(data[15:end].split()).split(b";") if b"=" in t}
        if (tags.get(b"d", b"").lower() != key.domain.lower().encode()
                or tags.get(b"s", b"") != key.selector.encode()):
            return None
        return data[end + 2:]


def keygen(domain: str, selector: str, bits: int = 2048) -> tuple[bytes, str]:
    """A new RSA key (PKCS#1 PEM) and the DNS TXT record publishing it, in zone-file syntax."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
    # One TXT string holds 255 bytes at most (RFC 1035 3.3.14): longer values are split.
    chunks = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
    return pem, f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT ( {chunks} )"
