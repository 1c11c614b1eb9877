"""Interop with gpgsm both ways, RSA and P-256, detached and opaque (throwaway GNUPGHOME)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import gpgsm_util as gu
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
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
    with gu.gpgsm_home(tmp_path / "gnupg", pki.root.cert) as env:
        yield env


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


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_gpgsm_to_ours(tmp_path: Path, pki: Pki, kind: str, detached: bool) -> None:
    if gu.MISSING:
        pytest.skip(f"{gu.MISSING} binary not installed")
    with gu.gpgsm_home(tmp_path / "g", pki.root.cert) as env:
        gu.import_certs(env, tmp_path, [pki.root.cert, pki.inter.cert])
        if kind == "rsa":
            user = pki.user(kind="rsa")
            assert isinstance(user.key, rsa.RSAPrivateKey)
            gu.import_rsa_key(env, tmp_path, user.key, user.cert)
            address = "alice@example.com"
        else:
            # See gpgsm_util: the EC key is made inside the agent, the certificate by our CA.
            address = "ec-signer@example.com"
            public = gu.agent_ec_key(env, "sign")
            cert = gu.issue_for(public, (pki.inter.key, pki.inter.cert), address, "sign",
                                dt.datetime.now(dt.UTC))
            gu.import_certs(env, tmp_path, [cert])
        (tmp_path / "part.txt").write_bytes(CONTENT)
        out = gu.run(env, ["gpgsm", *gu.LOOP, "--detach-sign" if detached else "--sign",
                           "--local-user", address, "--output", str(tmp_path / "sig.p7s"),
                           str(tmp_path / "part.txt")], b"pw\n")
        assert out.returncode == 0, out.stderr.decode()
    res = verify_content((tmp_path / "sig.p7s").read_bytes(), CONTENT if detached else None,
                         trust=TrustStore((pki.root.asn1,)))
    assert res.verified, res.reasons
    assert res.content == CONTENT
    assert res.form == ("detached" if detached else "opaque")
    assert res.signers[0].certificate is not None
    assert res.signers[0].certificate.public_key.algorithm == ("rsa" if kind == "rsa" else "ec")
