"""One test per verifier branch: each must give "not verified" with a stable reason code."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
from pki import NOW, Issued, Pki, crl, issue, make_pki

from smime import TrustStore, sign, sign_content, verify
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


def _verify(pki: Pki, signed: bytes, **kw: object) -> tuple[bool, list[str]]:
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW, **kw)  # type: ignore[arg-type]
    return res.verified, [code for code, _ in res.reasons]


def _signed(pki: Pki, user: Issued, msg: bytes = MSG, **kw: object) -> bytes:
    return sign(msg, user.key, user.asn1, [pki.inter.asn1], now=NOW, **kw)  # type: ignore[arg-type]


def test_valid_baseline(pki: Pki, alice: Issued) -> None:
    assert _verify(pki, _signed(pki, alice)) == (True, [])


def test_tampered_body(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice).replace(b"10 EUR", b"99 EUR")
    assert _verify(pki, signed) == (False, ["bad-digest"])


def test_tampered_opaque_content(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice, detached=False)
    head, _, body = signed.partition(b"\r\n\r\n")
    der = base64.b64decode(body).replace(b"10 EUR", b"99 EUR")
    tampered = head + b"\r\n\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n")
    assert _verify(pki, tampered) == (False, ["bad-digest"])


def test_tampered_signed_attribute(pki: Pki, alice: Issued) -> None:
    outer, inner = split_message(MSG)
    entity = canonicalise(inner)
    der = bytearray(sign_content(entity, alice.key, alice.asn1, [pki.inter.asn1], now=NOW))
    # Flip a byte inside the signingTime value (UTCTime digits "26..."), a signed attribute.
    at = der.find(b"\x17\x0d260601")
    der[at + 3] ^= 0x01
    signed = build_detached(outer, entity, bytes(der), "sha-256")
    assert _verify(pki, signed) == (False, ["bad-signature"])


def test_wrong_certificate(pki: Pki, alice: Issued) -> None:
    other = pki.user()
    outer, inner = split_message(MSG)
    entity = canonicalise(inner)
    # Signed with Alice's key but naming another certificate with the same identity.
    der = sign_content(entity, other.key, other.asn1, [pki.inter.asn1], now=NOW)
    swapped = der.replace(
        other.asn1.public_key.dump(), alice.asn1.public_key.dump()
    )
    signed = build_detached(outer, entity, swapped, "sha-256")
    # The ESS signingCertificateV2 attribute names the original certificate.
    assert _verify(pki, signed) == (False, ["signing-certificate-mismatch"])


@pytest.mark.parametrize(
    ("when", "code"),
    [(NOW + dt.timedelta(days=400), "expired"), (NOW - dt.timedelta(days=60), "not-yet-valid")],
    ids=["expired", "not-yet-valid"],
)
def test_validity(pki: Pki, alice: Issued, when: dt.datetime, code: str) -> None:
    res = verify(_signed(pki, alice), trust=TrustStore((pki.root.asn1,)), now=when)
    assert not res.verified
    assert [c for c, _ in res.reasons] == [code], res.reasons


def test_untrusted_self_made(pki: Pki) -> None:
    eve = issue("alice@example.com", emails=["alice@example.com"])  # self-signed look-alike
    signed = sign(MSG, eve.key, eve.asn1, now=NOW)
    assert _verify(pki, signed) == (False, ["untrusted"])


def test_revoked(pki: Pki) -> None:
    bob = pki.user()
    signed = _signed(pki, bob)
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW,
                 crls=[crl(pki.inter, [bob]), crl(pki.root, [])])
    assert not res.verified
    assert [c for c, _ in res.reasons] == ["revoked"], res.reasons


def test_absent_eku_is_fine(pki: Pki) -> None:
    user = pki.user(eku=False)
    # No EKU at all is allowed (smime.md 6 4.5); the certificate verifies.
    assert _verify(pki, _signed(pki, user)) == (True, [])


@pytest.mark.parametrize("ku", ["key_encipherment", "key_agreement"])
def test_wrong_key_usage(pki: Pki, ku: str) -> None:
    user = pki.user(key_usage=ku, kind="p256" if ku == "key_agreement" else "rsa")
    assert _verify(pki, _signed(pki, user)) == (False, ["bad-usage"])


@pytest.mark.parametrize(
    ("eku", "ok"),
    [("1.3.6.1.5.5.7.3.2", False), ("1.3.6.1.5.5.7.3.3", False), ("2.5.29.37.0", True)],
    ids=["clientAuth", "codeSigning", "anyExtendedKeyUsage"],
)
def test_extended_key_usage(pki: Pki, eku: str, ok: bool) -> None:
    user = pki.user(eku_oid=eku)
    assert _verify(pki, _signed(pki, user)) == ((True, []) if ok else (False, ["bad-usage"]))


def test_from_mismatch(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice, MSG.replace(b"alice@example.com", b"mallory@example.com"))
    assert _verify(pki, signed) == (False, ["from-mismatch"])


def test_display_name_trick(pki: Pki) -> None:
    eve = pki.user("eve@evil.example")
    msg = MSG.replace(b"Alice <alice@example.com>", b'"alice@example.com" <eve@evil.example>')
    res = verify(_signed(pki, eve, msg), trust=TrustStore((pki.root.asn1,)), now=NOW,
                 from_address=None)
    # Identity is the addr-spec: the signer is eve, shown as eve, never as alice.
    assert res.verified
    assert "alice" not in str(res.signers[0].certificate.subject.native)  # type: ignore[union-attr]


def test_unknown_critical_extension(pki: Pki) -> None:
    user = pki.user(unknown_critical=True)
    assert _verify(pki, _signed(pki, user)) == (False, ["unknown-critical-extension"])


def test_multiple_from(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice)
    signed = b"From: alice@example.com\r\n" + signed
    assert _verify(pki, signed) == (False, ["multiple-from"])


def test_mime_wrapping(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice)
    wrapped = (
        b"From: alice@example.com\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n"
        b"--X\r\nContent-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n--X\r\n"
        + signed + b"\r\n--X--\r\n"
    )
    assert _verify(pki, wrapped) == (False, ["partially-signed"])


def test_econtent_confusion(pki: Pki, alice: Issued) -> None:
    outer, inner = split_message(MSG)
    entity = canonicalise(inner)
    der = sign_content(entity, alice.key, alice.asn1, [pki.inter.asn1], detached=False, now=NOW)
    shown = canonicalise(b"Content-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n")
    signed = build_detached(outer, shown, der, "sha-256")
    ok, codes = _verify(pki, signed)
    assert not ok
    assert "econtent-in-detached" in codes


def test_no_signers(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice, detached=False)
    head, _, body = signed.partition(b"\r\n\r\n")
    der = base64.b64decode(body)
    from asn1crypto import cms

    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    sd["signer_infos"] = []
    der2 = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()
    msg = head + b"\r\n\r\n" + base64.encodebytes(der2).replace(b"\n", b"\r\n")
    assert _verify(pki, msg) == (False, ["certs-only"])


def test_one_bad_of_two_signers(pki: Pki, alice: Issued) -> None:
    from asn1crypto import cms

    outer, inner = split_message(MSG)
    entity = canonicalise(inner)
    good = cms.ContentInfo.load(sign_content(entity, alice.key, alice.asn1, [pki.inter.asn1],
                                             now=NOW))
    eve = issue("eve", emails=["alice@example.com"])
    bad = cms.ContentInfo.load(sign_content(entity, eve.key, eve.asn1, now=NOW))
    sd = good["content"].copy()
    sd["signer_infos"] = [*good["content"]["signer_infos"], *bad["content"]["signer_infos"]]
    sd["certificates"] = [*good["content"]["certificates"], *bad["content"]["certificates"]]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()
    res = verify(build_detached(outer, entity, der, "sha-256"),
                 trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert not res.verified
    assert sorted(s.verified for s in res.signers) == [False, True]  # DER sorts the SET
    assert [s.reasons[0][0] for s in res.signers if not s.verified] == ["untrusted"]


def test_not_smime_is_malformed() -> None:
    with pytest.raises(MalformedError, match="no S/MIME signature"):
        verify(MSG, trust=TrustStore(), now=NOW)


def test_bad_base64_signature(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice)
    broken = re.sub(rb"(filename=\"smime.p7s\"\r\n\r\n)M", rb"\1*", signed)
    with pytest.raises(MalformedError):
        verify(broken, trust=TrustStore((pki.root.asn1,)), now=NOW)
