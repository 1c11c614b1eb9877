"""The one place the gateway stages call S/MIME: protect (sign / encrypt / both / triple) and
unwrap (decrypt and verify layer by layer), over `smime.compose`.

What this adds to compose: the gateway's view of an unwrap (signer e-mail addresses and
issuers for the filters, certificates for harvesting, the message with only the innermost
signature left for "retain signature" policies) and the one uniform "decryption failed" text
(no oracle, smime.md 9).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import x509 as ax509
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from smime import compose
from smime._keys import PrivateKey
from smime.policy import VerifyPolicy
from smime.trust import TrustStore

MODES = ("sign", "encrypt", "sign-encrypt", "triple")
# The gateway refuses signers without signed attributes unless `[smime]` says otherwise.
GATEWAY_POLICY = VerifyPolicy(require_signed_attributes=True)
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
    verified: bool  # a verified signature covers exactly the content users will see
    signers: tuple[SignerInfo, ...]  # every signer found (harvesting decides on `verified`)
    content: bytes  # the message with every layer removed (the original if one failed)
    signed_message: bytes | None  # the message still carrying its innermost signature
    errors: tuple[str, ...]
    decrypt_failed: bool = False
    cipher: str = ""  # the content cipher of the outermost envelope opened, for tracking
    # Some envelope opened was CBC/3DES (no integrity of its own) and no verified signature
    # covers what it held: an attacker could have edited the ciphertext (EFAIL, smime.md 9.1).
    unauthenticated: bool = False
    # How the verified signature names the sender: "address" or "domain" (a partner gateway's
    # organisation certificate); None when nothing verified.
    binding: str | None = None


def protect(message: bytes, *, mode: str, signer: Signer | None = None,
            recipients: Sequence[x509.Certificate] = (), form: str = "detached",
            cipher: str | None = None, capabilities: Sequence[Sequence[str]] | None = None,
            digest: str = "sha256") -> bytes:
    """Apply one sending-profile mode to a whole message (RFC 5322 in, RFC 5322 out)."""
    if mode not in MODES:
        raise ValueError(f"unknown S/MIME mode {mode!r}")
    cs: compose.Signer | None = None
    if signer is not None and mode != "encrypt":
        if isinstance(signer.key, X25519PrivateKey):
            raise ValueError("an X25519 key can decrypt but not sign; give the profile a signing key")
        cs = compose.Signer(signer.key, signer.cert, signer.chain)
    return compose.protect(message, mode=mode, signer=cs, recipients=recipients, form=form,
                           cipher=cipher, capabilities=capabilities, digest=digest)


def is_smime(message: bytes) -> tuple[bool, bool]:
    """(signed, encrypted) judged from the top-level Content-Type (and the DER it labels)."""
    return compose.is_smime(message)


def _signer(cert: ax509.Certificate, caps: tuple[str, ...]) -> SignerInfo | None:
    """Addresses, and the domains a gateway's organisation certificate signs for (SAN
    dNSName): what `smime-gateway-signer` rules and the status header name. None for a
    certificate that cannot be read in full (cryptography refused a PrintableString that
    asn1crypto had let by, or a version field past v3 with InvalidVersion, which is no
    ValueError; either failed the stage and parked the message in hold): nothing to name or
    harvest."""
    try:
        emails = tuple(str(n.native).lower() for n in (cert.subject_alt_name_value or ())
                       if n.name in ("rfc822_name", "dns_name"))
        loaded = x509.load_der_x509_certificate(cert.dump())
        return SignerInfo(emails, cert.issuer.human_friendly,
                          loaded.public_bytes(Encoding.PEM).decode("ascii"), caps)
    except (ValueError, TypeError, KeyError, x509.InvalidVersion):
        return None


def unwrap(message: bytes, *, keys: Sequence[tuple[PrivateKey, x509.Certificate]],
           trust: TrustStore, now: dt.datetime | None = None, crls: Sequence[bytes] = (),
           max_layers: int = 4, policy: VerifyPolicy = GATEWAY_POLICY,
           signer_lookup: compose.SignerLookup | None = None,
           allow_3des: bool = True) -> UnwrapResult:
    """Open every S/MIME layer we can: decrypt with `keys`, verify against `trust`;
    `signer_lookup` finds a signer certificate the message leaves out (the key store)."""
    res = compose.unwrap(message, keys=keys, trust=trust, now=now, crls=crls,
                         max_layers=max_layers, policy=policy, signer_lookup=signer_lookup,
                         allow_3des=allow_3des)
    kinds = tuple(layer.kind for layer in res.layers)
    decrypt_failed = any(layer.kind == "encrypted" and not layer.ok for layer in res.layers)
    signers: dict[str, SignerInfo] = {}
    for layer in res.layers:
        for s in (layer.verify.signers if layer.verify is not None else ()):
            info = _signer(s.certificate, s.capabilities) if s.certificate is not None else None
            if info is not None:
                signers.setdefault(info.pem, info)
    # The innermost signature with every layer outside it removed (compose kept it).
    signed_message = None if decrypt_failed else next(
        (layer.message for layer in reversed(res.layers) if layer.kind == "signed"), None)
    errors = tuple(DECRYPT_FAILED if decrypt_failed and code == compose.DECRYPTION_FAILED[0]
                   else f"{code}: {text}" for code, text in res.errors)
    return UnwrapResult(
        layers=kinds,
        encrypted=res.encrypted,
        signed=res.signed,
        verified=res.verified,
        signers=tuple(signers.values()),
        content=res.content,
        signed_message=signed_message,
        errors=errors,
        decrypt_failed=decrypt_failed,
        cipher=next((layer.cipher or "" for layer in res.layers
                     if layer.kind == "encrypted" and layer.ok), ""),
        unauthenticated=not res.verified and any(
            layer.kind == "encrypted" and layer.ok and layer.authenticated is False
            for layer in res.layers),
        binding=_binding(res),
    )


def _binding(res: compose.UnwrapResult) -> str | None:
    # The innermost signature is the author's; an outer one of a triple wrap is a hop's.
    inner = [layer.verify for layer in res.layers if layer.kind == "signed" and layer.verify]
    return inner[-1].binding if res.verified and inner else None
