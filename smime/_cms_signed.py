"""Private CMS SignedData layer: build, parse defensively, check signatures.

Only asn1crypto (structure) and cryptography (primitives) are used; nothing here knows about
MIME or trust. Callers get `MalformedError` / `UnsupportedError` / `SigningError`, never a raw
asn1crypto or cryptography exception.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Sequence

import attrs
from asn1crypto import algos, cms, core, x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from smime.errors import MalformedError, SigningError, UnsupportedError

# Nesting deeper than this is never produced by a real CMS object; refusing early keeps the
# parser iterative-bounded and far from Python's recursion limit.
MAX_DEPTH = 64
INDEF = -1
_NEEDED_ATTRS = {"content_type", "message_digest", "signing_time", "smime_capabilities"}
SIGNING_DIGESTS = ("sha256", "sha384", "sha512")
# SHA-1 is tolerated on verify only (legacy mail) and flagged by the caller; MD5 never.
VERIFY_DIGESTS = (*SIGNING_DIGESTS, "sha1")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
DEFAULT_CAPABILITIES = ("aes256_gcm", "aes128_gcm", "aes256_cbc", "aes128_cbc")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def check_der(data: bytes) -> None:
    """Walk every TLV without recursion; raise MalformedError naming the offset on any flaw."""
    if not data:
        raise MalformedError("CMS: empty input")
    # End offsets of the open constructed values; INDEF marks a BER indefinite-length value,
    # which ends at its end-of-contents octets.
    stack: list[int] = [len(data)]
    limit = len(data)
    pos = 0
    while pos < len(data):
        while stack and stack[-1] != INDEF and pos == stack[-1]:
            stack.pop()
        if not stack:
            raise MalformedError(f"CMS: trailing data at byte {pos}")
        start = pos
        if data[pos : pos + 2] == b"\x00\x00" and stack[-1] == INDEF:
            stack.pop()
            pos += 2
            continue
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:  # high tag number form
            while pos < len(data) and data[pos] & 0x80:
                pos += 1
            pos += 1
        if pos >= len(data):
            raise MalformedError(f"CMS: truncated header at byte {start}")
        first = data[pos]
        pos += 1
        if first == 0x80:
            if not tag & 0x20:
                raise MalformedError(f"CMS: indefinite length on a primitive at byte {start}")
            if len(stack) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            stack.append(INDEF)
            continue
        if first & 0x80:
            count = first & 0x7F
            if count > 8 or pos + count > len(data):
                raise MalformedError(f"CMS: bad length field at byte {start}")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            length = first
        end = pos + length
        bound = next((e for e in reversed(stack) if e != INDEF), limit)
        if end > bound:
            raise MalformedError(
                f"CMS: value at byte {start} claims {length} bytes but only "
                f"{bound - pos} remain"
            )
        if tag & 0x20:
            if len(stack) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            stack.append(end)
        else:
            pos = end
    while stack and stack[-1] != INDEF and pos == stack[-1]:
        stack.pop()
    if stack:
        raise MalformedError("CMS: truncated input")


@attrs.frozen
class ParsedSigned:
    signed_data: cms.SignedData
    content: bytes | None  # encapsulated content, None when detached
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[bytes, ...]


def parse_signed(der: bytes) -> ParsedSigned:
    """Parse a ContentInfo holding SignedData; all structural errors become MalformedError."""
    check_der(der)
    try:
        info = cms.ContentInfo.load(der, strict=True)
        # Parse every field we use now, so later access cannot fail half-way. Attribute values
        # of unknown or exotic types are left alone (RFC 4134 4.10 has several).
        _ = info["content_type"].native
        if info["content_type"].native != "signed_data":
            raise UnsupportedError(
                f"CMS: content type {info['content_type'].native} is not signed-data"
            )
        sd = info["content"]
        encap = sd["encap_content_info"]["content"]
        _ = sd["digest_algorithms"].native, sd["encap_content_info"]["content_type"].native
        # .native joins the chunks of a BER constructed OCTET STRING.
        content = None if isinstance(encap, core.Void) else _octets(encap)
        certs = tuple(
            c.chosen for c in sd["certificates"] if c.name == "certificate"
        ) if sd["certificates"].native is not None else ()
        crls = tuple(
            c.chosen.dump() for c in sd["crls"] if c.name == "crl"
        ) if sd["crls"].native is not None else ()
        for si in sd["signer_infos"]:
            for field in ("sid", "digest_algorithm", "signature_algorithm", "signature"):
                _ = si[field].native
            _ = si["signature_algorithm"]["parameters"].native
            if has_signed_attrs(si):
                for a in si["signed_attrs"]:
                    if a["type"].native in _NEEDED_ATTRS:
                        _ = a["values"].native
        for cert in certs:
            _ = cert.native
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:
        raise MalformedError(f"CMS: not a valid SignedData structure ({exc})") from None
    return ParsedSigned(sd, content, certs, crls)


def needed_attrs(si: cms.SignerInfo) -> dict[str, cms.SetOfAny]:
    """The signed attributes we use, by name; other values are never parsed (see above)."""
    if not has_signed_attrs(si):
        return {}
    return {
        a["type"].native: a["values"]
        for a in si["signed_attrs"]
        if a["type"].native in _NEEDED_ATTRS
    }


def has_signed_attrs(si: cms.SignerInfo) -> bool:
    # Never call .native on the whole attribute set: exotic attribute values make it raise.
    return not isinstance(si["signed_attrs"], core.Void)


def _octets(value: core.Asn1Value) -> bytes:
    native = value.native
    if isinstance(native, bytes):
        return native
    return bytes(value.contents)


def digest(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _cert_of(cert: x509.Certificate | bytes) -> x509.Certificate:
    return cert if isinstance(cert, x509.Certificate) else x509.Certificate.load(cert)


@functools.lru_cache(maxsize=64)
def _constant_attrs(cert_der: bytes, capabilities: tuple[str, ...]) -> tuple[bytes, bytes]:
    """DER of the smimeCapabilities and encryptionKeyPreference attributes, which depend only
    on the signer: building them with asn1crypto took half the time of a whole signature."""
    signer = x509.Certificate.load(cert_der)
    ias = cms.IssuerAndSerialNumber(
        {"issuer": signer.issuer, "serial_number": signer.serial_number}
    )
    try:
        caps = cms.CMSAttribute({
            "type": "smime_capabilities",
            "values": [[{"capability_id": c} for c in capabilities]],
        }).dump()
    except (ValueError, TypeError) as exc:
        raise SigningError(f"unknown S/MIME capability in {list(capabilities)} ({exc})") from None
    pref = cms.CMSAttribute({
        "type": "encrypt_key_pref",
        "values": [cms.SMIMEEncryptionKeyPreference({"issuer_and_serial_number": ias})],
    }).dump()
    return caps, pref


def build_signed(
    content: bytes,
    key: PrivateKey,
    cert: x509.Certificate | bytes,
    chain: Sequence[x509.Certificate | bytes] = (),
    *,
    detached: bool = True,
    digest_name: str = "sha256",
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
    signing_time: dt.datetime | None = None,
    use_ski: bool = False,
) -> bytes:
    """Return the DER ContentInfo(SignedData) signing `content` with `key`/`cert`."""
    if digest_name not in SIGNING_DIGESTS:
        raise SigningError(f"digest {digest_name!r} refused: use one of {SIGNING_DIGESTS}")
    signer = _cert_of(cert)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        digest_name = "sha512"  # RFC 8419 section 3: Ed25519 in CMS pairs with SHA-512
    when = signing_time or dt.datetime.now(dt.UTC)
    ias = cms.IssuerAndSerialNumber(
        {"issuer": signer.issuer, "serial_number": signer.serial_number}
    )
    caps_der, pref_der = _constant_attrs(signer.dump(), tuple(capabilities))
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": when})]},
        {"type": "message_digest", "values": [digest(digest_name, content)]},
        cms.CMSAttribute.load(caps_der),
        cms.CMSAttribute.load(pref_der),
    ])
    to_sign = signed_attrs.dump()
    h = _HASHES[digest_name]()
    sig_params: dict[str, object]
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pss":
            salt = h.digest_size
            signature = key.sign(to_sign, padding.PSS(padding.MGF1(h), salt), h)
            sig_params = {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams({
                    "hash_algorithm": {"algorithm": digest_name},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1", "parameters": {"algorithm": digest_name},
                    },
                    "salt_length": salt,
                }),
            }
        elif rsa_padding == "pkcs1v15":
            signature = key.sign(to_sign, padding.PKCS1v15(), h)
            sig_params = {"algorithm": "rsassa_pkcs1v15"}
        else:
            raise SigningError(f"rsa_padding must be 'pkcs1v15' or 'pss', not {rsa_padding!r}")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(h))
        sig_params = {"algorithm": f"{digest_name}_ecdsa"}
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(to_sign)
        sig_params = {"algorithm": "ed25519"}
    else:
        raise SigningError(f"unsupported signing key type {type(key).__name__}")
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != signer["tbs_certificate"]["subject_public_key_info"].dump():
        raise SigningError("the private key does not match the signing certificate")
    if use_ski:
        if signer.key_identifier is None:
            raise SigningError("signer by SKI requested but the certificate has no SKI")
        sid = cms.SignerIdentifier({"subject_key_identifier": signer.key_identifier})
    else:
        sid = cms.SignerIdentifier({"issuer_and_serial_number": ias})
    signer_info = cms.SignerInfo({
        "version": "v3" if use_ski else "v1",
        "sid": sid,
        "digest_algorithm": {"algorithm": digest_name},
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_params,
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    sd = cms.SignedData({
        "version": "v3" if use_ski else "v1",
        "digest_algorithms": [{"algorithm": digest_name}],
        "encap_content_info": encap,
        "certificates": [signer, *(_cert_of(c) for c in chain)],
        "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


def check_signature(
    si: cms.SignerInfo, cert: x509.Certificate, content: bytes
) -> tuple[str, str] | None:
    """Check one SignerInfo against its certificate; return (code, text) on failure."""
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in VERIFY_DIGESTS:
        return ("weak-digest", f"digest algorithm {digest_name} is refused")
    attrs_v = si["signed_attrs"]
    if not has_signed_attrs(si):
        # RFC 5652 5.4: without signed attributes the signature covers the content itself.
        return _check_raw(si, cert, content, content, digest_name)
    found = needed_attrs(si)
    types = [a["type"].native for a in attrs_v]
    for once in ("content_type", "message_digest"):
        if types.count(once) != 1 or len(found[once]) != 1:
            return ("bad-attributes", f"{once} must occur exactly once with one value")
    for at_most in ("smime_capabilities", "encrypt_key_pref"):
        if types.count(at_most) > 1:
            return ("bad-attributes", f"{at_most} occurs more than once")
    if found["content_type"][0].native != "data":
        return ("content-type-mismatch", "contentType attribute does not say id-data")
    if not hmac.compare_digest(found["message_digest"][0].native, digest(digest_name, content)):
        return ("bad-digest", "the content does not match the signed message digest")
    data = b"\x31" + attrs_v.dump()[1:]  # signature covers the attributes as a SET OF
    return _check_raw(si, cert, data, content, digest_name)


def _check_raw(
    si: cms.SignerInfo, cert: x509.Certificate, data: bytes, content: bytes, digest_name: str
) -> tuple[str, str] | None:
    signature = si["signature"].native
    algo = si["signature_algorithm"]
    try:
        sig_name = algo.signature_algo
        pub = serialization.load_der_public_key(cert.public_key.dump())
        h = _HASHES[digest_name]()
        if sig_name == "rsassa_pss":
            params = algo["parameters"]
            ph = params["hash_algorithm"]["algorithm"].native
            if ph != digest_name:
                return ("bad-algorithm", f"PSS hash {ph} differs from digest {digest_name}")
            mh = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            if mh not in VERIFY_DIGESTS:
                return ("weak-digest", f"PSS MGF1 hash {mh} is refused")
            assert isinstance(pub, rsa.RSAPublicKey)
            pub.verify(signature, data, padding.PSS(padding.MGF1(_HASHES[mh]()),
                                                    params["salt_length"].native), _HASHES[ph]())
        elif sig_name == "rsassa_pkcs1v15" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PKCS1v15(), h)
        elif sig_name == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, data, ec.ECDSA(h))
        elif sig_name == "ed25519" and isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(signature, data)
        else:
            return ("unsupported-algorithm", f"signature algorithm {sig_name} is not supported")
    except InvalidSignature:
        return ("bad-signature", "the signature does not match the signer's public key")
    except (ValueError, TypeError, KeyError, AssertionError, UnsupportedAlgorithm) as exc:
        return ("unsupported-algorithm", f"signature could not be checked: {exc}")
    return None


def find_signer_cert(
    si: cms.SignerInfo, certs: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    sid = si["sid"]
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            if (cert.issuer == sid.chosen["issuer"]
                    and cert.serial_number == sid.chosen["serial_number"].native):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    return None
