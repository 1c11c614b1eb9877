"""Encrypt and decrypt recipes: whole RFC 5322 messages in, whole messages out.

`encrypt` moves the content headers (Content-*) inside the envelope and keeps the routing
headers (From, To, Subject, Received, ...) outside, as RFC 8551 3.1 and every client expect.
`decrypt` returns the inner MIME entity; the caller decides what to do with unauthenticated
(CBC, 3DES) content (smime.md 9.1).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

import attrs
from cryptography import x509

from smime import _cms_enveloped, mime
from smime._cms_enveloped import (
    CBC_CIPHERS,
    CIPHERS,
    GCM_CIPHERS,
    EnvelopeInfo,
    inspect_envelope,
)
from smime._keys import PrivateKey
from smime.errors import DecryptionError, EncryptionError, MalformedError

__all__ = [
    "CBC_CIPHERS",
    "CIPHERS",
    "GCM_CIPHERS",
    "DecryptResult",
    "EnvelopeInfo",
    "inspect_envelope",
    "choose_cipher",
    "decrypt",
    "decrypt_content",
    "encrypt",
    "encrypt_content",
]

# Capability names and the OIDs clients put in SMIMECapabilities, both accepted.
_CAPABILITY_ALIASES = {
    "2.16.840.1.101.3.4.1.2": "aes128-cbc",
    "2.16.840.1.101.3.4.1.42": "aes256-cbc",
    "2.16.840.1.101.3.4.1.6": "aes128-gcm",
    "2.16.840.1.101.3.4.1.46": "aes256-gcm",
}


def _capability(name: str) -> str:
    """One cipher name for an advertised capability: a dotted OID, asn1crypto's name as the
    verifier reports it (`aes256_gcm`), or ours (`aes256-gcm`)."""
    name = name.strip()
    return _CAPABILITY_ALIASES.get(name) or name.lower().replace("_", "-")


# Strongest first: the first cipher every recipient can read wins.
_PREFERENCE = ("aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc")
# When nothing is known about the recipients (smime.md 3.4, 4.6).
DEFAULT_CIPHER = "aes256-gcm"


@attrs.frozen
class DecryptResult:
    """A decrypted envelope: the inner MIME entity and how it was protected."""

    content: bytes
    cipher: str
    authenticated: bool  # False for CBC and 3DES: integrity unprotected (EFAIL, smime.md 9.1)
    legacy: bool  # 3DES: historic algorithm, decrypted for old mail only
    recipient: x509.Certificate


def choose_cipher(
    capabilities_per_recipient: Sequence[Sequence[str]] | None, forced: str | None = None
) -> str:
    """The content cipher for one message.

    `forced` (the sending profile's choice) wins. Otherwise AES-GCM only when every
    recipient advertised it, else AES-256-CBC when all advertised that, else AES-128-CBC, the
    fallback every client reads. With no capability information at all: AES-256-GCM.
    """
    if forced is not None:
        if forced not in CIPHERS:
            raise EncryptionError(f"cipher {forced!r} is not one of {', '.join(CIPHERS)}")
        return forced
    if capabilities_per_recipient is None or not capabilities_per_recipient:
        return DEFAULT_CIPHER
    sets = [
        {_capability(c) for c in caps}
        for caps in capabilities_per_recipient
    ]
    for cipher in _PREFERENCE:
        if all(cipher in caps for caps in sets):
            return cipher
    return "aes128-cbc"


def encrypt_content(
    content: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: str | None = None,
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[Sequence[str]] | None = None,
) -> bytes:
    """Encrypt bytes to every recipient; return the CMS ContentInfo DER."""
    chosen = choose_cipher(capabilities, cipher)
    return _cms_enveloped.build(content, recipients, cipher=chosen, rsa_padding=rsa_padding)


def decrypt_content(
    der: bytes, keys: Sequence[tuple[PrivateKey, x509.Certificate]], *, entity: bool = False,
    allow_3des: bool = True,
) -> DecryptResult:
    """Decrypt a CMS envelope (DER). Every failure raises the one `DecryptionError`.

    `entity=True` (an S/MIME message, whose content is a MIME entity): unauthenticated
    content (CBC, 3DES) must have the shape of one, or be plain text. A wrong
    content-encryption key (a corrupted private key, a tampered encrypted key: RFC 3218
    continues with a random key) gives random bytes whose padding looks valid about once in
    256; without a tag, the structure is the only evidence left, and failing it is the same
    one error (no oracle).
    """
    opened = _cms_enveloped.open_envelope(der, keys, allow_3des=allow_3des)
    if entity and not opened.authenticated and not mime.is_plausible_content(opened.content):
        raise DecryptionError() from None
    return DecryptResult(
        content=opened.content,
        cipher=opened.cipher,
        authenticated=opened.authenticated,
        legacy=opened.legacy,
        recipient=opened.recipient,
    )


def encrypt(
    message: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: str | None = None,
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[Sequence[str]] | None = None,
) -> bytes:
    """Encrypt a whole RFC 5322 message; routing headers stay outside, content goes inside."""
    headers, body = split_message(message)
    outer = [(n, v) for n, v in headers if not _is_content_header(n)]
    inner = [(n, v) for n, v in headers if n.lower().startswith("content-")]
    if not any(n.lower() == "content-type" for n, _ in inner):
        inner.insert(0, ("Content-Type", "text/plain; charset=us-ascii"))
    entity = _render(inner, _crlf(body))
    chosen = choose_cipher(capabilities, cipher)
    der = _cms_enveloped.build(entity, recipients, cipher=chosen, rsa_padding=rsa_padding)
    smime_type = "authEnveloped-data" if chosen in GCM_CIPHERS else "enveloped-data"
    outer += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"'),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", 'attachment; filename="smime.p7m"'),
    ]
    encoded = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return _render(outer, encoded)


def decrypt(message: bytes, keys: Sequence[tuple[PrivateKey, x509.Certificate]], *,
            allow_3des: bool = True) -> DecryptResult:
    """Decrypt a whole message whose body is an S/MIME envelope.

    A message that is not an envelope at all raises `MalformedError` (its headers say so, no
    secret is involved); everything after that raises the one `DecryptionError`.
    """
    headers, body = split_message(message)
    ctype = next((v for n, v in headers if n.lower() == "content-type"), "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/octet-stream" and _named_p7m(headers):
        media = "application/pkcs7-mime"  # RFC 8551 3.10 (KMail labels envelopes so)
    if media not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        raise MalformedError(
            f"Content-Type: {media or '(none)'} is not application/pkcs7-mime: the message is "
            "not encrypted"
        )
    smime_type = re.search(r"smime-type\s*=\s*\"?([\w-]+)", ctype, re.IGNORECASE)
    if smime_type and smime_type.group(1).lower() not in ("enveloped-data", "authenveloped-data"):
        raise MalformedError(
            f"Content-Type: smime-type={smime_type.group(1)} is not an encrypted message"
        )
    cte = next((v for n, v in headers if n.lower() == "content-transfer-encoding"), "")
    if cte.strip().lower() == "base64":
        try:
            der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError() from None
    else:
        der = body
    return decrypt_content(der, keys, entity=True, allow_3des=allow_3des)


def _named_p7m(headers: Sequence[tuple[str, str]]) -> bool:
    return any(n.lower() in ("content-type", "content-disposition") and re.search(
        r"""(?i)\b(?:file)?name\*?\s*=\s*"?[^";]*\.p7m"?\s*(?:;|$)""", v) for n, v in headers)


# ------------------------------------------------------------------------- small MIME helpers

_CONTENT_HEADERS = ("content-", "mime-version")


def _is_content_header(name: str) -> bool:
    return name.lower().startswith(_CONTENT_HEADERS)


def split_message(message: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Header fields (name, unfolded value) and the body of an RFC 5322 message."""
    match = re.search(rb"\r?\n\r?\n", message)
    if match is None:
        head, body = message, b""
    else:
        head, body = message[: match.start()], message[match.end() :]
    headers: list[tuple[str, str]] = []
    for number, raw in enumerate(re.split(rb"\r?\n", head), start=1):
        line = raw.decode("utf-8", "surrogateescape")
        if not line:
            continue
        if number == 1 and line.startswith("From "):
            continue  # an mbox separator line, as verify, unwrap and inspect accept
        if line[0] in " \t":
            if not headers:
                raise MalformedError(f"header line {number}: continuation line before any field")
            name, value = headers[-1]
            headers[-1] = (name, value + "\r\n" + line)
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise MalformedError(f"header line {number}: not a 'Name: value' field: {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return headers, body


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def _render(headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8", "surrogateescape")
    return head + b"\r\n" + body

