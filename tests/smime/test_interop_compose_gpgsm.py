"""Layered interop with gpgsm 2.2 (RSA, AES-CBC: it reads neither GCM nor OAEP)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from keys_util import ca, recipient
from test_interop_encrypt_gpgsm import ADDRESS, gnupghome, pytestmark  # noqa: F401, F811

from smime import Signer, TrustStore, protect, unwrap

MSG = (
    b"From: bob@example.test\r\nTo: bob@example.test\r\nSubject: layered\r\n"
    b"Content-Type: text/plain\r\n\r\nSigned and sealed.\r\n"
)
GPG = ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]


def _body_der(entity: bytes) -> bytes:
    body = entity.replace(b"\r\n", b"\n").partition(b"\n\n")[2]
    return base64.b64decode(b"".join(body.split()))


def test_ours_sign_encrypt_to_gpgsm(
    tmp_path: Path, gnupghome: dict[str, str]  # noqa: F811
) -> None:
    key, cert = recipient("rsa")
    me = Signer(key, cert, (ca()[1],))  # type: ignore[arg-type]
    out = protect(MSG, mode="sign-encrypt", signer=me, recipients=[cert],  # type: ignore[list-item]
                  cipher="aes128-cbc", form="opaque")
    (tmp_path / "enc.der").write_bytes(_body_der(out))
    dec = subprocess.run([*GPG, "--decrypt", str(tmp_path / "enc.der")], input=b"pw\n",
                         env=gnupghome, capture_output=True, timeout=60, check=False)
    assert dec.returncode == 0, dec.stderr.decode()
    (tmp_path / "signed.der").write_bytes(_body_der(dec.stdout))
    ver = subprocess.run([*GPG, "--verify", "--output", str(tmp_path / "text"),
                          str(tmp_path / "signed.der")], input=b"pw\n", env=gnupghome,
                         capture_output=True, timeout=60, check=False)
    assert ver.returncode == 0, ver.stderr.decode()
    assert b"Signed and sealed." in (tmp_path / "text").read_bytes()


def test_gpgsm_sign_then_encrypt_to_ours(
    tmp_path: Path, gnupghome: dict[str, str]  # noqa: F811
) -> None:
    (tmp_path / "part.txt").write_bytes(b"Content-Type: text/plain\r\n\r\nfrom gpgsm\r\n")
    subprocess.run([*GPG, "--sign", "--local-user", ADDRESS, "-o", str(tmp_path / "s.der"),
                    str(tmp_path / "part.txt")], input=b"pw\n", env=gnupghome,
                   capture_output=True, timeout=60, check=True)
    der = (tmp_path / "s.der").read_bytes()
    signed = (
        b"From: bob@example.test\r\nSubject: from gpgsm\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )
    key, cert = recipient("rsa")
    enc = protect(signed, mode="encrypt", recipients=[cert],  # type: ignore[list-item]
                  cipher="aes256-cbc")
    res = unwrap(enc, keys=[(key, cert)],  # type: ignore[list-item]
                 trust=TrustStore.load([tmp_path / "ca.pem"]))
    assert [layer.kind for layer in res.layers] == ["encrypted", "signed"]
    assert res.verified, res.errors
    assert res.content.endswith(b"\r\n\r\nfrom gpgsm\r\n")
