"""VerifyPolicy branches: key floors, curves, signingTime, algorithm protection, caps, signers."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

import pytest
from asn1crypto import cms, keys, x509
from bare_signer import sign_without_attributes
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pki import NOW, Issued, Pki, crl, issue, make_pki

from smime import TrustStore, VerifyPolicy, sign, sign_content, verify, verify_content
from smime.errors import MalformedError
from smime.mime import build_detached, canonicalise, split_message

MSG = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
    b"Content-Type: text/plain\r\n\r\nPay Bob 10 EUR.\r\n"
)
ENTITY = canonicalise(split_message(MSG)[1])
OUTER = split_message(MSG)[0]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def alice(pki: Pki) -> Issued:
    return pki.user()


def _codes(pki: Pki, signed: bytes, **kw: object) -> tuple[bool, list[str]]:
    kw.setdefault("now", NOW)
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), **kw)  # type: ignore[arg-type]
    return res.verified, [c for c, _ in res.reasons]


def _der(pki: Pki, user: Issued, **kw: object) -> bytes:
    return sign_content(ENTITY, user.key, user.asn1, [pki.inter.asn1], now=NOW, **kw)  # type: ignore[arg-type]


def _resigned(der: bytes, key: rsa.RSAPrivateKey, edit: Callable[[cms.SignerInfo], None]) -> bytes:
    """Edit the first SignerInfo, then sign its (edited) attributes again with `key`."""
    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    si = sd["signer_infos"][0].copy()
    edit(si)
    si["signature"] = key.sign(
        b"\x31" + si["signed_attrs"].dump(force=True)[1:], padding.PKCS1v15(), hashes.SHA256()
    )
    sd["signer_infos"] = [si]
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)


@pytest.mark.parametrize(
    ("kind", "policy", "expected"),
    [
        ("rsa1024", VerifyPolicy(), (False, ["weak-key"])),
        ("rsa1024", VerifyPolicy(legacy=True), (True, ["legacy-algorithm"])),
        ("p224", VerifyPolicy(), (False, ["weak-key"])),
        ("p224", VerifyPolicy(ec_curves=("secp224r1",)), (True, [])),
        ("p384", VerifyPolicy(), (True, [])),
        ("ed25519", VerifyPolicy(), (True, [])),
    ],
    ids=["rsa1024", "rsa1024-legacy", "p224", "p224-allowed", "p384", "ed25519"],
)
def test_signer_key_floor(
    pki: Pki, kind: str, policy: VerifyPolicy, expected: tuple[bool, list[str]]
) -> None:
    user = pki.user(kind=kind)
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], now=NOW)
    assert _codes(pki, signed, policy=policy) == expected


def test_rsa_floor_is_configurable(pki: Pki) -> None:
    user = pki.user(kind="rsa1024")
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], now=NOW)
    # A lowered floor without legacy mode still flags the short key.
    assert _codes(pki, signed, policy=VerifyPolicy(min_rsa_bits=1024)) == (
        True, ["legacy-algorithm"]
    )


@pytest.mark.parametrize("days", [-40, 400], ids=["before-notBefore", "after-notAfter"])
def test_signing_time_outside_validity(pki: Pki, days: int) -> None:
    # Long-lived CA so only the EE's validity matters; verify at NOW, when the EE is valid.
    user = pki.user()
    when = NOW + dt.timedelta(days=days)
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], now=when)
    assert _codes(pki, signed) == (False, ["signing-time-outside-validity"])


def test_validation_at_signing_time(pki: Pki, alice: Issued) -> None:
    signed = sign(MSG, alice.key, alice.asn1, [pki.inter.asn1], now=NOW)
    later = NOW + dt.timedelta(days=500)
    assert _codes(pki, signed, now=later)[0] is False
    assert _codes(pki, signed, now=later, policy=VerifyPolicy(at_signing_time=True)) == (
        True, []
    )


def test_algorithm_protection_is_emitted(pki: Pki, alice: Issued) -> None:
    si = cms.ContentInfo.load(_der(pki, alice))["content"]["signer_infos"][0]
    prot = [a for a in si["signed_attrs"] if a["type"].native == "cms_algorithm_protection"]
    assert len(prot) == 1
    value = prot[0]["values"][0]
    assert value["digest_algorithm"]["algorithm"].native == "sha256"
    assert value["signature_algorithm"]["algorithm"].native == "rsassa_pkcs1v15"


def test_algorithm_protection_relabelled_signature(pki: Pki, alice: Issued) -> None:
    """sha256WithRSAEncryption instead of rsaEncryption: same maths, but RFC 6211 says no."""
    info = cms.ContentInfo.load(_der(pki, alice))
    sd = info["content"].copy()
    si = sd["signer_infos"][0].copy()
    si["signature_algorithm"] = {"algorithm": "sha256_rsa"}
    sd["signer_infos"] = [si]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert [c for c, _ in res.reasons] == ["algorithm-protection-mismatch"]


def test_algorithm_protection_wrong_digest(pki: Pki, alice: Issued) -> None:
    assert isinstance(alice.key, rsa.RSAPrivateKey)

    def edit(si: cms.SignerInfo) -> None:
        attrs = si["signed_attrs"].copy()
        for a in attrs:
            if a["type"].native == "cms_algorithm_protection":
                a["values"] = [cms.CMSAlgorithmProtection({
                    "digest_algorithm": {"algorithm": "sha384"},
                    "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
                })]
        si["signed_attrs"] = attrs

    der = _resigned(_der(pki, alice), alice.key, edit)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert [c for c, _ in res.reasons] == ["algorithm-protection-mismatch"]


def test_algorithm_protection_absent_is_fine(pki: Pki, alice: Issued) -> None:
    """Most clients do not send the attribute: its absence is not a failure."""
    assert isinstance(alice.key, rsa.RSAPrivateKey)

    def edit(si: cms.SignerInfo) -> None:
        si["signed_attrs"] = [a for a in si["signed_attrs"]
                              if a["type"].native != "cms_algorithm_protection"]

    der = _resigned(_der(pki, alice), alice.key, edit)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons


def _inflate(der: bytes, field: str, count: int) -> bytes:
    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    if field == "signer_infos":
        sd["signer_infos"] = [sd["signer_infos"][0]] * count
    elif field == "certificates":
        sd["certificates"] = [sd["certificates"][0]] * count
    else:
        si = sd["signer_infos"][0].copy()
        si["unsigned_attrs"] = [{"type": "signing_time",
                                 "values": [cms.Time({"utc_time": NOW})]}] * count
        sd["signer_infos"] = [si]
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)


@pytest.mark.parametrize(
    ("field", "count", "match"),
    [("signer_infos", 17, "17 signers"), ("certificates", 65, "65 certificates"),
     ("unsigned_attrs", 33, "33 unsigned attrs")],
    ids=["signers", "certificates", "attributes"],
)
def test_dos_caps(pki: Pki, alice: Issued, field: str, count: int, match: str) -> None:
    der = _inflate(_der(pki, alice), field, count)
    with pytest.raises(MalformedError, match=match):
        verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)


def test_dos_cap_at_the_limit_is_accepted(pki: Pki, alice: Issued) -> None:
    der = _inflate(_der(pki, alice), "certificates", 64)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW,
                         extra_certs=[alice.asn1, pki.inter.asn1])
    assert res.verified, res.reasons


def test_crl_cap(pki: Pki, alice: Issued) -> None:
    crls = [crl(pki.inter, [])] * 33
    with pytest.raises(MalformedError, match="33 CRLs"):
        verify_content(_der(pki, alice), ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW,
                       crls=crls)


def _two_signers(pki: Pki, alice: Issued, other: Issued, with_chain: bool) -> bytes:
    good = cms.ContentInfo.load(_der(pki, alice))
    bad = cms.ContentInfo.load(sign_content(
        ENTITY, other.key, other.asn1, [pki.inter.asn1] if with_chain else [], now=NOW
    ))
    sd = good["content"].copy()
    sd["signer_infos"] = [*good["content"]["signer_infos"], *bad["content"]["signer_infos"]]
    sd["certificates"] = [*good["content"]["certificates"], *bad["content"]["certificates"]]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()
    return build_detached(OUTER, ENTITY, der, "sha-256")


@pytest.mark.parametrize(
    ("mode", "verified"), [("strict", False), ("lenient", True)]
)
def test_multi_signer_policy_untrusted_extra(
    pki: Pki, alice: Issued, mode: str, verified: bool
) -> None:
    eve = issue("eve", emails=["alice@example.com"])  # self-made, untrusted
    signed = _two_signers(pki, alice, eve, with_chain=False)
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW,
                 policy=VerifyPolicy(multi_signer=mode))
    assert res.verified is verified
    assert sorted(s.verified for s in res.signers) == [False, True]  # both listed


def test_co_signer_need_not_be_from(pki: Pki, alice: Issued) -> None:
    """Strict: a valid co-signer (Bob) does not fail the message signed by From (Alice)."""
    bob = pki.user("bob@example.org")
    res = verify(_two_signers(pki, alice, bob, with_chain=True),
                 trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons
    assert {c for c, _ in res.reasons} == {"from-mismatch"}


def test_only_unrelated_valid_signer_is_not_signed_by_from(pki: Pki) -> None:
    """Neither strict nor lenient lets a valid signature by someone else stand for From."""
    bob = pki.user("bob@example.org")
    signed = sign(MSG, bob.key, bob.asn1, [pki.inter.asn1], now=NOW)
    for mode in ("strict", "lenient"):
        assert _codes(pki, signed, policy=VerifyPolicy(multi_signer=mode)) == (
            False, ["from-mismatch"]
        )


def test_policy_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="multi_signer"):
        VerifyPolicy(multi_signer="any")


def _with_cert(der: bytes, cert: x509.Certificate) -> bytes:
    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    sd["certificates"] = [cert]
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)


def test_huge_rsa_key_is_capped(pki: Pki, alice: Issued) -> None:
    """A 20,000-bit modulus is refused before any signature or path work is done."""
    cert = alice.asn1.copy()
    tbs = cert["tbs_certificate"].copy()
    tbs["subject_public_key_info"] = keys.PublicKeyInfo({
        "algorithm": {"algorithm": "rsa"},
        "public_key": keys.RSAPublicKey({"modulus": 2**20000 - 1, "public_exponent": 65537}),
    })
    cert["tbs_certificate"] = tbs
    res = verify_content(_with_cert(_der(pki, alice), cert), ENTITY,
                         trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert [c for c, _ in res.reasons] == ["weak-key"]
    assert "16384" in res.reasons[0][1]


def test_econtent_type_must_be_data(pki: Pki, alice: Issued) -> None:
    der = sign_content(ENTITY, alice.key, alice.asn1, [pki.inter.asn1], detached=False, now=NOW)
    # The first id-data OID is the eContentType; swap it for an unassigned same-length arc.
    data_oid = bytes.fromhex("06092a864886f70d010701")
    relabelled = der.replace(data_oid, bytes.fromhex("06092a864886f70d010709"), 1)
    res = verify_content(relabelled, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert not res.verified
    assert [c for c, _ in res.reasons] == ["content-type-mismatch"]


def test_signing_certificate_v2_is_emitted(pki: Pki, alice: Issued) -> None:
    si = cms.ContentInfo.load(_der(pki, alice))["content"]["signer_infos"][0]
    ess = [a for a in si["signed_attrs"] if a["type"].native == "signing_certificate_v2"]
    assert len(ess) == 1
    assert ess[0]["values"][0]["certs"][0]["cert_hash"].native == hashlib.sha256(
        alice.asn1.dump()
    ).digest()


def test_substituted_certificate_with_same_issuer_serial(pki: Pki, alice: Issued) -> None:
    """Two certificates share issuer and serial; ESS picks the one that was signed with."""
    twin = issue("alice@example.com", pki.inter, emails=["alice@example.com"],
                 serial=alice.cert.serial_number)
    der = _der(pki, alice)
    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    sd["certificates"] = [twin.asn1, alice.asn1, pki.inter.asn1]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons
    assert res.signers[0].certificate is not None
    assert res.signers[0].certificate.dump() == alice.asn1.dump()
    # With only the twin present the attribute exposes the substitution.
    sd["certificates"] = [twin.asn1, pki.inter.asn1]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)
    res = verify_content(der, ENTITY, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert [c for c, _ in res.reasons] == ["signing-certificate-mismatch"]


def test_signer_without_signed_attributes_is_decided_by_policy(pki: Pki, alice: Issued) -> None:
    """RFC 5652 allows a SignerInfo without signed attributes; the library accepts it by
    default (conformance vectors), the gateway's policy refuses it with a reason code."""
    signed = sign_without_attributes(MSG, pki, alice)
    assert _codes(pki, signed) == (True, [])
    assert _codes(pki, signed, policy=VerifyPolicy(require_signed_attributes=True)) == (
        False, ["no-signed-attributes"])
