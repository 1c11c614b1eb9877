"""The fast paths write the same DER the asn1crypto-built structures would."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms
from compose_util import ca, recipient, user

from smime import _cms_signed as cs
from smime._cms_enveloped import build
from smime._fastsign import sign_fast
from smime.errors import SigningError

WHEN = dt.datetime(2026, 6, 2, 8, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("kind", ["rsa2048", "ed25519"])
@pytest.mark.parametrize("digest", ["sha256", "sha384"])
def test_same_bytes_as_build_signed(kind: str, detached: bool, digest: str) -> None:
    who = user(kind)
    for content in (b"", b"first message\r\n", b"x" * 5000):  # second call uses the cache
        fast = sign_fast(content, who.key, who.asn1, [ca().inter.asn1], detached=detached,
                         digest=digest, now=WHEN)
        slow = cs.build_signed(content, who.key, who.asn1, [ca().inter.asn1],
                               detached=detached, digest_name=digest, signing_time=WHEN)
        assert fast == slow


def test_key_must_match_cached_certificate() -> None:
    a, b = user("p256"), user("p384")
    sign_fast(b"x", a.key, a.asn1)
    with pytest.raises(SigningError, match="does not match"):
        sign_fast(b"x", b.key, a.asn1)


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm"])
def test_envelope_is_what_asn1crypto_would_encode(cipher: str) -> None:
    """The hand-written envelope re-encodes to the same bytes through asn1crypto."""
    der = build(b"x" * 300, [recipient("rsa")[1], recipient("p256")[1]], cipher=cipher)
    parsed = cms.ContentInfo.load(der, strict=True)
    assert parsed.dump(force=True) == der
