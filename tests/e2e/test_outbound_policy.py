"""Outbound policy through `filterlang serve`: a missing key (bounce, drop, split), and a
quarantine that an operator releases with `filterlang quarantine ... release`.

Org B's user bob writes to two partners: carol, whose certificate the operator imported with
`filterlang keys add`, and dave, whose key nobody has. The message filter picks the sending
profile by subject, so one gateway shows all three missing-key actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from tests.auth.zones import rsa_key

from .conftest import Identities
from .harness import (
    Gateway,
    Received,
    Sink,
    body_of_size,
    content_type,
    decrypt,
    message,
    running,
    verify,
    wait_until,
)

FILTERS = """
review:
  if subject == '^hold for review' {
      quarantine('Review');
  }

missing_key_bounce:
  if (sendergroup == 'users') and (subject == '^missing key bounce') {
      smime-gateway-deferred('enc-bounce');
  }

missing_key_drop:
  if (sendergroup == 'users') and (subject == '^missing key drop') {
      smime-gateway-deferred('enc-drop');
  }

missing_key_split:
  if (sendergroup == 'users') and (subject == '^missing key split') {
      smime-gateway-deferred('enc-split');
  }
"""

CONFIG = """
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["trust"]

[quarantines.Review]

[profiles.enc-bounce]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "bounce"

[profiles.enc-drop]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "drop"

[profiles.enc-split]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "split"
"""

CAROL, DAVE, BOB = "carol@partner.example", "dave@partner.example", "bob@b.example"
SECRET = "The merger closes on Friday.\r\n"


@pytest.fixture(scope="module")
def org_b(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    sink = Sink()
    gw = Gateway(tmp_path_factory.mktemp("outbound") / "b", next_hop=sink.port,
                 filters={"outbound.filter": FILTERS}, extra=CONFIG)
    gw.install(ids.b)
    gw.trust(ids.ca)
    gw.add_key("carol", ids.carol)  # the operator imports the partner's certificate
    with running(sink, gw):
        yield gw, sink


def _copies(sink: Sink, rcpt: str, mid: str) -> list[Received]:
    return [m for m in sink.to(rcpt) if m.header("Message-ID") == mid]


def _dsn(gw: Gateway, sink: Sink, sender: str, mid: str) -> Received:
    """The one DSN to `sender` about the message with this Message-ID."""
    got = wait_until(f"a DSN to {sender} about {mid}",
                     lambda: [d for d in sink.dsns(sender) if mid.encode() in d.data], explain=gw.explain)
    assert len(got) == 1, got
    return got[0]


def test_missing_key_bounce_returns_the_message_and_sends_nothing(org_b: tuple[Gateway, Sink]) -> None:
    gw, sink = org_b
    mid = gw.send(BOB, [CAROL, DAVE], message(BOB, [CAROL, DAVE], "missing key bounce", SECRET))
    dsn = _dsn(gw, sink, BOB, mid)
    # One DSN, headers only (RFC 3462 text/rfc822-headers), naming the recipient without a key.
    assert b"Status: 5.7.1" in dsn.data
    assert DAVE.encode() in dsn.data
    assert b"text/rfc822-headers" in dsn.data
    assert SECRET.encode().strip() not in dsn.data
    # Nobody got a copy, encrypted or not.
    assert not _copies(sink, CAROL, mid) and not _copies(sink, DAVE, mid)
    bounced = [r for r in gw.records(mid) if r["event"] == "bounced"]
    assert DAVE in {r["rcpt"] for r in bounced}
    assert not [r for r in gw.records(mid) if r["event"] == "delivered"]


def test_missing_key_drop_delivers_nothing_and_says_so(org_b: tuple[Gateway, Sink]) -> None:
    gw, sink = org_b
    mid = gw.send(BOB, [CAROL, DAVE], message(BOB, [CAROL, DAVE], "missing key drop", SECRET))
    rec = gw.wait_event(mid, "drop")
    assert "enc-drop" in "\n".join(rec.get("trace", []))
    # A later message through the same queue arrives, so the dropped one had its turn.
    probe = gw.send(BOB, "zed@elsewhere.example", message(BOB, "zed@elsewhere.example", "after drop"))
    gw.delivered(sink, "zed@elsewhere.example", probe)
    assert not _copies(sink, CAROL, mid) and not _copies(sink, DAVE, mid)
    assert not [d for d in sink.dsns(BOB) if mid.encode() in d.data]
    assert not [r for r in gw.records(mid) if r["event"] in ("delivered", "bounced")]


@pytest.mark.parametrize("size", [0, 1024 * 1024], ids=["small", "1MB"])
def test_missing_key_split_encrypts_for_carol_and_signs_for_dave(
        org_b: tuple[Gateway, Sink], ids: Identities, size: int) -> None:
    """Above 256 KB the queue process signs and encrypts in a thread: the same result."""
    gw, sink = org_b
    body = SECRET.encode() + body_of_size(size, "appendix")
    mid = gw.send(BOB, [CAROL, DAVE], message(BOB, [CAROL, DAVE], f"missing key split {size}", body))
    to_carol, rec_carol = gw.delivered(sink, CAROL, mid)
    to_dave, rec_dave = gw.delivered(sink, DAVE, mid)
    assert to_carol.rcpts == [CAROL] and to_dave.rcpts == [DAVE]  # two copies
    # Carol's copy: encrypted for her key alone, signed by Org B inside.
    assert "application/pkcs7-mime" in content_type(to_carol.data)
    assert SECRET.encode() not in to_carol.data
    assert verify(decrypt(to_carol.data, ids.carol), ids.ca).endswith(body)
    # Dave's copy: not encrypted (no key), but still signed by Org B.
    assert "multipart/signed" in content_type(to_dave.data)
    assert verify(to_dave.data, ids.ca).endswith(body)
    assert "profile enc-split: split, signed only (no key) for dave@partner.example" in "\n".join(rec_dave["trace"])
    assert "profile enc-split: sign-encrypt for carol@partner.example" in "\n".join(rec_carol["trace"])
    assert not sink.dsns(BOB) or not [d for d in sink.dsns(BOB) if mid.encode() in d.data]


def test_quarantine_then_release_by_the_operator(org_b: tuple[Gateway, Sink]) -> None:
    gw, sink = org_b
    rcpt = "zed@elsewhere.example"
    mid = gw.send(BOB, rcpt, message(BOB, rcpt, "hold for review: Q3 numbers"))
    rec = gw.wait_event(mid, "quarantine")
    assert rec["quarantine"] == "Review"
    qid = rec["queue_id"]
    listing = gw.cli("quarantine", "list", "Review")
    assert qid in listing, listing
    assert mid in gw.cli("quarantine", "show", "Review", qid)
    assert not _copies(sink, rcpt, mid)

    assert f"released {qid}" in gw.cli("quarantine", "release", "Review", qid)
    got, delivered = gw.delivered(sink, rcpt, mid)
    assert got.header("Subject") == "hold for review: Q3 numbers"
    # It re-entered delivery: the filter that parked it did not run again.
    assert qid not in gw.cli("quarantine", "list", "Review")
    assert [r["event"] for r in gw.records(mid)].count("quarantine") == 1


def test_released_outgoing_mail_leaves_dkim_signed(tmp_path: Path) -> None:
    """Outgoing mail parked in a quarantine missed the DKIM signing (only what leaves is
    signed); released by the operator, it leaves signed, and the signature verifies."""
    pem, record = rsa_key()
    (tmp_path / "dkim.pem").write_bytes(pem)
    sink = Sink()
    gw = Gateway(tmp_path / "b", next_hop=sink.port, filters={"outbound.filter": FILTERS},
                 extra=f'[quarantines.Review]\n[dkim."b.example"]\nselector = "gw"\n'
                       f'key = "{tmp_path / "dkim.pem"}"\n')
    rcpt = "zed@elsewhere.example"
    with running(sink, gw):
        mid = gw.send(BOB, rcpt, message(BOB, rcpt, "hold for review: signed on release"))
        qid = gw.wait_event(mid, "quarantine")["queue_id"]
        held = gw.cli("quarantine", "show", "Review", qid)
        assert "DKIM-Signature" not in held.split("\n\n")[0]
        assert f"released {qid}" in gw.cli("quarantine", "release", "Review", qid)
        got, _ = gw.delivered(sink, rcpt, mid)
    assert got.data.startswith(b"DKIM-Signature:"), got.data[:300]
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: record.encode())
