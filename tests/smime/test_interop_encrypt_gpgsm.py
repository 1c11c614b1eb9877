"""Interop with gpgsm 2.2 (RSA PKCS#1 v1.5 + AES-CBC: it reads neither GCM nor OAEP)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from keys_util import ca, cert_pem, key_pem, recipient

from smime.envelope import decrypt_content, encrypt_content

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("gpgsm") is None or shutil.which("gpgconf") is None
        or shutil.which("openssl") is None,
        reason="gpgsm, gpgconf or openssl binary not installed",
    ),
]
ADDRESS = "bob@example.test"


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throw-away GNUPGHOME holding Bob's key, the test CA trusted; its agent is stopped."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpgsm.conf").write_text("disable-crl-checks\n")
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    fingerprint = ca()[1].fingerprint(hashes.SHA1()).hex().upper()
    (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
    key, cert = recipient("rsa")
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    (tmp_path / "c.pem").write_bytes(cert_pem(cert))
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca()[1]))
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-certfile",
         "ca.pem", "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1",
         "-passout", "pass:pw", "-out", "b.p12"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )
    env = dict(os.environ, GNUPGHOME=str(home))
    try:
        subprocess.run(
            ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
             "--import", str(tmp_path / "b.p12")],
            input=b"pw\n", env=env, check=True, capture_output=True, timeout=60,
        )
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True,
                       timeout=30, check=False)


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-cbc"])
def test_ours_to_gpgsm(tmp_path: Path, gnupghome: dict[str, str], cipher: str) -> None:
    der = encrypt_content(b"from filterlang", [recipient("rsa")[1]], cipher=cipher)
    (tmp_path / "enc.der").write_bytes(der)
    proc = subprocess.run(
        ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--decrypt",
         str(tmp_path / "enc.der")],
        input=b"pw\n", env=gnupghome, capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"from filterlang"


def test_gpgsm_to_ours(tmp_path: Path, gnupghome: dict[str, str]) -> None:
    (tmp_path / "part.txt").write_bytes(b"from gpgsm")
    subprocess.run(
        ["gpgsm", "--batch", "--armor", "--encrypt", "--recipient", ADDRESS, "-o",
         str(tmp_path / "enc.pem"), str(tmp_path / "part.txt")],
        env=gnupghome, capture_output=True, timeout=60, check=True,
    )
    lines = (tmp_path / "enc.pem").read_bytes().splitlines()
    der = base64.b64decode(b"".join(line for line in lines if not line.startswith(b"-----")))
    result = decrypt_content(der, [recipient("rsa")])
    assert result.content == b"from gpgsm"
    assert result.cipher.endswith("cbc") and not result.authenticated
