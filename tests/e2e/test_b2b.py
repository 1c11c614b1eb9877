"""Business to business: Org A's and Org B's `filterlang serve` exchange mail both ways.

Each operator made its gateway certificate with `filterlang cert create` and had the request
signed by a public CA that both trust. A's operator imported B's certificate with
`filterlang keys add`; B knows nothing of A until it harvests A's key from A's first signed
message, and encrypts the reply with it. Each organisation's next hop is its own mail server
(a sink) that passes mail for the other domain on to the other gateway, as the Internet would;
what crossed between them is kept, so the test sees that it was encrypted.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import Identities
from .harness import B2B_CONFIG, B2B_FILTER, Gateway, Sink, content_type, message, running, verify

ALICE, BOB = "alice@a.example", "bob@b.example"


def test_two_gateways_exchange_signed_encrypted_mail_both_ways(tmp_path: Path, ids: Identities) -> None:
    mail_a, mail_b = Sink(), Sink()
    a = Gateway(tmp_path / "a", next_hop=mail_a.port, local_domains=["a.example"],
                filters={"outbound.filter": B2B_FILTER}, extra=B2B_CONFIG)
    # B's users see the partner's signature (B's policy retains it); A's users get plain mail.
    b = Gateway(tmp_path / "b", next_hop=mail_b.port, local_domains=["b.example"],
                filters={"outbound.filter": B2B_FILTER}, extra=B2B_CONFIG, signature="retain")
    mail_a.forward = {"b.example": b.port}
    mail_b.forward = {"a.example": a.port}
    for gw, me in ((a, ids.a), (b, ids.b)):
        gw.install(me)
        gw.trust(ids.ca)
    a.add_key("b.example gateway", ids.b)

    def explain() -> str:
        return "=== A\n" + a.explain() + "\n=== B\n" + b.explain()

    with running(mail_a, mail_b, a, b):
        text = "The Q3 plan is attached.\r\n"
        mid = a.send(ALICE, BOB, message(ALICE, BOB, "Q3 plan", text))
        got, rec = b.delivered(mail_b, BOB, mid)
        # What crossed the Internet was encrypted for B.
        (crossed,) = [m for m in mail_a.forwarded if m.header("Message-ID") == mid]
        assert "application/pkcs7-mime" in content_type(crossed.data)
        assert text.encode() not in crossed.data
        assert "profile partners: sign-encrypt for bob@b.example" in "\n".join(
            next(r for r in a.records(mid) if r["event"] == "delivered")["trace"]), explain()
        # Bob got it decrypted, with A's signature kept and verifiable by his own client.
        assert "multipart/signed" in content_type(got.data)
        assert text.encode() in verify(got.data, ids.ca)
        assert (got.header("X-Filterlang-SMIME") or "").startswith("decrypted; verified; signers=")
        assert ALICE in (got.header("X-Filterlang-SMIME") or "")
        trace = "\n".join(rec["trace"])
        assert "smime-inbound: decrypted; verified" in trace and "harvest: stored" in trace
        assert ALICE in b.keys("harvested")

        # The reply: B encrypts with the key it harvested; A decrypts, verifies, unwraps.
        answer = "Agreed, see you Monday.\r\n"
        rid = b.send(BOB, ALICE, message(BOB, ALICE, "Re: Q3 plan", answer))
        reply, rrec = a.delivered(mail_a, ALICE, rid)
        (crossed,) = [m for m in mail_b.forwarded if m.header("Message-ID") == rid]
        assert "application/pkcs7-mime" in content_type(crossed.data)
        assert answer.encode() not in crossed.data
        assert content_type(reply.data).startswith("text/plain")
        assert reply.data.endswith(answer.encode())
        assert (reply.header("X-Filterlang-SMIME") or "").startswith("decrypted; verified; signers=")
        assert BOB in (reply.header("X-Filterlang-SMIME") or "")
        assert "profile partners: sign-encrypt for alice@a.example" in "\n".join(
            next(r for r in b.records(rid) if r["event"] == "delivered")["trace"]), explain()
