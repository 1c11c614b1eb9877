"""Gateway domain certificates between two `filterlang serve` instances (issue 14 items 1, 2).

Every certificate here comes from `filterlang cert` alone. Each organisation's gateway signs
with one organisation certificate that names its domain (SAN dNSName), as the product brief's
certificate requirements describe; partners' gateways accept such a certificate for every
sender of that domain (`[smime] accept_domain_certificates`, on by default). Two setups:

- self-signed, as `make run` makes it: each operator pins the partner's certificate as a
  trust anchor and imports it with `filterlang keys add`;
- issued by each organisation's own CA (`cert create --ca`, `cert sign --csr`): each operator
  trusts the partner's CA and imports the partner's gateway certificate.

A signs and encrypts to B; B decrypts, verifies (binding: domain), harvests A's certificate
under a.example and encrypts the reply with it; A verifies the reply. And `make run`'s own
certificate, on the example gateway, verifies at a second example gateway.
"""

from __future__ import annotations

import re
from pathlib import Path

from .harness import (
    B2B_CONFIG,
    B2B_FILTER,
    ExampleGateway,
    Gateway,
    Identity,
    OrgCA,
    Sink,
    content_type,
    message,
    running,
    verify,
    wait_until,
)

ALICE, BOB = "alice@a.example", "bob@b.example"


def _trace(rec: dict[str, object]) -> str:
    return "\n".join(rec["trace"])  # type: ignore[arg-type]


def _exchange(tmp_path: Path, a_id: Identity, b_id: Identity, a_trusts: Identity | OrgCA,
              b_trusts: Identity | OrgCA) -> None:
    mail_a, mail_b = Sink(), Sink()
    a = Gateway(tmp_path / "a", next_hop=mail_a.port, local_domains=["a.example"],
                filters={"outbound.filter": B2B_FILTER}, extra=B2B_CONFIG)
    # B's users keep the partner's signature (so the test can check it with openssl too).
    b = Gateway(tmp_path / "b", next_hop=mail_b.port, local_domains=["b.example"],
                filters={"outbound.filter": B2B_FILTER}, extra=B2B_CONFIG, signature="retain")
    mail_a.forward = {"b.example": b.port}
    mail_b.forward = {"a.example": a.port}
    a.install(a_id)
    b.install(b_id)
    a.trust(a_trusts)
    b.trust(b_trusts)
    # A's operator imports B's gateway certificate; bob@b.example finds it by its domain.
    a.add_key("b.example gateway", b_id)

    def explain() -> str:
        return "=== A\n" + a.explain() + "\n=== B\n" + b.explain()

    with running(mail_a, mail_b, a, b):
        text = "The Q3 plan is attached.\r\n"
        mid = a.send(ALICE, BOB, message(ALICE, BOB, "Q3 plan", text))
        got, rec = b.delivered(mail_b, BOB, mid)
        (crossed,) = [m for m in mail_a.forwarded if m.header("Message-ID") == mid]
        assert "application/pkcs7-mime" in content_type(crossed.data)
        assert text.encode() not in crossed.data
        # B decrypted and verified; A's certificate names a.example, not alice.
        status = got.header("X-Filterlang-SMIME") or ""
        assert status.startswith("decrypted; verified; signers="), explain()
        assert "a.example" in status.partition("signers=")[2].split(","), status
        trace = _trace(rec)
        assert "smime-inbound: binding: domain" in trace, explain()
        assert "harvest: stored" in trace, explain()
        assert re.search(r"^a\.example\t", b.keys("harvested"), re.MULTILINE), b.keys("harvested")
        # The signature Bob got is A's, and a third party (OpenSSL) checks it too.
        assert "multipart/signed" in content_type(got.data)
        assert text.encode() in verify(got.data, b_trusts)

        # The reply: B has no key for alice@a.example but the one it harvested for a.example.
        answer = "Agreed, see you Monday.\r\n"
        rid = b.send(BOB, ALICE, message(BOB, ALICE, "Re: Q3 plan", answer))
        reply, rrec = a.delivered(mail_a, ALICE, rid)
        (crossed,) = [m for m in mail_b.forwarded if m.header("Message-ID") == rid]
        assert "application/pkcs7-mime" in content_type(crossed.data)
        assert answer.encode() not in crossed.data
        assert "profile partners: sign-encrypt for alice@a.example" in _trace(
            b.wait_event(rid, "delivered", ALICE)), explain()
        assert reply.data.endswith(answer.encode())
        assert (reply.header("X-Filterlang-SMIME") or "").startswith("decrypted; verified")
        assert "smime-inbound: binding: domain" in _trace(rrec), explain()


def test_self_signed_domain_certificates_as_make_run_makes_them(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    ids.mkdir()
    a = Identity(ids, "a", "a.example", emails=["postmaster@a.example"], domains=["a.example"])
    b = Identity(ids, "b", "b.example", emails=["postmaster@b.example"], domains=["b.example"])
    # Self-signed: each side pins the other's certificate (smime.md 5.3).
    _exchange(tmp_path, a, b, a_trusts=b, b_trusts=a)


def test_domain_certificates_issued_by_each_organisations_ca(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    ids.mkdir()
    ca_a, ca_b = OrgCA(ids, "orga"), OrgCA(ids, "orgb")
    a = Identity(ids, "a", "a.example", domains=["a.example"], ca=ca_a)
    b = Identity(ids, "b", "b.example", domains=["b.example"], ca=ca_b)
    _exchange(tmp_path, a, b, a_trusts=ca_b, b_trusts=ca_a)


def test_make_run_certificate_verifies_at_a_second_example_gateway(tmp_path: Path) -> None:
    first = ExampleGateway(tmp_path / "first")
    second = ExampleGateway(tmp_path / "second", trust=first.org_cert)
    first.relay = second.port  # the first example gateway delivers to the second
    first.write_config()
    with running(second, first):
        mid = first.send("alice@example.org", "bob@example.org",
                         message("alice@example.org", "bob@example.org", "hello", "hi\r\n"))
        rec = second.wait_event(mid, "delivered", "bob@example.org")
        (got,) = wait_until("the message in the second gateway's maildir",
                            lambda: second.maildir("bob@example.org"),
                            explain=lambda: first.explain() + second.explain())
        assert "profile sign: signed" in _trace(first.wait_event(mid, "delivered"))
        assert b"X-Filterlang-SMIME: verified; signers=example.org,postmaster@example.org" in got
        assert "smime-inbound: binding: domain" in _trace(rec)
        assert "harvest: stored (first key for this domain)" in _trace(rec)
        assert re.search(r"^example\.org\t", second.keys("harvested"), re.MULTILINE)
        assert got.rstrip().endswith(b"hi")
