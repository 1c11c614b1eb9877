"""SignedData for many messages from one signer, without rebuilding the ASN.1 tree each time.

`_cms_signed.build_signed` builds the whole structure with asn1crypto, which re-encodes every
certificate on each call: about ten times the cost of the RSA-2048 signature itself. Per signer
(key, certificate, chain, options) we call `build_signed` once, over empty content at a fixed
signing time, and keep its bytes as a template. Per message only four things change: the
messageDigest and signingTime values (fixed length, patched in place), the signature and the
optional eContent; the few enclosing lengths are re-encoded here. Whatever attributes
`build_signed` emits (now or later) are therefore emitted here too.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence

import attrs
from asn1crypto import cms, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from smime import _cms_signed as cs
from smime._der import OID_DATA, OID_SIGNED_DATA, content_info
from smime._der import tlv as _tlv
from smime.errors import SigningError

# A signing time no real message carries, so its encoding is unique inside the template.
_TEMPLATE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_CACHE_SIZE = 32


def _utc(when: dt.datetime) -> bytes:
    """UTCTime's YYMMDDHHMMSSZ (a year from 1950 to 2049), without strftime's locale work."""
    t = when.astimezone(dt.UTC)
    return b"%02d%02d%02d%02d%02d%02dZ" % (t.year % 100, t.month, t.day, t.hour, t.minute,
                                            t.second)


@attrs.frozen
class _Template:
    spki: bytes  # the certificate's public key, to refuse a key that does not match
    digest_name: str
    rsa_padding: str
    attrs_set: bytes  # signed attributes, DER SET OF (tag 0x31), as signed
    digest_at: int  # offset of the messageDigest value in attrs_set
    time_at: int  # offset of the signingTime value in attrs_set
    sd_head: bytes  # SignedData: version + digestAlgorithms
    sd_certs: bytes  # SignedData: [0] certificates (and [1] crls, if any)
    si_head: bytes  # SignerInfo: version + sid + digestAlgorithm
    si_sig_alg: bytes  # SignerInfo: signatureAlgorithm
    si_tail: bytes  # SignerInfo: unsignedAttrs, if any


_cache: OrderedDict[tuple[object, ...], _Template] = OrderedDict()


@attrs.frozen
class _Known:
    """A template found for these very objects, whose key already matched the certificate.
    Holding them keeps their ids from being reused by other objects while cached."""

    key: object
    cert: object
    chain: tuple[object, ...]
    template: _Template


# The gateway signs every message with the same key and certificate objects: looked up by
# identity, a message skips encoding the certificates for `_cache`'s key and re-checking the
# key against the certificate.
_known: OrderedDict[tuple[object, ...], _Known] = OrderedDict()


def _template(key: cs.PrivateKey, cert: x509.Certificate, chain: Sequence[x509.Certificate],
              digest_name: str, rsa_padding: str, capabilities: Sequence[str]) -> _Template:
    der = cs.build_signed(b"", key, cert, chain, detached=True, digest_name=digest_name,
                          rsa_padding=rsa_padding, capabilities=capabilities,
                          signing_time=_TEMPLATE_TIME)
    sd = cms.ContentInfo.load(der)["content"]
    (si,) = list(sd["signer_infos"])
    digest_name = si["digest_algorithm"]["algorithm"].native  # Ed25519 forces SHA-512
    attrs_set = b"\x31" + si["signed_attrs"].dump()[1:]
    md = cs.digest(digest_name, b"")
    digest_at = attrs_set.index(_tlv(0x04, md)) + 2
    time_at = attrs_set.index(_tlv(0x17, _utc(_TEMPLATE_TIME))) + 2
    if attrs_set.count(md) != 1 or attrs_set.count(_utc(_TEMPLATE_TIME)) != 1:
        raise SigningError("internal: signed attributes template is ambiguous")
    certs = b"".join(
        sd[name].dump() for name in ("certificates", "crls") if sd[name].contents is not None
    )
    tail = si["unsigned_attrs"].dump() if si["unsigned_attrs"].contents is not None else b""
    return _Template(
        spki=cert["tbs_certificate"]["subject_public_key_info"].dump(),
        digest_name=digest_name,
        rsa_padding=rsa_padding,
        attrs_set=attrs_set,
        digest_at=digest_at,
        time_at=time_at,
        sd_head=sd["version"].dump() + sd["digest_algorithms"].dump(),
        sd_certs=certs,
        si_head=si["version"].dump() + si["sid"].dump() + si["digest_algorithm"].dump(),
        si_sig_alg=si["signature_algorithm"].dump(),
        si_tail=tail,
    )


def _sign(key: cs.PrivateKey, data: bytes, t: _Template) -> bytes:
    # Same choices as build_signed, which made the template's signatureAlgorithm.
    h = cs._HASHES[t.digest_name]()
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(h), h.digest_size) if t.rsa_padding == "pss"
            else padding.PKCS1v15()
        )
        return key.sign(data, pad, h)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(h))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise SigningError(f"unsupported signing key type {type(key).__name__}")


def _lookup(key: cs.PrivateKey, cert: x509.Certificate, chain: Sequence[x509.Certificate],
            digest: str, rsa_padding: str, capabilities: Sequence[str]) -> _Template:
    """The template for this signer, made (build_signed checks the key) or found (the key is
    checked here: one certificate may come with another key)."""
    ident = (cert.dump(), tuple(c.dump() for c in chain), digest, rsa_padding,
             tuple(capabilities), type(key))
    t = _cache.get(ident)
    if t is None:
        t = _template(key, cert, chain, digest, rsa_padding, capabilities)
        _cache[ident] = t
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return t
    _cache.move_to_end(ident)
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != t.spki:
        raise SigningError("the private key does not match the signing certificate")
    return t


def sign_fast(
    content: bytes,
    key: cs.PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    detached: bool = True,
    digest: str = "sha256",
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[str] = cs.DEFAULT_CAPABILITIES,
    now: dt.datetime | None = None,
) -> bytes:
    """Same output as `_cms_signed.build_signed` (DER ContentInfo), built from a template."""
    when = now or dt.datetime.now(dt.UTC)
    if when.year >= 2050 or when.year < 1950:
        # Outside UTCTime's range build_signed decides the encoding; let it.
        return cs.build_signed(content, key, cert, chain, detached=detached, digest_name=digest,
                               rsa_padding=rsa_padding, capabilities=capabilities,
                               signing_time=when)
    by_id = (id(key), id(cert), tuple(map(id, chain)), digest, rsa_padding, tuple(capabilities))
    known = _known.get(by_id)
    if known is not None:
        t = known.template
    else:
        t = _lookup(key, cert, chain, digest, rsa_padding, capabilities)
        _known[by_id] = _Known(key, cert, tuple(chain), t)
        while len(_known) > _CACHE_SIZE:
            _known.popitem(last=False)
    a = bytearray(t.attrs_set)
    md = cs.digest(t.digest_name, content)
    a[t.digest_at : t.digest_at + len(md)] = md
    a[t.time_at : t.time_at + 13] = _utc(when)
    signed_attrs = bytes(a)
    signature = _sign(key, signed_attrs, t)
    signer_info = _tlv(0x30, t.si_head + b"\xa0" + signed_attrs[1:] + t.si_sig_alg
                       + _tlv(0x04, signature) + t.si_tail)
    econtent = OID_DATA
    if not detached:
        econtent += _tlv(0xA0, _tlv(0x04, content))
    signed_data = _tlv(0x30, t.sd_head + _tlv(0x30, econtent) + t.sd_certs
                       + _tlv(0x31, signer_info))
    return content_info(OID_SIGNED_DATA, signed_data)
