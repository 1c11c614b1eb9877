"""Business to business: Org A's and Org B's gateways exchange mail both ways over SMTP.

What crosses between them is signed and encrypted; each side's users get the mail decrypted,
verified and (as configured) unsigned; B learns A's key by harvesting it from A's signed
message and uses it to encrypt the reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.pipeline.stages.smime_ops import is_smime

from .e2e_support import Capture, Org, message, pump


class Wire(Capture):
    """Stands between the gateways: records what crosses, then the test forwards it."""


@pytest.fixture
def orgs(tmp_path: Path) -> Iterator[tuple[Org, Org]]:
    a = Org(tmp_path / "a", "a.example", ("alice",))
    b = Org(tmp_path / "b", "b.example", ("bob",), signature="retain")
    a.trust(b)
    b.trust(a)
    a.route("b.example", b.port)
    b.route("a.example", a.port)
    # A's administrator imported B's gateway certificate; B knows nothing of A yet.
    a.store.add_public("b.example gateway", b.cert.pem.decode("ascii"))
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def test_exchange_both_ways_signed_and_encrypted(orgs: tuple[Org, Org]) -> None:
    a, b = orgs
    a.submit("alice@a.example", ["bob@b.example"], message("alice@a.example", "bob@b.example", "Q3 plan"))
    pump(a, b, until=lambda: bool(b.mailbox.messages))
    assert b.mailbox.messages, a.tracking() + b.tracking()
    got = b.mailbox.for_rcpt("bob@b.example")[0]
    # B received it decrypted; B's policy retains the verified signature.
    assert b"the report is attached" in got
    assert is_smime(got) == (True, False)
    assert b"X-Filterlang-SMIME: decrypted; verified; signers=" in got
    assert b"alice@a.example" in got.split(b"\r\n\r\n")[0]
    assert b"X-SMIME-Check" not in got  # verified: the filter on the failed state did not match
    # What A sent over the wire was encrypted: B's tracking saw an S/MIME message arrive.
    assert '"smime-inbound: decrypted; verified' in b.tracking()
    # B harvested alice's key from the signature.
    harvested = b.store.list_keys(kind="harvested")
    assert [k.emails for k in harvested] and "alice@a.example" in harvested[0].emails

    # The reply: B encrypts with the harvested key; A decrypts, verifies and removes the signature.
    b.submit("bob@b.example", ["alice@a.example"], message("bob@b.example", "alice@a.example", "Re: Q3 plan",
                                                           "Agreed.\r\n"))
    pump(a, b, until=lambda: bool(a.mailbox.messages))
    assert a.mailbox.messages, a.tracking() + b.tracking()
    reply = a.mailbox.for_rcpt("alice@a.example")[0]
    assert b"Agreed." in reply
    assert is_smime(reply) == (False, False)  # A removes verified signatures
    assert b"X-Filterlang-SMIME: decrypted; verified; signers=b.example,bob@b.example" in reply
    assert "profile protect: sign-encrypt for alice@a.example (cipher aes256-gcm)" in b.tracking()
    assert "smime-inbound: decrypted; verified; signers=b.example,bob@b.example (cipher aes256-gcm)" in a.tracking()


def test_what_crosses_is_encrypted(tmp_path: Path) -> None:
    """Route A's outbound mail to a plain capture instead of B: it is an S/MIME envelope."""
    a = Org(tmp_path / "a", "a.example", ("alice",))
    b = Org(tmp_path / "b", "b.example", ("bob",))
    wire = Capture()
    from aiosmtpd.controller import Controller

    from .conftest import free_port

    port = free_port()
    ctl = Controller(wire, hostname="127.0.0.1", port=port)
    ctl.start()
    a.route("b.example", port)
    a.store.add_public("b.example gateway", b.cert.pem.decode("ascii"))
    a.start()
    try:
        body = "Top secret numbers: 42.\r\n"
        a.submit("alice@a.example", ["bob@b.example"], message("alice@a.example", "bob@b.example", "s", body))
        pump(a, until=lambda: bool(wire.messages))
        sent = wire.messages[0][2]
        assert is_smime(sent) == (False, True)
        assert b"Top secret" not in sent
        assert b"Subject: s" in sent  # routing headers stay outside
    finally:
        a.stop()
        ctl.stop()


def test_second_key_change_within_48h_is_held_with_an_alert(tmp_path: Path) -> None:
    """Key-substitution guard: a newer certificate for a harvested address that arrives soon
    after the first is held for review and raises a `keystore` alert; mail still flows."""
    import datetime as dt

    from runtime.pipeline.stages.smime_ops import Signer, protect
    from tests.smime.pki import NOW, issue

    a = Org(tmp_path / "a", "a.example", ("alice",))
    b = Org(tmp_path / "b", "b.example", ("bob",), harvest_updated_keys=True)
    b.trust(a)
    b.start()
    try:
        for days in (30, 10):  # the second certificate is newer
            cert = issue("gateway.a.example", a.ca, key_usage=None, emails=["alice@a.example", "a.example"],
                         not_before=NOW - dt.timedelta(days=days))
            sealed = protect(message("alice@a.example", "bob@b.example", f"key {days}"), mode="sign-encrypt",
                             signer=Signer(cert.key, cert.cert), recipients=[b.cert.cert])  # type: ignore[arg-type]
            b.submit("alice@a.example", ["bob@b.example"], sealed, source="127.0.0.1")
        pump(b, until=lambda: len(b.mailbox.messages) == 2)
        assert len(b.mailbox.messages) == 2
        assert "harvest: stored" in b.tracking() and "harvest: held" in b.tracking()
        assert [k for k, _ in b.alerts] == ["keystore"]
        assert "held for review" in b.alerts[0][1]
    finally:
        b.stop()
