"""Private CMS SignedData layer: build, parse defensively, find the signer certificate.

The checks of a parsed SignerInfo are in `_cms_check`; path validation is in `_path`.
Only asn1crypto (structure) and cryptography (primitives) are used; nothing here knows about
MIME or trust. Callers get `MalformedError` / `UnsupportedError` / `SigningError`, never a raw
asn1crypto or cryptography exception.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import asn1crypto.tsp  # noqa: F401  (registers the ESS signingCertificate(V2) attributes)
import attrs
from asn1crypto import algos, cms, core, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from smime._der import length
from smime.errors import MalformedError, SigningError, UnsupportedError
from smime.policy import DEFAULT_POLICY, VerifyPolicy

# Nesting deeper than this is never produced by a real CMS object; refusing early keeps the
# parser iterative-bounded and far from Python's recursion limit.
MAX_DEPTH = 64
INDEF = -1
_NEEDED_ATTRS = {
    "content_type", "message_digest", "signing_time", "smime_capabilities",
    "cms_algorithm_protection", "signing_certificate", "signing_certificate_v2",
}
SIGNING_DIGESTS = ("sha256", "sha384", "sha512")
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
    size = len(data)
    # The open constructed values: each one's end (INDEF for a BER indefinite-length value,
    # which ends at its end-of-contents octets) and, beside it, the nearest definite end at
    # or outside it, which bounds every value inside. Kept as values open and close: looked
    # up anew for each value, it cost about half the walk, which every signed message pays.
    ends: list[int] = [size]
    bounds: list[int] = [size]
    pos = 0
    while pos < size:
        while ends and ends[-1] == pos:  # INDEF (-1) never equals an offset
            ends.pop()
            bounds.pop()
        if not ends:
            raise MalformedError(f"CMS: trailing data at byte {pos}")
        start = pos
        tag = data[pos]
        if tag == 0 and ends[-1] == INDEF and pos + 1 < size and data[pos + 1] == 0:
            ends.pop()
            bounds.pop()
            pos += 2
            continue
        pos += 1
        if tag & 0x1F == 0x1F:  # high tag number form
            while pos < size and data[pos] & 0x80:
                pos += 1
            pos += 1
        if pos >= size:
            raise MalformedError(f"CMS: truncated header at byte {start}")
        first = data[pos]
        pos += 1
        if first == 0x80:
            if not tag & 0x20:
                raise MalformedError(f"CMS: indefinite length on a primitive at byte {start}")
            if len(ends) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            ends.append(INDEF)
            bounds.append(bounds[-1])
            continue
        if first & 0x80:
            count = first & 0x7F
            if count > 8 or pos + count > size:
                raise MalformedError(f"CMS: bad length field at byte {start}")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            length = first
        end = pos + length
        if end > bounds[-1]:
            raise MalformedError(
                f"CMS: value at byte {start} claims {length} bytes but only "
                f"{bounds[-1] - pos} remain"
            )
        if tag & 0x20:
            if len(ends) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            ends.append(end)
            bounds.append(end)
        else:
            pos = end
    while ends and ends[-1] == pos:
        ends.pop()
    if ends:
        raise MalformedError("CMS: truncated input")


@attrs.frozen
class ParsedSigned:
    signed_data: cms.SignedData
    content: bytes | None  # encapsulated content, None when detached
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[bytes, ...]
    # Per SignerInfo, in order: the bytes its signature covers when it has signed attributes
    # (see signed_attrs_der), else None.
    signed_attrs: tuple[bytes | None, ...]


def signed_attrs_der(si: cms.SignerInfo) -> bytes | None:
    """The signed attributes as the signature covers them (RFC 5652 5.4): the encoding that
    came in the message, with the EXPLICIT SET OF tag in place of the IMPLICIT [0].

    Taken from the received content octets, never from dump(): asn1crypto marks a value it
    decoded for .native as modified (signingCertificateV2 is, for one) and dump() then encodes
    the whole set anew, sorted; that cost 4.5 ms per 4 KB message, and it checks the signature
    over bytes the signer may never have signed. Call it before anything reads the attribute
    values (parse_signed does)."""
    if not has_signed_attrs(si):
        return None
    contents = bytes(si["signed_attrs"].contents or b"")
    return b"\x31" + length(len(contents)) + contents


# Certificates already parsed in full, by their encoding: a partner signs thousands of messages
# with the same certificate and CA chain, and decoding each in full (parse_signed's check that
# later access cannot fail half-way) cost some 3 ms per message. The same bytes decode the same
# way, so a hit is the very check done before; the objects are only read after that.
_CERT_CACHE_SIZE = 512
_parsed_certs: OrderedDict[bytes, x509.Certificate] = OrderedDict()
_parsed_lock = threading.Lock()


# Signed attribute values a signer sends alike in every message (its capabilities, the hash of
# its certificate, the algorithms it protects): decoding them in full cost some 0.8 ms a
# message (signingCertificateV2 alone 0.6: asn1crypto re-encodes it as it decodes). Each
# distinct encoding is decoded in full once; the same bytes cannot fail later.
_REPEATING_ATTRS = frozenset({
    "smime_capabilities", "cms_algorithm_protection", "signing_certificate",
    "signing_certificate_v2",
})
_decoded_attrs: OrderedDict[bytes, None] = OrderedDict()


def _decoded_values(name: str, values: cms.SetOfAny) -> None:
    """Decode `values` of attribute `name` in full (raising as .native does), unless the very
    same encoding of the same attribute was decoded before."""
    key = name.encode() + b"\0" + bytes(values.contents or b"")  # untouched: as received
    with _parsed_lock:
        if key in _decoded_attrs:
            _decoded_attrs.move_to_end(key)
            return
    _ = values.native
    with _parsed_lock:
        _decoded_attrs[key] = None
        while len(_decoded_attrs) > _CERT_CACHE_SIZE:
            _decoded_attrs.popitem(last=False)


def _parsed_certificate(choice: cms.CertificateChoices) -> x509.Certificate:
    """The certificate of `choice` parsed in full (raising ValueError & co. as .native does),
    or the one parsed before from the very same bytes."""
    # The received encoding, read before anything else touches the value: not cert.dump(),
    # which may change what a later dump() returns (a BER certificate's signature then fails
    # to verify in path validation: PKITS ValidNameChainingUIDsTest6).
    der = bytes(choice.contents)
    with _parsed_lock:
        known = _parsed_certs.get(der)
        if known is not None:
            _parsed_certs.move_to_end(der)
            return known
    cert = choice.chosen
    _ = cert.native
    with _parsed_lock:
        _parsed_certs[der] = cert
        while len(_parsed_certs) > _CERT_CACHE_SIZE:
            _parsed_certs.popitem(last=False)
    return cert


def _cap(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise MalformedError(f"CMS: {count} {what} exceed the limit of {limit}")


def parse_signed(der: bytes, policy: VerifyPolicy = DEFAULT_POLICY) -> ParsedSigned:
    """Parse a ContentInfo holding SignedData; all structural errors become MalformedError.

    The counts of signers, certificates, CRLs and attributes are capped before any of them is
    parsed or checked (smime.md 9.2 resource exhaustion: each costs a public-key operation).
    """
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
        _cap("signers", len(sd["signer_infos"]), policy.max_signers)
        for field, what, limit in (
            ("certificates", "certificates", policy.max_certificates),
            ("crls", "CRLs", policy.max_crls),
        ):
            if not isinstance(sd[field], core.Void):
                _cap(what, len(sd[field]), limit)
        for si in sd["signer_infos"]:
            for field in ("signed_attrs", "unsigned_attrs"):
                if not isinstance(si[field], core.Void):
                    _cap(f"{field.replace('_', ' ')}", len(si[field]), policy.max_attributes)
        # Before any attribute value is decoded (see signed_attrs_der).
        signed_attrs = tuple(signed_attrs_der(si) for si in sd["signer_infos"])
        encap = sd["encap_content_info"]["content"]
        _ = sd["digest_algorithms"].native, sd["encap_content_info"]["content_type"].native
        # .native joins the chunks of a BER constructed OCTET STRING.
        content = None if isinstance(encap, core.Void) else _octets(encap)
        found: list[x509.Certificate] = []
        if not isinstance(sd["certificates"], core.Void):
            for c in sd["certificates"]:
                if c.name == "certificate":
                    found.append(_parsed_certificate(c))
                else:  # parsed in full as before, though never used
                    _ = c.native
        certs = tuple(found)
        crls = tuple(
            c.chosen.dump() for c in sd["crls"] if c.name == "crl"
        ) if sd["crls"].native is not None else ()
        for si in sd["signer_infos"]:
            for field in ("sid", "digest_algorithm", "signature_algorithm", "signature"):
                _ = si[field].native
            _ = si["signature_algorithm"]["parameters"].native
            if has_signed_attrs(si):
                for a in si["signed_attrs"]:
                    name = a["type"].native
                    if name in _REPEATING_ATTRS:
                        _decoded_values(name, a["values"])
                    elif name in _NEEDED_ATTRS:
                        _ = a["values"].native
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError, IndexError) as exc:
        raise MalformedError(f"CMS: not a valid SignedData structure ({exc})") from None
    return ParsedSigned(sd, content, certs, crls, signed_attrs)


def needed_attrs(si: cms.SignerInfo) -> Mapping[str, cms.SetOfAny]:
    """The signed attributes we use, by name; other values are never parsed (see above).

    Read once per SignerInfo: verification asks for them five times a signer (the checks, the
    ESS certificate hash for each candidate certificate, the signing time), and each reading
    walks every attribute through asn1crypto, about 4% of an inbound message's CPU. The memo
    is weak, so it lives exactly as long as the parsed message; the values are read-only."""
    known = _needed_memo.get(si)
    if known is not None:
        return known
    found: Mapping[str, cms.SetOfAny] = MappingProxyType({
        a["type"].native: a["values"]
        for a in si["signed_attrs"]
        if a["type"].native in _NEEDED_ATTRS
    } if has_signed_attrs(si) else {})
    _needed_memo[si] = found
    return found


# SignerInfo -> its needed attributes (asn1crypto values compare and hash by identity).
_needed_memo: weakref.WeakKeyDictionary[cms.SignerInfo, Mapping[str, cms.SetOfAny]] = (
    weakref.WeakKeyDictionary())


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
    attrs_list = [
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": when})]},
        {"type": "message_digest", "values": [digest(digest_name, content)]},
        {
            "type": "smime_capabilities",
            "values": [[{"capability_id": c} for c in capabilities]],
        },
        {
            # RFC 5035 ESS signingCertificateV2: binds the exact certificate into the
            # signature, so a certificate with the same issuer/serial cannot be substituted.
            "type": "signing_certificate_v2",
            "values": [{"certs": [{
                "hash_algorithm": {"algorithm": "sha256"},
                "cert_hash": hashlib.sha256(signer.dump()).digest(),
            }]}],
        },
        {
            "type": "encrypt_key_pref",
            "values": [cms.SMIMEEncryptionKeyPreference(
                {"issuer_and_serial_number": ias}
            )],
        },
    ]
    h = _HASHES[digest_name]()
    sig_params = _signature_params(key, digest_name, rsa_padding)
    # RFC 6211: bind the digest and signature algorithms into the signed attributes, so an
    # attacker cannot re-label the signature (e.g. PSS <-> v1.5) without breaking it.
    attrs_list.append({
        "type": "cms_algorithm_protection",
        "values": [cms.CMSAlgorithmProtection({
            "digest_algorithm": {"algorithm": digest_name},
            "signature_algorithm": sig_params,
        })],
    })
    try:
        signed_attrs = cms.CMSAttributes(attrs_list)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"unknown S/MIME capability in {list(capabilities)} ({exc})") from None
    to_sign = signed_attrs.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(h), h.digest_size) if rsa_padding == "pss"
            else padding.PKCS1v15()
        )
        signature = key.sign(to_sign, pad, h)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(h))
    else:
        signature = key.sign(to_sign)
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


def _signature_params(key: PrivateKey, digest_name: str, rsa_padding: str) -> dict[str, object]:
    """The SignerInfo signatureAlgorithm for `key`; refuses key types we never sign with."""
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pss":
            return {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams({
                    "hash_algorithm": {"algorithm": digest_name},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1", "parameters": {"algorithm": digest_name},
                    },
                    "salt_length": _HASHES[digest_name].digest_size,
                }),
            }
        if rsa_padding == "pkcs1v15":
            return {"algorithm": "rsassa_pkcs1v15"}
        raise SigningError(f"rsa_padding must be 'pkcs1v15' or 'pss', not {rsa_padding!r}")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"algorithm": f"{digest_name}_ecdsa"}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": "ed25519"}
    raise SigningError(f"unsupported signing key type {type(key).__name__}")


def _ess_hashes(si: cms.SignerInfo) -> list[tuple[str, bytes]] | None:
    """(hash algorithm, certificate hash) pairs of the ESS signingCertificate(V2) attribute,
    or None when the signer sent neither (RFC 5035; smime.md 6 4.1)."""
    found = needed_attrs(si)
    if "signing_certificate_v2" in found:
        return [(str(c["hash_algorithm"]["algorithm"].native), bytes(c["cert_hash"].native))
                for c in found["signing_certificate_v2"][0]["certs"]]
    if "signing_certificate" in found:
        return [("sha1", bytes(c["cert_hash"].native))
                for c in found["signing_certificate"][0]["certs"]]
    return None


def ess_matches(si: cms.SignerInfo, cert: x509.Certificate) -> bool:
    """True unless an ESS signingCertificate attribute names a different certificate."""
    try:
        wanted = _ess_hashes(si)
        if not wanted:
            return True
        # Only the first ESSCertID identifies the signer's own certificate (RFC 5035 3).
        name, value = wanted[0]
        return hmac.compare_digest(_cert_digest(cert, name), value)
    except (ValueError, TypeError, KeyError, IndexError):
        return False


def _cert_digest(cert: x509.Certificate, name: str) -> bytes:
    """The `name` digest of the certificate's encoding, once per certificate object: the
    certificates of a message are the ones parsed before from the same bytes (see
    _parsed_certificate), and dump() walks the whole certificate to see whether it changed."""
    known = _digest_memo.get(cert)
    if known is None:
        known = _digest_memo[cert] = {}
    value = known.get(name)
    if value is None:
        value = known[name] = hashlib.new(name, cert.dump()).digest()
    return value


# Certificate -> {digest name: digest of its encoding} (weak: kept while the certificate is).
_digest_memo: weakref.WeakKeyDictionary[x509.Certificate, dict[str, bytes]] = (
    weakref.WeakKeyDictionary())


def same_name(a: x509.Name, b: x509.Name) -> bool:
    """RFC 5280 name equality, answered at once for names encoded byte for byte alike (the
    usual case: the signer copies the issuer from its certificate). The full comparison
    prepares every string of both names (stringprep, case folding), about 1 ms a message.

    A name that cannot be prepared (asn1crypto raises ValueError for unassigned code points,
    found by the smime_mime fuzz target) equals only a name of the very same bytes."""
    raw_a, raw_b = a.contents, b.contents
    if raw_a is not None and raw_a == raw_b:
        return True
    try:
        return bool(a == b)
    except ValueError:
        return False


def find_signer_cert(
    si: cms.SignerInfo, certs: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate the SignerInfo names; among several issuer/serial or SKI matches, the
    one the ESS signingCertificate attribute names (a substituted certificate is not)."""
    sid = si["sid"]
    found: list[x509.Certificate] = []
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            if (cert.serial_number == sid.chosen["serial_number"].native
                    and same_name(cert.issuer, sid.chosen["issuer"])):
                found.append(cert)
        elif cert.key_identifier == sid.chosen.native:
            found.append(cert)
    return next((c for c in found if ess_matches(si, c)), found[0] if found else None)
