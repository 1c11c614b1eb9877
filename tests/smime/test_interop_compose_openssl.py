"""Layered interop with `openssl cms`: our sign-encrypt / triple -> openssl decrypt then verify;
openssl sign then encrypt -> our `unwrap`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from compose_util import MSG, ca, recipient, signer, user
from keys_util import cert_pem, key_pem

from smime import TrustStore, protect, unwrap

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed"),
]
TEXT = b"Revenue is up."


def _cms(*args: str, data: bytes) -> bytes:
    proc = subprocess.run(["openssl", "cms", *args], input=data, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _write(tmp: Path, kind: str) -> dict[str, str]:
    key, cert = recipient(kind)
    files = {"rkey": key_pem(key), "rcert": cert_pem(cert), "root": ca().root.pem,
             "inter": ca().inter.pem, "skey": key_pem(user(kind_of(kind)).key),
             "scert": user(kind_of(kind)).pem}
    for name, data in files.items():
        (tmp / f"{name}.pem").write_bytes(data)
    return {name: str(tmp / f"{name}.pem") for name in files}


def kind_of(rkind: str) -> str:
    return {"rsa": "rsa2048"}.get(rkind, rkind)


def _decrypt(f: dict[str, str], data: bytes) -> bytes:
    return _cms("-decrypt", "-inkey", f["rkey"], "-recip", f["rcert"], data=data)


def _verify(f: dict[str, str], data: bytes) -> bytes:
    return _cms("-verify", "-CAfile", f["root"], "-purpose", "smimesign", data=data)


@pytest.mark.parametrize("form", ["detached", "opaque"])
@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-gcm"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
@pytest.mark.parametrize("mode", ["sign-encrypt", "triple"])
def test_ours_to_openssl(tmp_path: Path, mode: str, kind: str, cipher: str,
                         form: str) -> None:
    f = _write(tmp_path, kind)
    out = protect(MSG, mode=mode, signer=signer(kind_of(kind)), recipients=[recipient(kind)[1]],
                  cipher=cipher, form=form)
    if mode == "triple":
        out = _verify(f, out)  # outer signature over the envelope entity
    inner = _decrypt(f, out)
    assert b"Content-Type: " in inner
    shown = _verify(f, inner)
    assert b"charset=utf-8" in shown and b"Subject" not in shown  # content headers only


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("cipher", ["-aes256", "-aes-128-gcm"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_openssl_to_ours(tmp_path: Path, kind: str, cipher: str, detached: bool) -> None:
    f = _write(tmp_path, kind)
    sign = ["-sign", "-signer", f["scert"], "-inkey", f["skey"], "-certfile", f["inter"],
            "-md", "sha256"]
    if not detached:
        sign.append("-nodetach")
    signed = _cms(*sign, data=b"Content-Type: text/plain\r\n\r\n" + TEXT + b"\r\n")
    enc = _cms("-encrypt", cipher, "-from", "alice@example.com", "-to", "bob@example.test",
               "-subject", "from openssl", f["rcert"], data=signed)
    res = unwrap(enc, keys=[recipient(kind)], trust=TrustStore((ca().root.asn1,)))
    assert [layer.kind for layer in res.layers] == ["encrypted", "signed"]
    assert res.verified, res.errors
    assert res.layers[0].authenticated is ("gcm" in cipher)
    head, _, body = res.content.partition(b"\r\n\r\n")
    assert b"From: alice@example.com" in head and b"Subject: from openssl" in head
    assert head.count(b"MIME-Version") == 1 and body == TEXT + b"\r\n"
