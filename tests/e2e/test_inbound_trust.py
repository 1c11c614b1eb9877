"""No "verified" for what the signature does not cover, through `filterlang serve`.

Org B's gateway gets mail that carries a signature but must not be shown as verified: a signer
no trust anchor vouches for (a self-signed certificate that claims carol's address), carol's
real signature under someone else's From, and carol's signed part beside text she never
signed. Each is delivered (filters decide, not the S/MIME stage), none says "verified", and
no key is harvested from a signature that did not verify.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import Identities
from .harness import (
    Gateway,
    Identity,
    Sink,
    entity,
    fingerprint,
    running,
    sign,
    with_headers,
)

CONFIG = """
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["trust"]
"""

FLAG = """
mark_unverified:
  if smime-gateway-message and not smime-gateway-verified {
      insert-header('X-SMIME-Check', 'failed');
  }
"""

VERIFIED = re.compile(r"(^|;\s*)verified\b")


@pytest.fixture(scope="module")
def org_b(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    sink = Sink()
    gw = Gateway(tmp_path_factory.mktemp("trust") / "b", next_hop=sink.port,
                 filters={"flag.filter": FLAG}, extra=CONFIG)
    gw.install(ids.b)
    gw.trust(ids.ca)
    with running(sink, gw):
        yield gw, sink


@pytest.fixture(scope="module")
def mallory(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Identity:
    """A self-signed certificate that claims carol's address: no CA vouches for it."""
    return Identity(tmp_path_factory.mktemp("mallory"), "mallory", "Carol Partner",
                    emails=["carol@partner.example"])


def _mixed(signed_part: bytes, extra_text: bytes) -> bytes:
    boundary = "mixed-boundary-e2e"
    return (f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n").encode() + signed_part + (
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n").encode() + extra_text + (
        f"\r\n--{boundary}--\r\n").encode()


@pytest.mark.parametrize("case", [
    pytest.param("untrusted signer"),
    pytest.param("From is not the signer"),
    "signed part beside unsigned text",  # not S/MIME as a whole: no path validation, no hold
])
def test_no_verified_for_what_the_signature_does_not_cover(
        org_b: tuple[Gateway, Sink], ids: Identities, mallory: Identity, case: str) -> None:
    gw, sink = org_b
    text = b"Please pay invoice 7 to the new account.\r\n"
    sender = "carol@partner.example"
    if case == "untrusted signer":
        wire = sign(entity(text), mallory)
    elif case == "From is not the signer":
        sender = "ceo@partner.example"
        wire = sign(entity(text), ids.carol)
    else:
        wire = _mixed(sign(entity(b"Hello from Carol.\r\n"), ids.carol), text)
    mid = gw.send(sender, "bob@b.example", with_headers(wire, sender, "bob@b.example", case),
                  source="127.0.0.1")
    got, rec = gw.delivered(sink, "bob@b.example", mid)
    assert text in got.data  # delivered: filters decide what to do with it
    status = got.header("X-Filterlang-SMIME") or ""
    trace = rec["trace"]
    assert not VERIFIED.search(status), status
    assert not [t for t in trace if t.startswith("smime-inbound:") and VERIFIED.search(t[15:])], trace
    if case == "signed part beside unsigned text":
        # Not an S/MIME message as a whole (RFC 8551 3.8 covers the top level only): nothing
        # is claimed for it, and the signed part inside stays as it came.
        assert not [t for t in trace if t.startswith("smime-inbound:")], trace
        assert b"application/pkcs7-signature" in got.data
    else:
        reason = "untrusted" if case == "untrusted signer" else "from-mismatch"
        assert status == "verification=failed; signers=carol@partner.example", status
        assert any(t.startswith(f"smime-inbound: {reason}:") for t in trace), trace
        assert "harvest: skipped (the signature did not verify)" in trace
        assert got.header("X-SMIME-Check") == "failed"  # what filters see
    assert fingerprint(mallory)[:16] not in gw.keys("harvested")
