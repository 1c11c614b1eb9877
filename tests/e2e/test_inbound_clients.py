"""Inbound S/MIME as real clients send it (issue 14), through `filterlang serve`.

- A partner's client leaves its signer certificate out of the signature (gpgsm does; RFC 5652
  5.1 allows it): the gateway finds it in its key store, where the operator added it.
- An old partner signs with an RSA-1024 key: refused (weak-key) until the operator turns on
  `[smime] legacy = true`, which reads historic algorithms (RFC 8551 Appendix B).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import Identities
from .harness import (
    Gateway,
    Identity,
    Sink,
    body_of_size,
    content_type,
    entity,
    run,
    running,
    sign,
    with_headers,
)

SMIME = """
[smime]
trust_anchors = ["trust"]
"""


@pytest.fixture(scope="module")
def org_b(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    sink = Sink()
    gw = Gateway(tmp_path_factory.mktemp("clients") / "b", next_hop=sink.port, extra=SMIME)
    gw.install(ids.b)
    gw.trust(ids.ca)
    with running(sink, gw):
        yield gw, sink


def _send(gw: Gateway, sink: Gateway | Sink, signed: bytes, sender: str, subject: str) -> str | None:
    mid = gw.send(sender, "bob@b.example", with_headers(signed, sender, "bob@b.example", subject),
                  source="127.0.0.1")
    got, _rec = gw.delivered(sink, "bob@b.example", mid)  # type: ignore[arg-type]
    return got.header("X-Filterlang-SMIME")


def test_signer_certificate_left_out_is_found_in_the_key_store(
        org_b: tuple[Gateway, Sink], ids: Identities, tmp_path: Path) -> None:
    gw, sink = org_b
    erin = Identity(tmp_path, "erin", "Erin Partner", emails=["erin@partner.example"], ca=ids.ca)
    body = body_of_size(2000, "no certificate inside")
    signed = sign(entity(body), erin, certs=False)
    assert b"Erin Partner" not in signed  # nothing of the certificate travels

    assert _send(gw, sink, signed, "erin@partner.example", "before") == "verification=failed"
    gw.add_key("erin", erin)  # the operator imports the partner's certificate
    status = _send(gw, sink, signed, "erin@partner.example", "after")
    assert status == "verified; signers=erin@partner.example"
    got = sink.to("bob@b.example")[-1]
    assert content_type(got.data).startswith("text/plain") and got.data.endswith(body)


def test_legacy_switch_reads_an_rsa_1024_signature(
        org_b: tuple[Gateway, Sink], ids: Identities, tmp_path: Path) -> None:
    gw, sink = org_b
    old = SimpleNamespace(name="old", cert=tmp_path / "old.crt.pem", key=tmp_path / "old.key.pem")
    run("openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=Old Partner",
        "-addext", "subjectAltName=email:old@partner.example",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", "extendedKeyUsage=emailProtection",
        "-keyout", old.key, "-out", tmp_path / "old.csr.pem")
    ids.ca.issue(tmp_path / "old.csr.pem", old.cert)
    signed = sign(entity(b"Minutes of 2009.\r\n"), old)  # type: ignore[arg-type]

    assert _send(gw, sink, signed, "old@partner.example", "strict") == (
        "verification=failed; signers=old@partner.example")
    gw.stop()
    gw.extra = SMIME + "legacy = true\n"
    gw.write_config()
    gw.start()
    try:
        assert _send(gw, sink, signed, "old@partner.example", "legacy") == (
            "verified; signers=old@partner.example")
    finally:
        gw.stop()
        gw.extra = SMIME
        gw.write_config()
        gw.start()
