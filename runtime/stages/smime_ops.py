"""The one place the gateway stages call S/MIME: protect (sign / encrypt / both / triple) and
unwrap (decrypt and verify layer by layer).

Why an adapter: `smime.compose` (protect / unwrap over the recipes) is being written in
parallel; until it lands these two functions compose `smime.sign/encrypt/verify/decrypt`
themselves, and switching is an edit of this module only. Every failure to decrypt is reported
as the same "decryption failed" text whatever the cause (no oracle, smime.md 9).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
from collections.abc import Sequence

from asn1crypto import x509 as ax509
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

import smime
from smime import mime
from smime._keys import PrivateKey
from smime.errors import SMIMEError
from smime.trust import TrustStore

MODES = ("sign", "encrypt", "sign-encrypt", "triple")
DECRYPT_FAILED = "decryption failed"


@frozen
class Signer:
    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@frozen
class SignerInfo:
    email: tuple[str, ...]
    issuer: str
    pem: str
    capabilities: tuple[str, ...]


@frozen
class UnwrapResult:
    layers: tuple[str, ...]  # outermost first: "encrypted", "signed"
    encrypted: bool
    signed: bool
    verified: bool  # every signature verified and nothing failed to decrypt
    signers: tuple[SignerInfo, ...]
    content: bytes  # the message with every layer we could open removed
    signed_message: bytes | None  # the message still carrying its innermost signature
    errors: tuple[str, ...]
    decrypt_failed: bool = False


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _sign(message: bytes, signer: Signer, form: str, digest: str) -> bytes:
    if isinstance(signer.key, X25519PrivateKey):
        raise ValueError("an X25519 key can decrypt but not sign; give the profile a signing key")
    return smime.sign(message, signer.key, _der(signer.cert), [_der(c) for c in signer.chain],
                      detached=form == "detached", digest=digest)


def protect(message: bytes, *, mode: str, signer: Signer | None = None,
            recipients: Sequence[x509.Certificate] = (), form: str = "detached",
            cipher: str | None = None, capabilities: Sequence[Sequence[str]] | None = None,
            digest: str = "sha256") -> bytes:
    """Apply one sending-profile mode to a whole message (RFC 5322 in, RFC 5322 out)."""
    if mode not in MODES:
        raise ValueError(f"unknown S/MIME mode {mode!r}")
    if mode != "encrypt" and signer is None:
        raise ValueError(f"mode {mode!r} needs a signing certificate")
    if mode == "sign":
        assert signer is not None
        return _sign(message, signer, form, digest)
    inner = message if mode == "encrypt" else _sign(message, signer, form, digest)  # type: ignore[arg-type]
    sealed = smime.encrypt(inner, list(recipients), cipher=cipher, capabilities=capabilities)
    if mode == "triple":
        assert signer is not None
        return _sign(sealed, signer, form, digest)
    return sealed


def _content_type(message: bytes) -> tuple[str, str]:
    head, _ = mime.split_entity(mime.to_crlf(message[:262144]))
    hdrs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n")
    st = hdrs.get_param("smime-type")
    return hdrs.get_content_type(), str(st).lower() if isinstance(st, str) else ""


def is_smime(message: bytes) -> tuple[bool, bool]:
    """(signed, encrypted) judged from the top-level Content-Type only."""
    ctype, st = _content_type(message)
    if ctype == "multipart/signed":
        return True, False
    if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        if st in ("enveloped-data", "authenveloped-data"):
            return False, True
        if st == "signed-data":
            return True, False
        return False, True  # no smime-type: old clients; decryption will tell
    return False, False


def _rebuild(message: bytes, entity: bytes) -> bytes:
    """The outer routing headers of `message` around the inner MIME entity `entity`."""
    outer, _ = mime.split_message(message)
    return b"\r\n".join([*outer, b"MIME-Version: 1.0"]) + b"\r\n" + mime.to_crlf(entity)


def _emails(cert: ax509.Certificate) -> tuple[str, ...]:
    out = [str(n.native).lower() for n in (cert.subject_alt_name_value or ())
           if n.name == "rfc822_name"]
    return tuple(out)


def unwrap(message: bytes, *, keys: Sequence[tuple[PrivateKey, x509.Certificate]],
           trust: TrustStore, now: dt.datetime | None = None, crls: Sequence[bytes] = (),
           max_layers: int = 4) -> UnwrapResult:
    """Open every S/MIME layer we can: decrypt with `keys`, verify against `trust`."""
    layers: list[str] = []
    signers: list[SignerInfo] = []
    errors: list[str] = []
    verified = True
    signed_message: bytes | None = None
    current = message
    decrypt_failed = False
    for _ in range(max_layers):
        signed, encrypted = is_smime(current)
        if encrypted:
            try:
                opened = smime.decrypt(current, keys)
            except (SMIMEError, ValueError):
                errors.append(DECRYPT_FAILED)
                decrypt_failed, verified = True, False
                break
            layers.append("encrypted")
            if not opened.authenticated:
                errors.append(f"content cipher {opened.cipher} is not authenticated (EFAIL risk)")
            current = _rebuild(current, opened.content)
            continue
        if signed:
            try:
                result = smime.verify(current, trust=trust, now=now, crls=crls)
            except (SMIMEError, ValueError) as exc:
                # A signature that cannot even be read is a failed verification, not "unsigned".
                errors.append(f"signature unreadable: {exc}")
                layers.append("signed")
                signed_message = current
                verified = False
                break
            layers.append("signed")
            signed_message = current
            if not result.verified:
                verified = False
                errors += [f"{code}: {text}" for code, text in result.reasons]
            for s in result.signers:
                if s.certificate is not None:
                    pem = x509.load_der_x509_certificate(s.certificate.dump()).public_bytes(
                        Encoding.PEM).decode("ascii")
                    signers.append(SignerInfo(_emails(s.certificate), s.certificate.issuer.human_friendly,
                                              pem, s.capabilities))
            if not result.content:
                break
            current = _rebuild(current, result.content)
            continue
        break
    return UnwrapResult(
        layers=tuple(layers),
        encrypted="encrypted" in layers or decrypt_failed,
        signed="signed" in layers,
        verified=verified and bool(layers),
        signers=tuple(signers),
        content=current,
        signed_message=signed_message,
        errors=tuple(errors),
        decrypt_failed=decrypt_failed,
    )
