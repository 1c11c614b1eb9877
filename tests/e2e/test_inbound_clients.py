"""Inbound S/MIME as real clients send it (issue 14), through `filterlang serve`.

- A partner's client leaves its signer certificate out of the signature (gpgsm does; RFC 5652
  5.1 allows it): the gateway finds it in its key store, where the operator added it.
- An old partner signs with an RSA-1024 key: refused (weak-key) until the operator turns on
  `[smime] legacy = true`, which reads historic algorithms (RFC 8551 Appendix B).
- 3DES envelopes are read by default (flagged in the trace) and refused with
  `[smime] decrypt_3des = false`.
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

# Org B's gateway certificate (made by `filterlang cert create`) has an EC key; 3DES mail
# comes from clients of RSA days, so the gateway also holds an RSA decryption certificate.
SMIME = """
[certificates.rsa]
cert = "rsa.crt.pem"
key = "rsa.key.pem"

[smime]
trust_anchors = ["trust"]
"""


def _openssl_identity(folder: Path, name: str, email: str, bits: int, ca: object) -> SimpleNamespace:
    """A certificate and key made with openssl (RSA of `bits`), signed by `ca`."""
    ident = SimpleNamespace(name=name, cert=folder / f"{name}.crt.pem", key=folder / f"{name}.key.pem")
    run("openssl", "req", "-new", "-newkey", f"rsa:{bits}", "-nodes", "-subj", f"/CN={email}",
        "-addext", f"subjectAltName=email:{email}",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", "extendedKeyUsage=emailProtection",
        "-keyout", ident.key, "-out", folder / f"{name}.csr.pem")
    ca.issue(folder / f"{name}.csr.pem", ident.cert)  # type: ignore[attr-defined]
    return ident


@pytest.fixture(scope="module")
def org_b(ids: Identities, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink]]:
    sink = Sink()
    gw = Gateway(tmp_path_factory.mktemp("clients") / "b", next_hop=sink.port, extra=SMIME)
    gw.install(ids.b)
    gw.install(_openssl_identity(gw.root, "rsa-b", "bob@b.example", 2048, ids.ca), "rsa")  # type: ignore[arg-type]
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


def test_legacy_switches_rsa_1024_signature_and_3des_envelope(
        org_b: tuple[Gateway, Sink], ids: Identities, tmp_path: Path) -> None:
    gw, sink = org_b
    old = _openssl_identity(tmp_path, "old", "old@partner.example", 1024, ids.ca)
    signed = sign(entity(b"Minutes of 2009.\r\n"), old)  # type: ignore[arg-type]
    des3 = run("openssl", "cms", "-encrypt", "-des3", "-binary", "-crlfeol", gw.root / "rsa.crt.pem",
               input=entity(b"Budget of 2009.\r\n")).stdout.replace(b"\r\n", b"\n")
    des3 = des3.replace(b"\n", b"\r\n")

    assert _send(gw, sink, signed, "old@partner.example", "strict") == (
        "verification=failed; signers=old@partner.example")
    assert _send(gw, sink, des3, "old@partner.example", "3des read") == (
        "decrypted; unauthenticated")
    assert sink.to("bob@b.example")[-1].data.endswith(b"Budget of 2009.\r\n")
    gw.stop()
    gw.extra = SMIME + "legacy = true\ndecrypt_3des = false\n"
    gw.write_config()
    gw.start()
    try:
        assert _send(gw, sink, signed, "old@partner.example", "legacy") == (
            "verified; signers=old@partner.example")
        assert _send(gw, sink, des3, "old@partner.example", "3des refused") == (
            "decryption=failed")
        assert b"Budget of 2009." not in sink.to("bob@b.example")[-1].data
    finally:
        gw.stop()
        gw.extra = SMIME
        gw.write_config()
        gw.start()
