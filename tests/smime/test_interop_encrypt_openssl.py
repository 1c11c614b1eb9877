"""Interop with `openssl cms`: our encrypt -> their decrypt, their encrypt -> our decrypt."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from keys_util import cert_pem, key_pem, recipient

from smime.envelope import decrypt, encrypt

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed"),
]

MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: interop\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello from filterlang.\r\n"
)
# OpenSSL 3.0 does AES-GCM (AuthEnvelopedData) but only with RSA/EC recipients it knows.
CASES = [
    (kind, cipher, padding)
    for kind in ("rsa", "p256", "p384")
    for cipher in ("aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm")
    for padding in (("pkcs1v15", "oaep") if kind == "rsa" else ("pkcs1v15",))
]


def _files(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    key, cert = recipient(kind)
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_file.write_bytes(key_pem(key))
    cert_file.write_bytes(cert_pem(cert))
    return key_file, cert_file


@pytest.mark.parametrize(("kind", "cipher", "padding"), CASES)
def test_ours_to_openssl(tmp_path: Path, kind: str, cipher: str, padding: str) -> None:
    key_file, cert_file = _files(tmp_path, kind)
    (tmp_path / "enc.eml").write_bytes(
        encrypt(MESSAGE, [recipient(kind)[1]], cipher=cipher, rsa_padding=padding)
    )
    proc = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(tmp_path / "enc.eml"), "-inkey",
         str(key_file), "-recip", str(cert_file)],
        capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Hello from filterlang." in proc.stdout
    assert b"Content-Type: text/plain" in proc.stdout


@pytest.mark.parametrize(("kind", "cipher", "padding"), CASES)
def test_openssl_to_ours(tmp_path: Path, kind: str, cipher: str, padding: str) -> None:
    key_file, cert_file = _files(tmp_path, kind)
    part = tmp_path / "part.txt"
    part.write_bytes(b"Content-Type: text/plain\r\n\r\nHello from OpenSSL.\r\n")
    command = ["openssl", "cms", "-encrypt", "-" + cipher.replace("aes", "aes-"), "-in", str(part), "-out",
               str(tmp_path / "enc.eml")]
    if padding == "oaep":
        command += ["-recip", str(cert_file), "-keyopt", "rsa_padding_mode:oaep"]
    else:
        command += [str(cert_file)]
    subprocess.run(command, capture_output=True, timeout=60, check=True)
    key, cert = recipient(kind)
    result = decrypt((tmp_path / "enc.eml").read_bytes(), [(key, cert)])
    assert b"Hello from OpenSSL." in result.content
    assert result.cipher == cipher
    assert result.authenticated is cipher.endswith("gcm")


def test_openssl_keyid_recipient_and_two_recipients(tmp_path: Path) -> None:
    bob_key, bob = recipient("rsa", "bob")
    carol_key, carol = recipient("p256", "carol")
    (tmp_path / "bob.pem").write_bytes(cert_pem(bob))
    (tmp_path / "carol.pem").write_bytes(cert_pem(carol))
    part = tmp_path / "part.txt"
    part.write_bytes(b"two of us")
    subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-256-cbc", "-keyid", "-binary", "-in", str(part),
         "-out", str(tmp_path / "enc.eml"), str(tmp_path / "bob.pem"), str(tmp_path / "carol.pem")],
        capture_output=True, timeout=60, check=True,
    )
    message = (tmp_path / "enc.eml").read_bytes()
    assert decrypt(message, [(bob_key, bob)]).content == b"two of us"
    assert decrypt(message, [(carol_key, carol)]).content == b"two of us"
