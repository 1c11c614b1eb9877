"""Interop with gpgsm 2.2 both ways: RSA and P-256 recipients, AES-CBC and AES-GCM.

gpgsm 2.2.40 handles RSA PKCS#1 v1.5 + AES-CBC only. Every other cell is still attempted: it
skips with gpgsm's own error text when gpgsm fails in the known way, and fails if gpgsm does
anything else (so a newer gpgsm that can do it makes the test run for real).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import gpgsm_util as gu
import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from keys_util import NOW, ca, cert_pem, recipient

from smime.envelope import decrypt_content, encrypt_content
from smime.errors import DecryptionError

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(gu.MISSING is not None, reason=f"{gu.MISSING} binary not installed"),
]
CIPHERS = ["aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm"]
# What gpgsm 2.2.40 prints for the cells it cannot do (each seen by running it).
GAPS = {
    "gcm": "error getting IV: Buffer too short",  # cannot parse AuthEnvelopedData
    "ecdh-decrypt": "decrypting session key failed: Invalid session key",  # no CMS ECDH (kari)
    "ecdh-encrypt": "Wrong key usage",  # refuses a keyAgreement certificate as recipient
}


def _skip_if_gap(stderr: bytes, gap: str) -> None:
    if GAPS[gap] in stderr.decode(errors="replace"):
        pytest.skip(f"gpgsm 2.2.40 cannot do this ({gap}): {GAPS[gap]!r}")


ADDRESS = "bob@example.test"


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Bob's RSA key (keys_util) and the trusted test CA, which is also left in
    tmp_path/ca.pem; test_interop_compose_gpgsm.py imports this fixture and ADDRESS."""
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca()[1]))
    with gu.gpgsm_home(tmp_path / "gnupg", ca()[1]) as env:
        gu.import_certs(env, tmp_path, [ca()[1]])
        key, cert = recipient("rsa")
        assert isinstance(key, rsa.RSAPrivateKey)
        gu.import_rsa_key(env, tmp_path, key, cert)
        yield env


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    with gu.gpgsm_home(tmp_path / "gnupg", ca()[1]) as env:
        gu.import_certs(env, tmp_path, [ca()[1]])
        yield env


def _gpgsm_recipient(env: dict[str, str], tmp: Path, kind: str) -> x509.Certificate:
    """A recipient certificate whose private key gpgsm holds."""
    if kind == "rsa":
        key, cert = recipient("rsa")
        assert isinstance(key, rsa.RSAPrivateKey)
        gu.import_rsa_key(env, tmp, key, cert)
        return cert
    cert = gu.issue_for(gu.agent_ec_key(env, "encr"), ca(), "ec-bob@example.test", "encr", NOW)
    gu.import_certs(env, tmp, [cert])
    return cert


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_ours_to_gpgsm(tmp_path: Path, home: dict[str, str], kind: str, cipher: str) -> None:
    cert = _gpgsm_recipient(home, tmp_path, kind)
    (tmp_path / "enc.der").write_bytes(encrypt_content(b"from filterlang", [cert], cipher=cipher))
    proc = gu.run(home, ["gpgsm", *gu.LOOP, "--decrypt", str(tmp_path / "enc.der")], b"pw\n")
    if proc.returncode != 0:
        _skip_if_gap(proc.stderr, "gcm" if cipher.endswith("gcm") else "ecdh-decrypt")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"from filterlang"


@pytest.mark.parametrize(
    ("kind", "cipher_algo", "cipher"),
    [("rsa", None, "aes128-cbc"), ("rsa", "AES256", "aes256-cbc"),
     ("rsa", "2.16.840.1.101.3.4.1.46", "aes256-gcm"), ("p256", None, "aes128-cbc")],
    ids=["rsa-default", "rsa-aes256", "rsa-aes256-gcm", "p256"],
)
def test_gpgsm_to_ours(
    tmp_path: Path, home: dict[str, str], kind: str, cipher_algo: str | None, cipher: str
) -> None:
    key, cert = recipient(kind)
    gu.import_certs(home, tmp_path, [cert])
    (tmp_path / "part.txt").write_bytes(b"from gpgsm")
    extra = ["--cipher-algo", cipher_algo] if cipher_algo else []
    proc = gu.run(home, ["gpgsm", "--batch", "--armor", *extra, "--encrypt", "--recipient",
                         "bob@example.test", "-o", str(tmp_path / "enc.pem"),
                         str(tmp_path / "part.txt")])
    if proc.returncode != 0 and kind == "p256":
        _skip_if_gap(proc.stderr, "ecdh-encrypt")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = (tmp_path / "enc.pem").read_bytes().splitlines()
    der = base64.b64decode(b"".join(line for line in lines if not line.startswith(b"-----")))
    info = cms.ContentInfo.load(der)
    if cipher.endswith("gcm") and info["content_type"].native == "enveloped_data":
        # gpgsm 2.2.40 accepts the GCM OID but writes it into plain EnvelopedData with a bare
        # 16-byte IV and no tag (RFC 5084 3 wants AuthEnvelopedData + GCMParameters): that
        # is not authenticated encryption, and the decryptor refuses it like any bad input.
        alg = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
        assert alg["algorithm"].dotted == cipher_algo
        with pytest.raises(DecryptionError, match="could not be decrypted"):
            decrypt_content(der, [(key, cert)])
        return
    result = decrypt_content(der, [(key, cert)])
    assert result.content == b"from gpgsm"
    assert result.cipher == cipher
    assert result.authenticated is cipher.endswith("gcm")
