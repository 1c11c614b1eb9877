"""Gateway domain certificates (issue 14 item 1): a SAN dNSName binds every sender of that
domain when the verifying policy accepts domain certificates, and says so (`binding`)."""

from __future__ import annotations

import pytest
from pki import NOW, Issued, Pki, issue, make_pki

from smime import TrustStore, sign, verify
from smime.binding import domain_covers, sender_binding
from smime.policy import VerifyPolicy

GATEWAY = VerifyPolicy(domain_certificates=True)


@pytest.mark.parametrize(("pattern", "domain", "covers"), [
    ("example.com", "example.com", True),
    ("Example.COM.", "example.com", True),
    ("example.com", "mail.example.com", False),
    ("*.example.com", "mail.example.com", True),
    ("*.example.com", "MAIL.Example.com", True),
    ("*.example.com", "example.com", False),  # the wildcard is one label, never zero
    ("*.example.com", "a.mail.example.com", False),  # ...nor two
    ("*.com", "example.com", False),  # a wildcard over a top-level domain names nothing
    ("m*.example.com", "mail.example.com", False),  # partial-label wildcards are not honoured
    ("*.*.example.com", "a.b.example.com", False),
    ("bücher.example", "xn--bcher-kva.example", True),  # compared in A-label form
    ("", "example.com", False),
])
def test_domain_covers(pattern: str, domain: str, covers: bool) -> None:
    assert domain_covers(pattern, domain) is covers


def test_sender_binding_prefers_the_address_and_needs_the_policy_for_domains() -> None:
    emails, domains = ("postmaster@example.com",), ("example.com",)
    assert sender_binding(emails, domains, "Postmaster@Example.com",
                          domain_certificates=False) == "address"
    assert sender_binding(emails, domains, "alice@example.com", domain_certificates=False) is None
    assert sender_binding(emails, domains, "alice@example.com",
                          domain_certificates=True) == "domain"
    assert sender_binding(emails, domains, "alice@evil.example",
                          domain_certificates=True) is None
    assert sender_binding(emails, domains, "not-an-address", domain_certificates=True) is None


MSG = (b"From: Alice <alice@a.example>\r\nTo: bob@b.example\r\nSubject: hi\r\n"
       b"Content-Type: text/plain\r\n\r\nThe Q3 plan.\r\n")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def _gateway(pki: Pki, *dns: str, emails: tuple[str, ...] = ()) -> Issued:
    return issue("gw", pki.inter, dns=dns, emails=emails)


def _verify(pki: Pki, signer: Issued, policy: VerifyPolicy, msg: bytes = MSG
            ) -> tuple[bool, str | None, list[str]]:
    signed = sign(msg, signer.key, signer.asn1, [pki.inter.asn1], now=NOW)  # type: ignore[arg-type]
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW, policy=policy)
    return res.verified, res.binding, [c for c, _ in res.reasons]


def test_domain_certificate_verifies_only_when_the_policy_accepts_it(pki: Pki) -> None:
    gw = _gateway(pki, "a.example")
    assert _verify(pki, gw, VerifyPolicy()) == (False, None, ["certificate-without-address"])
    assert _verify(pki, gw, GATEWAY) == (True, "domain", [])


def test_wildcard_domain_certificate(pki: Pki) -> None:
    gw = _gateway(pki, "*.a.example")
    sub = MSG.replace(b"alice@a.example", b"alice@eu.a.example")
    assert _verify(pki, gw, GATEWAY, sub) == (True, "domain", [])
    assert _verify(pki, gw, GATEWAY)[:2] == (False, None)
    deeper = MSG.replace(b"alice@a.example", b"alice@x.eu.a.example")
    assert _verify(pki, gw, GATEWAY, deeper) == (False, None, ["from-mismatch"])


def test_other_domains_sender_is_refused(pki: Pki) -> None:
    gw = _gateway(pki, "b.example")
    assert _verify(pki, gw, GATEWAY) == (False, None, ["from-mismatch"])


def test_address_binding_wins_and_is_reported(pki: Pki) -> None:
    gw = _gateway(pki, "a.example", emails=("alice@a.example",))
    assert _verify(pki, gw, GATEWAY) == (True, "address", [])
    assert _verify(pki, gw, VerifyPolicy()) == (True, "address", [])
    # The same certificate for another sender of its domain: only with the policy.
    bob = MSG.replace(b"alice@a.example", b"carol@a.example")
    assert _verify(pki, gw, GATEWAY, bob) == (True, "domain", [])
    assert _verify(pki, gw, VerifyPolicy(), bob) == (False, None, ["from-mismatch"])


def test_sender_header_is_bound_by_the_domain_too(pki: Pki) -> None:
    gw = _gateway(pki, "a.example")
    ok = MSG.replace(b"To:", b"Sender: desk@a.example\r\nTo:")
    assert _verify(pki, gw, GATEWAY, ok) == (True, "domain", [])
    bad = MSG.replace(b"To:", b"Sender: desk@evil.example\r\nTo:")
    assert _verify(pki, gw, GATEWAY, bad)[2] == ["sender-mismatch"]
