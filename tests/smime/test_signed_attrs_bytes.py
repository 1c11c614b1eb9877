"""The signature over signed attributes is checked against the bytes the message carried, never
against an encoding made anew from the parsed values (issue 12: the verifier re-encoded them,
4.5 ms a message), and certificates parsed once are reused only for the very same bytes."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pki import NOW, Issued, Pki, make_pki

from smime import TrustStore, sign_content, verify
from smime import _cms_signed as cs
from smime._der import length
from smime.errors import MalformedError
from smime.mime import build_detached, canonicalise, split_message

MSG = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
    b"Content-Type: text/plain\r\n\r\nPay Bob 10 EUR.\r\n"
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def alice(pki: Pki) -> Issued:
    return pki.user()


def _verify(pki: Pki, outer: bytes, entity: bytes, der: bytes) -> tuple[bool, list[str]]:
    res = verify(build_detached(outer, entity, der, "sha-256"),
                 trust=TrustStore((pki.root.asn1,)), now=NOW)
    return res.verified, [code for code, _ in res.reasons]


def _reordered(pki: Pki, alice: Issued) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(outer, entity, DER as signed, DER with the attributes in reverse order, that order's
    SET OF): the same attributes, no longer in DER's sorted order."""
    outer, inner = split_message(MSG)
    entity = canonicalise(inner)
    der = sign_content(entity, alice.key, alice.asn1, [pki.inter.asn1], now=NOW)
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    sorted_contents = bytes(si["signed_attrs"].contents)
    children = [a.dump() for a in si["signed_attrs"]]  # untouched: the bytes as encoded
    assert b"".join(children) == sorted_contents and len(children) > 2
    reversed_contents = b"".join(reversed(children))
    assert reversed_contents != sorted_contents and der.count(sorted_contents) == 1
    reordered = der.replace(sorted_contents, reversed_contents)
    return outer, entity, der, reordered, b"\x31" + length(len(reversed_contents)) + reversed_contents


def test_signature_over_the_received_bytes_verifies(pki: Pki, alice: Issued) -> None:
    outer, entity, der, reordered, received = _reordered(pki, alice)
    old = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
    key = alice.key
    assert isinstance(key, rsa.RSAPrivateKey)
    new = key.sign(received, padding.PKCS1v15(), hashes.SHA256())
    assert len(new) == len(old)
    assert _verify(pki, outer, entity, reordered.replace(old, new)) == (True, [])


def test_signature_over_a_reencoding_is_refused(pki: Pki, alice: Issued) -> None:
    # The original signature covers the sorted (DER) encoding: a verifier that re-encodes the
    # parsed attributes would find it good, though it does not cover the bytes received.
    outer, entity, der, reordered, _ = _reordered(pki, alice)
    assert _verify(pki, outer, entity, der) == (True, [])
    assert _verify(pki, outer, entity, reordered) == (False, ["bad-signature"])


def test_signed_attrs_are_the_received_bytes(pki: Pki, alice: Issued) -> None:
    _, _, _, reordered, received = _reordered(pki, alice)
    parsed = cs.parse_signed(reordered)
    si = parsed.signed_data["signer_infos"][0]
    # Decoding the values (which marks signingCertificateV2 as modified) changes nothing.
    assert cs._ess_hashes(si)
    assert parsed.signed_attrs == (received,)


def test_certificates_reused_only_for_the_same_bytes(pki: Pki, alice: Issued) -> None:
    outer, inner = split_message(MSG)
    der = sign_content(canonicalise(inner), alice.key, alice.asn1, [pki.inter.asn1], now=NOW)
    first, second = cs.parse_signed(der), cs.parse_signed(der)
    by_bytes = {c.dump(): c for c in first.certificates}
    assert set(by_bytes) == {alice.asn1.dump(), pki.inter.asn1.dump()}
    assert all(a is b for a, b in zip(first.certificates, second.certificates, strict=True))
    other = pki.user()
    der2 = sign_content(canonicalise(inner), other.key, other.asn1, [pki.inter.asn1], now=NOW)
    third = {c.dump(): c for c in cs.parse_signed(der2).certificates}
    assert set(third) == {other.asn1.dump(), pki.inter.asn1.dump()}
    assert third[other.asn1.dump()] is not by_bytes[alice.asn1.dump()]
    assert third[pki.inter.asn1.dump()] is by_bytes[pki.inter.asn1.dump()]  # the same CA's
    assert len(cs._parsed_certs) <= cs._CERT_CACHE_SIZE


def test_repeating_attribute_values_decoded_once_and_bad_ones_always_refused(
    pki: Pki, alice: Issued,
) -> None:
    outer, inner = split_message(MSG)
    der = sign_content(canonicalise(inner), alice.key, alice.asn1, [pki.inter.asn1], now=NOW)
    cs._decoded_attrs.clear()
    first = cs.parse_signed(der)
    known = len(cs._decoded_attrs)
    assert known == 3  # capabilities, algorithm protection, signingCertificateV2
    second = cs.parse_signed(der)  # decoded before: not again
    assert len(cs._decoded_attrs) == known
    for parsed in (first, second):  # and what the verifier reads of them is the same
        si = parsed.signed_data["signer_infos"][0]
        assert cs._ess_hashes(si) == [("sha256", hashlib.sha256(alice.asn1.dump()).digest())]
        assert cs.ess_matches(si, alice.asn1)
    # The ESS certificate hash as a UTF8String instead of an OCTET STRING: refused each time,
    # and never remembered as decoded.
    cert_hash = b"\x04\x20" + hashlib.sha256(alice.asn1.dump()).digest()
    assert der.count(cert_hash) == 1
    bad = der.replace(cert_hash, b"\x0c\x20" + cert_hash[2:])
    for _ in range(2):
        with pytest.raises(MalformedError):
            cs.parse_signed(bad)
    assert len(cs._decoded_attrs) == known
