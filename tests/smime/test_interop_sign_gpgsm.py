"""Interop with gpgsm: our detached and opaque signatures verify there (throwaway GNUPGHOME)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pki import Pki, make_pki

from smime import TrustStore, sign_content, verify_content

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("gpgsm") is None, reason="gpgsm binary not installed"),
]
CONTENT = b"Content-Type: text/plain\r\n\r\nHello gpgsm.\r\n"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def home(tmp_path: Path, pki: Pki) -> Iterator[dict[str, str]]:
    (tmp_path / "gpgsm.conf").write_text("disable-crl-checks\n")
    (tmp_path / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    fpr = pki.root.cert.fingerprint(hashes.SHA1()).hex(":").upper()  # gpgsm's trustlist format
    (tmp_path / "trustlist.txt").write_text(f"{fpr} S relax\n")
    env = dict(os.environ, GNUPGHOME=str(tmp_path))
    try:
        yield env
    finally:
        # Stop the agents gpgsm started for this GNUPGHOME only.
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_ours_to_gpgsm(
    tmp_path: Path, pki: Pki, home: dict[str, str], kind: str, detached: bool
) -> None:
    user = pki.user(kind=kind)
    for name, issued in (("root", pki.root), ("inter", pki.inter), ("user", user)):
        (tmp_path / f"{name}.pem").write_bytes(issued.pem)
        subprocess.run(["gpgsm", "--batch", "--import", str(tmp_path / f"{name}.pem")],
                       env=home, capture_output=True, timeout=60, check=True)
    (tmp_path / "part.txt").write_bytes(CONTENT)
    (tmp_path / "sig.p7s").write_bytes(
        sign_content(CONTENT, user.key, user.asn1, [pki.inter.asn1], detached=detached)
    )
    cmd = ["gpgsm", "--batch", "--output", str(tmp_path / "out.txt"), "--verify",
           str(tmp_path / "sig.p7s")]
    if detached:
        cmd.append(str(tmp_path / "part.txt"))
    out = subprocess.run(cmd, env=home, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert b"Good signature" in out.stderr


def test_gpgsm_to_ours(tmp_path: Path, pki: Pki, home: dict[str, str]) -> None:
    # RSA only: gpgsm 2.2.40 crashes (SIGSEGV) importing an EC key from PKCS#12.
    user = pki.user(kind="rsa")
    for name, issued in (("root", pki.root), ("inter", pki.inter)):
        (tmp_path / f"{name}.pem").write_bytes(issued.pem)
        subprocess.run(["gpgsm", "--batch", "--import", str(tmp_path / f"{name}.pem")],
                       env=home, capture_output=True, timeout=60, check=True)
    # gpgsm 2.2 only reads the legacy PKCS#12 profile (smime.md 13).
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(b"pw")
    )
    p12 = tmp_path / "user.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(b"u", user.key, user.cert, None, enc))
    loop = ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    subprocess.run([*loop, "--import", str(p12)], env=home, input=b"pw\n",
                   capture_output=True, timeout=60, check=True)
    (tmp_path / "part.txt").write_bytes(CONTENT)
    out = subprocess.run(
        [*loop, "--detach-sign", "--local-user", "alice@example.com", "--output",
         str(tmp_path / "sig.p7s"), str(tmp_path / "part.txt")],
        env=home, input=b"pw\n", capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    res = verify_content((tmp_path / "sig.p7s").read_bytes(), CONTENT,
                         trust=TrustStore((pki.root.asn1,)))
    assert res.verified, res.reasons
