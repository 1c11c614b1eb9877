"""`encrypt` and `encrypt-deferred` through `filterlang serve`: encryption profiles
(`[encryption_profiles.NAME]`) carried out with S/MIME by their sending profile.

Org B's user bob writes to carol, whose certificate the operator imported with `filterlang keys
add`, and to dave, whose key nobody has. The message filter picks the encryption profile by
subject. Rule 0 always encrypts; rule 1 ("TLS first") delivers in clear only over a TLS
session with the next hop that meets the profile's policy (STARTTLS; with `tls_verify`, a
certificate that verifies), else encrypts. The first gateway's next hop offers no STARTTLS;
the second's offers it with a certificate for 127.0.0.1 issued by the scenarios' CA.
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
    content_type,
    decrypt,
    message,
    run,
    running,
    wait_until,
)

FILTERS = """
always:
  if subject == '^always' {
      encrypt('always', 'Encrypted: $Subject', 0);
  }

nokey_bounce:
  if subject == '^no key bounce' {
      encrypt('bounce');
  }

nokey_drop:
  if subject == '^no key drop' {
      encrypt('drop');
  }

nokey_plain:
  if subject == '^no key plain' {
      encrypt('plain');
  }

on_delivery:
  if subject == '^on delivery' {
      encrypt-deferred('always', '$Subject', 0);
  }

# A later filter still runs after encrypt-deferred, and its edit is inside the encryption.
after_deferred:
  if subject == '^on delivery' {
      edit-body-text('PLACEHOLDER', 'edited after encrypt-deferred');
  }

tls_first:
  if subject == '^tls first' {
      encrypt('tls', '$Subject', 1);
  }

tls_verified:
  if subject == '^tls verified' {
      encrypt('tls-verified', '$Subject', 1);
  }

tls_untrusted:
  if subject == '^tls untrusted' {
      encrypt('tls-system-trust', '$Subject', 1);
  }
"""

CONFIG = """
[profiles.enc-bounce]
mode = "encrypt"
missing_key_action = "bounce"

[profiles.enc-drop]
mode = "encrypt"
missing_key_action = "drop"

[profiles.enc-split]
mode = "encrypt"
missing_key_action = "split"

[encryption_profiles.always]
sending_profile = "enc-bounce"

[encryption_profiles.bounce]
sending_profile = "enc-bounce"

[encryption_profiles.drop]
sending_profile = "enc-drop"

[encryption_profiles.plain]
sending_profile = "enc-split"

[encryption_profiles.tls]
sending_profile = "enc-bounce"

[encryption_profiles.tls-verified]
sending_profile = "enc-bounce"
tls_verify = true
tls_ca_file = "ca.pem"

[encryption_profiles.tls-system-trust]
sending_profile = "enc-bounce"
tls_verify = true

# Rule 1 asks the destination's own [tls.outbound] policy, raised to at least `encrypt`:
# one TLS mechanism for delivery and for "TLS first".
[tls.outbound.domains."verified.example"]
level = "verify"
ca_file = "ca.pem"

[tls.outbound.domains."strict.example"]
level = "verify"

[tls.outbound.domains."notls.example"]
level = "none"
"""

CAROL, DAVE, BOB = "carol@partner.example", "dave@partner.example", "bob@b.example"
SECRET = "The merger closes on Friday.\r\n"


def _gateway(root: Path, ids: Identities, sink: Sink) -> Gateway:
    gw = Gateway(root, next_hop=sink.port, filters={"encrypt.filter": FILTERS}, extra=CONFIG)
    (root / "ca.pem").write_bytes(ids.ca.cert.read_bytes())
    gw.add_key("carol", ids.carol)  # the operator imports the partner's certificate
    return gw


@pytest.fixture(scope="module")
def plain_hop(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    """A next hop without STARTTLS."""
    sink = Sink()
    gw = _gateway(tmp_path_factory.mktemp("encrypt") / "b", ids, sink)
    with running(sink, gw):
        yield gw, sink


@pytest.fixture(scope="module")
def tls_hop(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    """A next hop that offers STARTTLS with a certificate for 127.0.0.1 from the scenarios' CA
    (which the system's trust store does not hold)."""
    folder = tmp_path_factory.mktemp("encrypt-tls")
    key, csr, cert = folder / "hop.key.pem", folder / "hop.csr.pem", folder / "hop.crt.pem"
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", csr)
    ids.ca.issue(csr, cert)
    sink = Sink(tls=(cert, key))
    gw = _gateway(folder / "b", ids, sink)
    with running(sink, gw):
        yield gw, sink


def _copies(sink: Sink, rcpt: str, mid: str) -> list[Received]:
    return [m for m in sink.to(rcpt) if m.header("Message-ID") == mid]


def _encrypted_for_carol(got: Received, ids: Identities) -> bytes:
    """The content, after checking it arrived as S/MIME enveloped data that openssl opens
    with carol's key."""
    assert "application/pkcs7-mime" in content_type(got.data), got.data[:600]
    assert SECRET.encode().strip() not in got.data
    return decrypt(got.data, ids.carol)


def _tls_first(gw: Gateway, mid: str) -> dict[str, object]:
    return gw.wait_event(mid, "tls_first")


def test_always_encrypts_for_a_recipient_with_a_key(plain_hop: tuple[Gateway, Sink],
                                                    ids: Identities) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, CAROL, message(BOB, CAROL, "always: Q3", SECRET))
    got, rec = gw.delivered(sink, CAROL, mid)
    assert SECRET.encode() in _encrypted_for_carol(got, ids)
    assert got.header("Subject") == "Encrypted: always: Q3"  # the action's subject argument
    assert "profile enc-bounce: encrypt for carol@partner.example" in "\n".join(rec["trace"])


def test_missing_key_bounce(plain_hop: tuple[Gateway, Sink]) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, [CAROL, DAVE], message(BOB, [CAROL, DAVE], "no key bounce", SECRET))
    dsn = wait_until(f"a DSN to {BOB} about {mid}",
                     lambda: [d for d in sink.dsns(BOB) if mid.encode() in d.data],
                     explain=gw.explain)[0]
    assert b"Status: 5.7.1" in dsn.data and DAVE.encode() in dsn.data
    assert SECRET.encode().strip() not in dsn.data  # headers only: it was to leave encrypted
    assert not _copies(sink, CAROL, mid) and not _copies(sink, DAVE, mid)


def test_missing_key_drop(plain_hop: tuple[Gateway, Sink]) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, DAVE, message(BOB, DAVE, "no key drop", SECRET))
    rec = gw.wait_event(mid, "drop")
    assert rec["rcpt"] == DAVE
    probe = gw.send(BOB, "zed@elsewhere.example", message(BOB, "zed@elsewhere.example", "after"))
    gw.delivered(sink, "zed@elsewhere.example", probe)
    assert not _copies(sink, DAVE, mid)
    assert not [d for d in sink.dsns(BOB) if mid.encode() in d.data]


def test_missing_key_split_sends_plain_to_the_recipient_without_a_key(
        plain_hop: tuple[Gateway, Sink], ids: Identities) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, [CAROL, DAVE], message(BOB, [CAROL, DAVE], "no key plain", SECRET))
    to_carol, _ = gw.delivered(sink, CAROL, mid)
    to_dave, rec = gw.delivered(sink, DAVE, mid)
    assert SECRET.encode() in _encrypted_for_carol(to_carol, ids)
    assert content_type(to_dave.data).startswith("text/plain") and SECRET.encode() in to_dave.data
    assert "split, plain (no key) for dave@partner.example" in "\n".join(rec["trace"])


def test_encrypt_deferred_encrypts_after_the_other_filters(plain_hop: tuple[Gateway, Sink],
                                                           ids: Identities) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, CAROL, message(BOB, CAROL, "on delivery", SECRET + "PLACEHOLDER\r\n"))
    got, _ = gw.delivered(sink, CAROL, mid)
    content = _encrypted_for_carol(got, ids)
    assert b"edited after encrypt-deferred" in content and b"PLACEHOLDER" not in content


def test_tls_first_without_starttls_encrypts(plain_hop: tuple[Gateway, Sink],
                                             ids: Identities) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, CAROL, message(BOB, CAROL, "tls first", SECRET))
    got, _ = gw.delivered(sink, CAROL, mid)
    assert not got.tls
    assert SECRET.encode() in _encrypted_for_carol(got, ids)
    assert str(_tls_first(gw, mid)["decision"]).startswith("encrypted")


def test_tls_first_without_starttls_and_without_a_key_bounces(plain_hop: tuple[Gateway, Sink]) -> None:
    gw, sink = plain_hop
    mid = gw.send(BOB, DAVE, message(BOB, DAVE, "tls first, no key", SECRET))
    rec = gw.wait_event(mid, "bounced", DAVE)
    assert "no usable S/MIME encryption key for dave@partner.example" in str(rec["reply"])
    dsn = wait_until(f"a DSN to {BOB} about {mid}",
                     lambda: [d for d in sink.dsns(BOB) if mid.encode() in d.data],
                     explain=gw.explain)[0]
    assert SECRET.encode().strip() not in dsn.data
    assert not _copies(sink, DAVE, mid)


def test_tls_first_over_starttls_delivers_in_clear(tls_hop: tuple[Gateway, Sink]) -> None:
    gw, sink = tls_hop
    # dave has no key: in clear over TLS is what lets his copy go at all.
    mid = gw.send(BOB, DAVE, message(BOB, DAVE, "tls first", SECRET))
    got, _ = gw.delivered(sink, DAVE, mid)
    assert got.tls and SECRET.encode() in got.data
    assert _tls_first(gw, mid)["decision"] == "clear over TLS"


def test_tls_first_with_a_verified_certificate_delivers_in_clear(tls_hop: tuple[Gateway, Sink]) -> None:
    gw, sink = tls_hop
    mid = gw.send(BOB, DAVE, message(BOB, DAVE, "tls verified", SECRET))
    got, _ = gw.delivered(sink, DAVE, mid)
    assert got.tls and SECRET.encode() in got.data


def test_tls_first_with_an_unverified_certificate_encrypts(tls_hop: tuple[Gateway, Sink],
                                                           ids: Identities) -> None:
    """The profile asks for a certificate that verifies against the system's CAs, which do
    not hold the scenarios' CA: the session does not meet the policy."""
    gw, sink = tls_hop
    mid = gw.send(BOB, CAROL, message(BOB, CAROL, "tls untrusted", SECRET))
    got, _ = gw.delivered(sink, CAROL, mid)
    assert SECRET.encode() in _encrypted_for_carol(got, ids)
    assert str(_tls_first(gw, mid)["decision"]).startswith("encrypted")


def test_tls_first_asks_the_destinations_verify_policy(tls_hop: tuple[Gateway, Sink]) -> None:
    """The profile asks only for TLS, but [tls.outbound] says `verify` against ca.pem for
    verified.example: the session verifies, so the copy goes in clear over it."""
    gw, sink = tls_hop
    rcpt = "erin@verified.example"
    mid = gw.send(BOB, rcpt, message(BOB, rcpt, "tls first, verify policy", SECRET))
    got, _ = gw.delivered(sink, rcpt, mid)
    assert got.tls and SECRET.encode() in got.data
    assert _tls_first(gw, mid)["decision"] == "clear over TLS"


def test_tls_first_below_the_destinations_verify_policy_encrypts(
        tls_hop: tuple[Gateway, Sink]) -> None:
    """strict.example's policy is `verify` against the system's CAs, which the hop's
    certificate does not meet: rule 1 encrypts (here: no key, so the profile bounces) instead
    of deferring with 4.7.5 as a plain message to that domain would."""
    gw, sink = tls_hop
    rcpt = "frank@strict.example"
    mid = gw.send(BOB, rcpt, message(BOB, rcpt, "tls first, strict", SECRET))
    event = _tls_first(gw, mid)
    assert str(event["decision"]).startswith("encrypted")
    assert "TLS policy 'verify' for strict.example" in str(event["reason"])
    rec = gw.wait_event(mid, "bounced", rcpt)
    assert f"no usable S/MIME encryption key for {rcpt}" in str(rec["reply"])
    assert not _copies(sink, rcpt, mid)


def test_tls_first_to_a_destination_without_tls_encrypts_at_once(
        tls_hop: tuple[Gateway, Sink]) -> None:
    """notls.example is at level `none` (never STARTTLS): rule 1 cannot be met there, so the
    message is encrypted without trying TLS."""
    gw, sink = tls_hop
    rcpt = "gina@notls.example"
    mid = gw.send(BOB, rcpt, message(BOB, rcpt, "tls first, none", SECRET))
    event = _tls_first(gw, mid)
    assert str(event["decision"]).startswith("encrypted")
    assert "TLS policy 'none'" in str(event["reason"])
    gw.wait_event(mid, "bounced", rcpt)
    assert not _copies(sink, rcpt, mid)


def test_dkim_signature_covers_what_rule_1_delivers(ids: Identities, tmp_path: Path) -> None:
    """The message leaves the pipeline DKIM-signed in clear; when rule 1 then encrypts it at
    delivery, that signature comes off and the encrypted message is signed again: the
    delivered message carries one signature, and it verifies."""
    pem, record = rsa_key()
    (tmp_path / "dkim.pem").write_bytes(pem)
    sink = Sink()
    gw = _gateway(tmp_path / "b", ids, sink)
    gw.extra += f'\n[dkim."b.example"]\nselector = "gw"\nkey = "{tmp_path / "dkim.pem"}"\n'
    gw.write_config()
    with running(sink, gw):
        first = gw.send(BOB, CAROL, message(BOB, CAROL, "tls first, signed", SECRET))
        always = gw.send(BOB, CAROL, message(BOB, CAROL, "always: signed", SECRET))
        encrypted, _ = gw.delivered(sink, CAROL, first)
        at_once, _ = gw.delivered(sink, CAROL, always)
    assert str(_tls_first(gw, first)["decision"]).startswith("encrypted")

    def dns(name: bytes, timeout: float = 5) -> bytes:
        assert name == b"gw._domainkey.b.example."
        return record.encode()

    for got in (encrypted, at_once):
        head = got.data.split(b"\r\n\r\n", 1)[0]
        assert head.lower().count(b"\r\ndkim-signature:") + head.lower().startswith(
            b"dkim-signature:") == 1, head
        assert dkim.verify(got.data, dnsfunc=dns), head
        assert SECRET.encode() in _encrypted_for_carol(got, ids)
