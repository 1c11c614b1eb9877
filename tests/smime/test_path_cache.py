"""The cache of successful path validations (smime/_pathcache.py): a partner's chain is
validated once, and never trusted longer than what decided it holds. A new CRL or anchor, a
CRL in the message, an expiry, a CRL going stale or a revocation taking effect are honoured at
once; a failure is never cached."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pki import NOW, Issued, Pki, crl, make_pki

import smime._path as path_module
from smime import TrustStore, sign, verify
from smime._pathcache import PATHS, PathCache

MSG = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
       b"Content-Type: text/plain\r\n\r\nPay Bob 10 EUR.\r\n")
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def alice(pki: Pki) -> Issued:
    return pki.user()


@pytest.fixture(autouse=True)
def validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dt.datetime]]:
    """An empty cache for each test, and the moments at which a path was really validated."""
    PATHS.clear()
    calls: list[dt.datetime] = []
    real = path_module._validate

    def counted(*args: object, **kw: object) -> list[tuple[str, str]]:
        calls.append(args[3])  # type: ignore[arg-type]
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(path_module, "_validate", counted)
    yield calls
    PATHS.clear()


def signed(pki: Pki, user: Issued) -> bytes:
    """A message from the user's own address, signed by the user."""
    address = user.cert.subject.rfc4514_string().removeprefix("CN=")
    return sign(MSG.replace(b"alice@example.com", address.encode()), user.key, user.asn1,
                [pki.inter.asn1], now=NOW)


def store(pki: Pki, *crls: bytes) -> TrustStore:
    """The root as anchor, with these CRLs in the CRL directory."""
    from asn1crypto import crl as asn1_crl

    return TrustStore((pki.root.asn1,), tuple(asn1_crl.CertificateList.load(c) for c in crls))


def codes(message: bytes, trust: TrustStore, when: dt.datetime = NOW,
          crls: tuple[bytes, ...] = (), fetch: str = "off") -> list[str]:
    res = verify(message, trust=trust, now=when, crls=crls, fetch_revocation=fetch)
    assert res.verified is (not res.reasons or all(c.startswith("legacy") for c, _ in res.reasons))
    return [code for code, _ in res.reasons]


def good_crls(pki: Pki) -> tuple[bytes, bytes]:
    return crl(pki.root, []), crl(pki.inter, [])


def test_a_chain_is_validated_once_then_found_in_the_cache(
        pki: Pki, alice: Issued, validations: list[dt.datetime]) -> None:
    trust, message = store(pki, *good_crls(pki)), signed(pki, alice)
    for minute in range(5):
        assert codes(message, trust, NOW + dt.timedelta(minutes=minute)) == []
    assert validations == [NOW]
    assert PATHS.hits == 4


def test_a_new_crl_in_the_directory_revokes_at_once(pki: Pki, validations: list[dt.datetime]) -> None:
    mallory = pki.user("mallory@example.com")
    message = signed(pki, mallory)
    assert codes(message, store(pki, *good_crls(pki))) == []
    # The CA revokes Mallory; the operator's new CRL directory is a new trust store.
    revoking = store(pki, crl(pki.root, []), crl(pki.inter, [mallory]))
    assert codes(message, revoking, NOW + dt.timedelta(minutes=1)) == ["revoked"]
    assert len(validations) == 2


def test_a_crl_carried_in_the_message_is_honoured(pki: Pki) -> None:
    mallory = pki.user("mallory@example.com")
    message, trust = signed(pki, mallory), store(pki, *good_crls(pki))
    assert codes(message, trust) == []
    assert codes(message, trust, crls=(crl(pki.inter, [mallory]),)) == ["revoked"]


def test_an_anchor_removed_is_no_longer_trusted(pki: Pki, alice: Issued) -> None:
    message = signed(pki, alice)
    assert codes(message, store(pki, *good_crls(pki))) == []
    assert codes(message, TrustStore((), ())) == ["untrusted"]
    other = make_pki()
    assert codes(message, TrustStore((other.root.asn1,), ())) == ["untrusted"]


def test_a_failure_is_never_cached(pki: Pki, alice: Issued, validations: list[dt.datetime]) -> None:
    message = signed(pki, alice)
    stranger = TrustStore((make_pki().root.asn1,), ())
    assert codes(message, stranger) == ["untrusted"]
    assert codes(message, stranger) == ["untrusted"]
    assert len(validations) == 2 and len(PATHS) == 0
    # No current CRL yet (the CA's next one is issued in an hour), then one: the failure did
    # not stick either.
    trust = store(pki, crl(pki.root, []), crl(pki.inter, [], now=NOW + dt.timedelta(days=1) + HOUR))
    assert codes(message, trust) == ["revocation-unknown"]
    assert codes(message, trust, NOW + 2 * HOUR) == []
    assert len(validations) == 4


def test_an_answer_ends_when_the_certificate_expires(pki: Pki, validations: list[dt.datetime]) -> None:
    short = pki.user("short@example.com", not_after=NOW + HOUR)
    message, trust = signed(pki, short), store(pki, *good_crls(pki))
    assert codes(message, trust) == []
    assert codes(message, trust, NOW + HOUR / 2) == []
    assert codes(message, trust, NOW + 2 * HOUR) == ["expired"]
    assert validations == [NOW, NOW + 2 * HOUR]


def test_an_answer_ends_when_a_crl_goes_stale(pki: Pki, alice: Issued) -> None:
    message, trust = signed(pki, alice), store(pki, *good_crls(pki))  # nextUpdate: 30 days
    assert codes(message, trust) == []
    assert codes(message, trust, NOW + dt.timedelta(days=31)) == ["revocation-unknown"]


def _crl_revoking_later(ca: Issued, user: Issued, effective: dt.datetime) -> bytes:
    """A CRL issued now that names a revocation taking effect later."""
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(ca.cert.subject)
         .last_update(NOW - dt.timedelta(days=1))
         .next_update(NOW + dt.timedelta(days=30))
         .add_extension(x509.CRLNumber(2), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                        False)
         .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                  .serial_number(user.cert.serial_number)
                                  .revocation_date(effective).build()))
    return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_revocation_that_takes_effect_later_ends_the_answer(pki: Pki) -> None:
    leaving = pki.user("leaving@example.com")
    message = signed(pki, leaving)
    trust = store(pki, crl(pki.root, []), _crl_revoking_later(pki.inter, leaving, NOW + HOUR))
    assert codes(message, trust) == []
    assert codes(message, trust, NOW + 2 * HOUR) == ["revoked"]


def test_an_earlier_moment_is_validated_again(pki: Pki, alice: Issued,
                                              validations: list[dt.datetime]) -> None:
    message, trust = signed(pki, alice), store(pki, *good_crls(pki))
    assert codes(message, trust) == []
    assert codes(message, trust, NOW - HOUR) == []
    assert validations == [NOW, NOW - HOUR]


def test_validations_that_fetch_are_not_cached(pki: Pki, alice: Issued,
                                               validations: list[dt.datetime]) -> None:
    message, trust = signed(pki, alice), store(pki, *good_crls(pki))
    assert codes(message, trust, fetch="soft") == []
    assert codes(message, trust, fetch="soft") == []
    assert len(validations) == 2 and len(PATHS) == 0


def test_the_cache_is_bounded_and_keeps_the_most_recent() -> None:
    cache = PathCache(max_entries=2)
    for key in (b"a", b"b", b"c"):
        cache.remember(key, NOW, [])
    assert len(cache) == 2
    assert not cache.valid(b"a", NOW)
    assert cache.valid(b"b", NOW) and cache.valid(b"c", NOW)
    assert not cache.valid(b"c", NOW + 2 * HOUR)  # MAX_AGE: one hour at most
