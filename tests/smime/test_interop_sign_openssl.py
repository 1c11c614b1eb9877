"""Interop with `openssl cms`: our signatures verify there, theirs verify here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pki import Issued, Pki, make_pki

from smime import TrustStore, sign, verify

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed"),
]
MSG = (
    b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: interop\r\n"
    b"Content-Type: text/plain\r\n\r\nHello from the other side.\r\n"
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def _files(tmp: Path, pki: Pki, user: Issued) -> tuple[Path, Path, Path, Path]:
    root, inter, cert, key = tmp / "root.pem", tmp / "inter.pem", tmp / "cert.pem", tmp / "k.pem"
    root.write_bytes(pki.root.pem)
    inter.write_bytes(pki.inter.pem)
    cert.write_bytes(user.pem)
    key.write_bytes(user.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return root, inter, cert, key


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_ours_to_openssl(tmp_path: Path, pki: Pki, kind: str, detached: bool) -> None:
    user = pki.user(kind=kind)
    root, _inter, _cert, _key = _files(tmp_path, pki, user)
    msg = tmp_path / "m.eml"
    msg.write_bytes(sign(MSG, user.key, user.asn1, [pki.inter.asn1], detached=detached))
    out = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(msg), "-CAfile", str(root),
         "-purpose", "smimesign"], capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert b"Hello from the other side." in out.stdout


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_openssl_to_ours(tmp_path: Path, pki: Pki, kind: str, detached: bool) -> None:
    user = pki.user(kind=kind)
    root, inter, cert, key = _files(tmp_path, pki, user)
    body = tmp_path / "body.txt"
    body.write_bytes(b"Content-Type: text/plain\r\n\r\nHello from OpenSSL.\r\n")
    cmd = ["openssl", "cms", "-sign", "-in", str(body), "-signer", str(cert), "-inkey",
           str(key), "-certfile", str(inter), "-md", "sha256",
           "-from", "alice@example.com", "-to", "bob@example.org", "-subject", "x"]
    if not detached:
        cmd.append("-nodetach")
    out = subprocess.run(cmd, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    res = verify(out.stdout, trust=TrustStore.load([root]))
    assert res.verified, res.reasons
    assert b"Hello from OpenSSL." in res.content


@pytest.mark.parametrize("direction", ["ours-to-openssl", "openssl-to-ours"])
def test_rsa_pss_both_ways(tmp_path: Path, pki: Pki, direction: str) -> None:
    """RSASSA-PSS with CMSAlgorithmProtection (ours) / whatever OpenSSL writes (theirs)."""
    user = pki.user(kind="rsa")
    root, inter, cert, key = _files(tmp_path, pki, user)
    if direction == "ours-to-openssl":
        msg = tmp_path / "m.eml"
        msg.write_bytes(sign(MSG, user.key, user.asn1, [pki.inter.asn1], rsa_padding="pss"))
        out = subprocess.run(
            ["openssl", "cms", "-verify", "-in", str(msg), "-CAfile", str(root),
             "-purpose", "smimesign"], capture_output=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr.decode()
        return
    body = tmp_path / "body.txt"
    body.write_bytes(b"Content-Type: text/plain\r\n\r\nPSS from OpenSSL.\r\n")
    out = subprocess.run(
        ["openssl", "cms", "-sign", "-in", str(body), "-signer", str(cert), "-inkey", str(key),
         "-certfile", str(inter), "-md", "sha256", "-keyopt", "rsa_padding_mode:pss",
         "-from", "alice@example.com", "-subject", "x"], capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    res = verify(out.stdout, trust=TrustStore.load([root]))
    assert res.verified, res.reasons
