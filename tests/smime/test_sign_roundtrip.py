"""sign -> verify round trips over forms, key types and paddings."""

from __future__ import annotations

import pytest
from pki import NOW, Pki, make_pki

from smime import TrustStore, sign, verify

MSG = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
    b"Date: Mon, 1 Jun 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Hello Bob,\r\nunicode caf\xc3\xa9 and trailing space \r\n"
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize(
    ("kind", "padding"),
    [("rsa", "pkcs1v15"), ("rsa", "pss"), ("p256", "pkcs1v15"), ("p384", "pkcs1v15"),
     ("ed25519", "pkcs1v15")],
    ids=["rsa-v15", "rsa-pss", "p256", "p384", "ed25519"],
)
def test_round_trip(pki: Pki, detached: bool, kind: str, padding: str) -> None:
    user = pki.user(kind=kind)
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], detached=detached,
                  rsa_padding=padding, now=NOW)
    assert b"Subject: hi\r\n" in signed.split(b"\r\n\r\n")[0]
    assert max(signed) < 128  # 7-bit safe on the wire
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons
    assert res.form == ("detached" if detached else "opaque")
    assert b"text/plain" in res.content
    assert res.signers[0].capabilities[:1] == ("aes256_gcm",)


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_other_digests(pki: Pki, digest: str) -> None:
    user = pki.user()
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], digest=digest, now=NOW)
    assert f"micalg=sha-{digest[3:]}".encode() in signed
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons
    assert res.signers[0].digest_algorithm == digest


def test_lf_relay_survives(pki: Pki) -> None:
    user = pki.user()
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], now=NOW)
    res = verify(signed.replace(b"\r\n", b"\n"), trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified, res.reasons
