"""The composer: whole messages in, whole S/MIME messages out, and back (RFC 8551, RFC 2634).

`protect` builds sign, encrypt, sign-encrypt and triple-wrapped messages; `unwrap` peels every
layer of an incoming message (outside in) and says honestly what the final content is covered
by. Routing headers (From, To, Subject, Received, ...) stay outside every layer; content
headers travel inside the innermost one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.parser
import email.policy
import functools
import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TypeAlias

import attrs
from asn1crypto import cms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from smime import mime
from smime._cms_enveloped import GCM_CIPHERS
from smime._cms_signed import PrivateKey as SigningKey
from smime._fastsign import sign_fast
from smime._keys import PrivateKey
from smime.envelope import choose_cipher, decrypt_content, encrypt_content
from smime.errors import (
    DecryptionError,
    EncryptionError,
    SigningError,
    SMIMEError,
    UnsupportedError,
)
from smime.policy import DEFAULT_POLICY, VerifyPolicy
from smime.trust import TrustStore
from smime.verify import WARNINGS, VerifyResult, verify

__all__ = ["Form", "Layer", "Mode", "Signer", "UnwrapResult", "is_smime", "protect", "unwrap"]

Reason = tuple[str, str]
AnyCert: TypeAlias = x509.Certificate | ax509.Certificate
SignerLookup: TypeAlias = Callable[[str | None], Sequence[ax509.Certificate]]

_MICALG = {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}
_PKCS7 = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_P7S = ("application/pkcs7-signature", "application/x-pkcs7-signature")
# RFC 8551 3.10: a client may label S/MIME application/octet-stream and let the file name's
# extension say what it is (KMail does for encrypted mail).
_P7_EXTENSIONS = (".p7m", ".p7s", ".p7c", ".p7z")
# DER of the ContentInfo content-type OIDs, for sniffing pkcs7-mime without smime-type.
_OID_SIGNED = bytes.fromhex("2a864886f70d010702")
_OID_ENVELOPED = bytes.fromhex("2a864886f70d010703")
_OID_AUTH_ENVELOPED = bytes.fromhex("2a864886f70d0109100117")
_MIME_VERSION = re.compile(rb"(?im)^mime-version:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
DECRYPTION_FAILED: Reason = ("decryption-failed", DecryptionError.MESSAGE)


class Mode(StrEnum):
    SIGN = "sign"
    ENCRYPT = "encrypt"
    SIGN_ENCRYPT = "sign-encrypt"
    TRIPLE = "triple"  # sign, encrypt, sign again (RFC 2634)


class Form(StrEnum):
    OPAQUE = "opaque"
    DETACHED = "detached"


def _asn1(cert: AnyCert) -> ax509.Certificate:
    if isinstance(cert, ax509.Certificate):
        return cert
    return _asn1_of(cert)


@functools.lru_cache(maxsize=256)
def _asn1_of(cert: x509.Certificate) -> ax509.Certificate:
    # Per signer, not per message (bench/smime.py).
    return ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _crypto(cert: AnyCert) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    return x509.load_der_x509_certificate(cert.dump())


@attrs.frozen
class Signer:
    """A signing identity: private key, its certificate and the chain to send along."""

    key: SigningKey
    cert: AnyCert
    chain: Sequence[AnyCert] = ()
    rsa_padding: str = "pkcs1v15"  # or "pss"


# ----------------------------------------------------------------------------------- protect


def _entity(headers: Sequence[bytes], body: bytes) -> bytes:
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def _prefix(outer: Sequence[bytes]) -> bytes:
    """The outer header block (without the blank line) of a whole message."""
    return b"".join(f + b"\r\n" for f in [*outer, b"MIME-Version: 1.0"])


def _sign_layer(
    entity: bytes, signer: Signer, form: Form, digest: str, now: dt.datetime | None,
    canonical: bool = False,
) -> bytes:
    # `canonical`: the entity comes from mime.canonical_entity, which already gives what
    # canonicalise would; a second pass rescanned every line (~10% of signing a 4 KB message).
    if not canonical:
        entity = mime.canonicalise(entity)
    # sign_fast = signing.sign_content's output, from a per-signer template (bench/smime.py).
    der = sign_fast(
        entity, signer.key, _asn1(signer.cert), [_asn1(c) for c in signer.chain],
        detached=form is Form.DETACHED, digest=digest, rsa_padding=signer.rsa_padding, now=now,
    )
    # Built without MIME-Version (it belongs outside) rather than stripped after: stripping
    # copied the whole signed message once more.
    if form is Form.OPAQUE:
        return mime.build_opaque([], der, mime_version=False)
    micalg = "sha-512" if isinstance(signer.key, ed25519.Ed25519PrivateKey) else _MICALG[digest]
    return mime.build_detached([], entity, der, micalg, mime_version=False)


def _encrypt_layer(
    entity: bytes,
    recipients: Sequence[x509.Certificate],
    cipher: str | None,
    capabilities: Sequence[Sequence[str]] | None,
) -> bytes:
    chosen = choose_cipher(capabilities, cipher)
    der = encrypt_content(entity, recipients, cipher=chosen)  # entity is CRLF already
    smime_type = "authEnveloped-data" if chosen in GCM_CIPHERS else "enveloped-data"
    return _entity(
        [
            b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode()
            + b'; name="smime.p7m"',
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="smime.p7m"',
        ],
        mime.b64_lines(der),
    )


def protect(
    message: bytes,
    *,
    mode: Mode | str,
    signer: Signer | None = None,
    recipients: Sequence[x509.Certificate] = (),
    form: Form | str = "detached",
    cipher: str | None = None,
    capabilities: Sequence[Sequence[str]] | None = None,
    digest: str = "sha256",
    encrypt_to_self: bool = False,
    now: dt.datetime | None = None,
) -> bytes:
    """Return the whole RFC 5322 message protected as `mode` says.

    `capabilities` are the recipients' advertised SMIMECapabilities (cipher choice, see
    `choose_cipher`); `cipher` forces one. With `encrypt_to_self` the signer's certificate is
    added to the recipients so the sender can read its own copy.
    """
    try:
        mode = Mode(mode)
    except ValueError:
        raise SigningError(f"mode {mode!r} is not one of {', '.join(Mode)}") from None
    try:
        form = Form(form)
    except ValueError:
        raise SigningError(f"form {form!r} is not one of {', '.join(Form)}") from None
    signs = mode is not Mode.ENCRYPT
    encrypts = mode is not Mode.SIGN
    if signs and signer is None:
        raise SigningError(f"mode {mode} needs a signer (key and certificate); none was given")
    to = list(recipients)
    if encrypt_to_self and signer is not None:
        to.append(_crypto(signer.cert))
    if encrypts and not to:
        raise EncryptionError(f"mode {mode} needs at least one recipient certificate")
    if signs:
        assert signer is not None
        # Canonicalised straight from the message's parts: no intermediate copy of the inner
        # entity, so a 50 MB message stays within a few times its size (issue 6).
        outer, fields, body = mime.split_message_parts(message)
        entity = _sign_layer(mime.canonical_entity(fields, body), signer, form, digest, now,
                             canonical=True)
        del body
    else:
        outer, entity = mime.split_message(message)
    if encrypts:
        entity = _encrypt_layer(entity, to, cipher, capabilities)
    if mode is Mode.TRIPLE:
        assert signer is not None
        entity = _sign_layer(entity, signer, form, digest, now)
    return _prefix(outer) + entity


# ------------------------------------------------------------------------------------ unwrap


@attrs.frozen
class Layer:
    """One S/MIME layer, outermost first in `UnwrapResult.layers`."""

    kind: str  # "encrypted" | "signed"
    ok: bool  # decrypted / signature verified
    reasons: tuple[Reason, ...] = ()
    form: str | None = None  # signed: "detached" | "opaque"
    cipher: str | None = None  # encrypted: e.g. "aes256-gcm"
    authenticated: bool | None = None  # encrypted: AEAD (False for CBC and 3DES)
    legacy: bool = False  # encrypted: 3DES
    verify: VerifyResult | None = None  # signed: the full verification result
    # signed: the whole message as it stood at this layer, signature included (what a
    # "retain the signature" policy delivers once the layers outside it are removed).
    message: bytes | None = None


@attrs.frozen
class UnwrapResult:
    layers: tuple[Layer, ...]
    encrypted: bool
    signed: bool
    verified: bool  # a verified signature covers exactly the content the user will see
    signers: tuple[ax509.Certificate, ...]  # verified signers, for harvesting
    content: bytes  # outer routing headers + innermost entity, S/MIME wrappers removed
    errors: tuple[Reason, ...]


def _content_type(head: bytes, param: str = "smime-type") -> tuple[str, str | None]:
    """(media type, lower-cased `param` parameter) of a header block.

    A pure function of its arguments, remembered for the last few header blocks: the stage
    asks is_smime of a message and then unwrap reads the same header block again, twice for
    multipart/signed (type, then protocol); each parse was ~0.3 ms of a signed inbound
    message. Large header blocks are parsed each time rather than kept."""
    if len(head) > _HEAD_MEMO_MAX:
        return _parse_content_type(head, param)
    return _memo_content_type(head, param)


_HEAD_MEMO_MAX = 16 * 1024


def _parse_content_type(head: bytes, param: str) -> tuple[str, str | None]:
    hdrs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        head + b"\r\n"
    )
    if hdrs.get("content-type") is None:
        return "text/plain", None
    st = mime.header_param(hdrs, param)
    return hdrs.get_content_type(), st.lower() if isinstance(st, str) else None


_memo_content_type = functools.lru_cache(maxsize=32)(_parse_content_type)


def _first_oid(der: bytes) -> bytes | None:
    # ContentInfo ::= SEQUENCE { contentType OID, ... }: skip the SEQUENCE header.
    if len(der) < 4 or der[0] != 0x30:
        return None
    pos = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    if pos + 2 > len(der) or der[pos] != 0x06:
        return None
    return der[pos + 2 : pos + 2 + der[pos + 1]]


def _sniff(body: bytes) -> str | None:
    """ContentInfo type of a base64 (or binary) pkcs7-mime body, from its first bytes only."""
    head = re.sub(rb"\s+", b"", body[:200])[:64]
    try:
        der = base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        der = body[:48]
    oid = _first_oid(der)
    if oid == _OID_SIGNED:
        return "signed"
    if oid in (_OID_ENVELOPED, _OID_AUTH_ENVELOPED):
        return "encrypted"
    return None


def _file_name(head: bytes) -> str:
    """The lower-cased file name a header block gives (Content-Type name or
    Content-Disposition filename), or ''."""
    hdrs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        head + b"\r\n")
    for param, field in (("name", "content-type"), ("filename", "content-disposition")):
        value = mime.header_param(hdrs, param, field)
        if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
            value = value[2]
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def media_type(head: bytes) -> tuple[str, str | None]:
    """`_content_type`, with application/octet-stream named `*.p7m|p7s|p7c|p7z` read as the
    S/MIME type its extension stands for (RFC 8551 3.10)."""
    ctype, st = _content_type(head)
    if ctype == "application/octet-stream":
        name = _file_name(head)
        if name.endswith(_P7_EXTENSIONS):
            ext = name[-4:]
            if ext == ".p7s":
                return "application/pkcs7-signature", None
            return "application/pkcs7-mime", {".p7c": "certs-only",
                                              ".p7z": "compressed-data"}.get(ext, st)
    return ctype, st


def _certs_only(body: bytes) -> bool:
    """Whether a pkcs7-mime SignedData body has no SignerInfo (a certificate bundle, .p7c)."""
    try:
        der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
    except (binascii.Error, ValueError):
        der = body
    try:
        info = cms.ContentInfo.load(der)
        return len(info["content"]["signer_infos"]) == 0
    except Exception:  # noqa: BLE001 - malformed DER is judged by verify, with its reasons
        return False


def _layer_kind(entity: bytes) -> str | None:
    """'signed', 'encrypted', 'unsupported' or None (not an S/MIME layer)."""
    head, body = mime.split_entity(entity)
    ctype, st = media_type(head)
    if ctype == "multipart/signed":
        # PGP/MIME (protocol application/pgp-signature) is not ours to judge.
        protocol = _content_type(head, "protocol")[1]
        return "signed" if protocol in (None, *_P7S) else None
    if ctype not in _PKCS7:
        return None
    # The DER decides, not the label: a lying smime-type must not make plaintext "signed".
    sniffed = _sniff(body)
    if sniffed == "signed" and st == "certs-only" and _certs_only(body):
        # RFC 8551 3.6: a certificate bundle is no signature: the message is not signed.
        return None
    if sniffed is not None:
        return sniffed
    if st == "signed-data":
        return "signed"
    if st in ("enveloped-data", "authenveloped-data"):
        return "encrypted"
    return "unsupported"


def is_smime(message: bytes) -> tuple[bool, bool]:
    """(signed?, encrypted?) judged from the top-level Content-Type only (cheap)."""
    head, body = mime.split_entity(mime.to_crlf(message))
    kind = _layer_kind(head + b"\r\n" + body[:300])
    if kind == "signed" and media_type(head)[1] == "certs-only":
        kind = _layer_kind(head + b"\r\n" + body)  # whether it has signers needs the whole DER
    return kind == "signed", kind == "encrypted"


def _nested_smime(entity: bytes) -> str | None:
    """The kind of S/MIME part a non-S/MIME entity hides below its top level: "signed" when
    any hidden part is signed, else "encrypted", else None; "unreadable" for a multipart whose
    structure the email package cannot read (what it hides is not known)."""
    head, _ = mime.split_entity(entity)
    if not _content_type(head)[0].startswith("multipart/"):
        return None
    parsed = mime.parse_tree(entity)
    if parsed is None:
        return "unreadable"
    kinds = set()
    for p in list(parsed.walk())[1:]:
        ctype = p.get_content_type()
        if ctype == "multipart/signed":
            kinds.add("signed")
        elif ctype in (*_PKCS7, "application/octet-stream") and not p.is_multipart():
            kind = _layer_kind(mime.to_crlf(p.as_bytes()))
            if kind in ("signed", "encrypted"):
                kinds.add(kind)
            elif kind == "unsupported":
                kinds.add("encrypted")
    return "signed" if "signed" in kinds else ("encrypted" if kinds else None)


def _partial(kind: str, where: str) -> Reason:
    """The reason for protected parts hidden inside unprotected content (MIME wrapping,
    EFAIL): named by what is hidden, so unsigned mail with an encrypted attachment is never
    called "partially signed"."""
    if kind == "signed":
        return ("partially-signed", f"{where} nests a signed part inside unprotected content; "
                "the whole message is not protected")
    if kind == "unreadable":
        return ("malformed", f"the MIME structure of {where} cannot be read, so the parts it "
                "may hide are not checked; the whole message is not protected")
    return ("partially-encrypted", f"{where} nests an encrypted part inside unprotected "
            "content; it is not opened, and the whole message is not protected")


# A warning on a decrypted layer, with the code the legacy signature flags use.
LEGACY_3DES: Reason = ("legacy-algorithm", "3des-cbc: decrypted 3DES content, a historic "
                       "cipher read for old mail (decrypt_3des); never chosen for sending")


def _unwrap_decrypt(message: bytes, keys: Sequence[tuple[PrivateKey, x509.Certificate]],
                    allow_3des: bool = True) -> tuple[Layer, bytes | None]:
    _, body = mime.split_entity(message)
    head, _ = mime.split_entity(message)
    hdrs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        head + b"\r\n"
    )
    try:
        if str(hdrs.get("content-transfer-encoding", "")).strip().lower() == "base64":
            der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        else:
            der = body
        opened = decrypt_content(der, keys, entity=True, allow_3des=allow_3des)
    except UnsupportedError as exc:
        # The cipher is named in clear in the envelope: saying it is no oracle.
        return Layer("encrypted", False, (("unsupported-algorithm", str(exc)),)), None
    except (SMIMEError, binascii.Error, ValueError):
        # One outcome for every cause: the gateway must not become a decryption oracle.
        return Layer("encrypted", False, (DECRYPTION_FAILED,)), None
    return (
        Layer("encrypted", True, (LEGACY_3DES,) if opened.legacy else (), cipher=opened.cipher,
              authenticated=opened.authenticated, legacy=opened.legacy),
        opened.content,
    )


def _unwrap_verify(message: bytes, trust: TrustStore, now: dt.datetime | None,
                   crls: Sequence[bytes], from_address: str | None,
                   policy: VerifyPolicy, extra_certs: Sequence[ax509.Certificate] = (),
                   signer_lookup: SignerLookup | None = None,
                   ) -> tuple[Layer, bytes | None]:
    try:
        res = verify(message, trust=trust, now=now, crls=crls, from_address=from_address,
                     policy=policy, extra_certs=extra_certs, signer_lookup=signer_lookup)
    except SMIMEError as exc:
        return Layer("signed", False, (("malformed", str(exc)),)), None
    if not res.content and not res.signers:
        return Layer("signed", False, res.reasons, form=res.form, verify=res), None
    return Layer("signed", res.verified, res.reasons, form=res.form, verify=res), res.content


def _without_mime_version(entity: bytes) -> bytes:
    # The outer header block already says MIME-Version once (OpenSSL repeats it inside).
    head, body = mime.split_entity(entity)
    head = _MIME_VERSION.sub(b"", head)
    return head + b"\r\n" + body


def _hop_ok(layer: Layer) -> bool:
    # An outer (hop) signature of a triple wrap is the gateway's own identity (RFC 2634 1.1):
    # its address need not match From, everything else must hold.
    res = layer.verify
    if res is None or not res.signers:
        return False
    return all(r[0] in ("from-mismatch", "legacy-sha1", *WARNINGS) for r in res.reasons)


def _excuse_hops(layers: list[Layer]) -> None:
    """A signed layer whose only failure is its address is the hop of RFC 2634 when a signed
    layer *inside* it verifies and binds From: then it is ok. Never the other way round (an
    inner signer is the originator and must bind From itself), so a layer's `ok` does not
    depend on what else happens to be nested with it (an envelope, a second signature)."""
    bound_inside = False
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        if layer.kind != "signed":
            continue
        if not layer.ok and bound_inside and _hop_ok(layer):
            layers[i] = attrs.evolve(layer, ok=True)
        bound_inside = bound_inside or layers[i].ok


def unwrap(
    message: bytes,
    *,
    keys: Sequence[tuple[PrivateKey, x509.Certificate]] = (),
    trust: TrustStore,
    now: dt.datetime | None = None,
    crls: Sequence[bytes] = (),
    max_layers: int = 4,
    from_address: str | None = None,
    policy: VerifyPolicy = DEFAULT_POLICY,
    extra_certs: Sequence[AnyCert] = (),
    signer_lookup: SignerLookup | None = None,
    allow_3des: bool = True,
) -> UnwrapResult:
    """Peel every S/MIME layer of `message`, outside in, at most `max_layers` of them.

    `extra_certs`: certificates to find signers among when a message does not carry its
    signer's (RFC 5652 5.1; gpgsm omits it): a trust store's, --certfile; `signer_lookup`
    (From address -> certificates, a key store's) is asked only when those lack it.
    `allow_3des=False` refuses 3DES envelopes (`unsupported-algorithm`) instead of reading
    them with the `legacy-3des` warning.
    """
    outer, entity = mime.split_message(message)
    prefix = _prefix(outer)
    pool = [_asn1(c) for c in extra_certs]
    layers: list[Layer] = []
    errors: list[Reason] = []
    kind = _layer_kind(entity)
    while kind is not None:
        if kind == "unsupported":
            errors.append(("unsupported-layer", "application/pkcs7-mime of an unsupported type"))
            break
        if len(layers) >= max_layers:
            errors.append(("too-many-layers", f"more than {max_layers} nested S/MIME layers"))
            break
        current = prefix + entity
        if kind == "encrypted":
            layer, inner = _unwrap_decrypt(current, keys, allow_3des)
        else:
            layer, inner = _unwrap_verify(current, trust, now, crls, from_address, policy,
                                          pool, signer_lookup)
            layer = attrs.evolve(layer, message=current)
        layers.append(layer)
        if inner is None:
            break
        entity = mime.to_crlf(inner)
        kind = _layer_kind(entity)
    if not layers:
        nested = _nested_smime(entity)
        if nested:
            errors.append(_partial(nested, "the message"))
        return UnwrapResult((), False, False, False, (), message, tuple(errors))
    _excuse_hops(layers)
    errors += [r for layer in layers if not layer.ok for r in layer.reasons]
    finished = not errors and kind is None
    if finished and layers[-1].kind == "encrypted":
        if any(layer.kind == "signed" for layer in layers):
            errors.append(("unsigned-content", "the signature covers only the encrypted "
                           "envelope, not the decrypted content"))
        if layers[-1].authenticated is False:
            errors.append(("unauthenticated-encryption", "decrypted CBC content with no "
                           "signature inside: integrity is not protected"))
    nested = _nested_smime(entity) if finished and layers[-1].kind == "encrypted" else None
    if nested:
        # Under a signature, nested parts (a forwarded signed message) are covered by it;
        # straight under an envelope, unsigned siblings wrap them (MIME wrapping, EFAIL).
        errors.append(_partial(nested, "the decrypted content"))
    signed_layers = [layer for layer in layers if layer.kind == "signed"]
    verified = (
        not errors and layers[-1].kind == "signed" and all(s.ok for s in signed_layers)
    )
    signers = tuple(
        s.certificate
        for layer in signed_layers if layer.ok and layer.verify is not None
        for s in layer.verify.signers if s.verified and s.certificate is not None
    )
    content = prefix + _without_mime_version(entity) if kind is None else message
    return UnwrapResult(
        tuple(layers),
        encrypted=any(layer.kind == "encrypted" for layer in layers),
        signed=bool(signed_layers),
        verified=verified,
        signers=signers,
        content=content,
        errors=tuple(dict.fromkeys(errors)),
    )
