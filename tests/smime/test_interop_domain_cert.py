"""What we sign with a gateway domain certificate (issue 14 item 1) verifies in OpenSSL and
gpgsm: they check the signature and the chain, not the From binding. Both kinds of gateway
certificate come from `filterlang cert` alone: self-signed as `make run` makes it (pinned as a
trust anchor by the partner), and issued by an organisation CA (`cert create --ca`,
`cert sign`). Signed with `filterlang smime sign`, checked with `filterlang smime verify`."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gpgsm_util as gu
import pytest
from cryptography import x509

pytestmark = pytest.mark.interop
FILTERLANG = Path(sys.executable).parent / "filterlang"
MESSAGE = (b"From: Alice <alice@a.example>\r\nTo: <bob@b.example>\r\nSubject: Q3\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nThe Q3 plan.\r\n")


def cli(*args: str | Path, code: int = 0) -> str:
    proc = subprocess.run([str(FILTERLANG), *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module", params=["self-signed", "ca-issued"])
def signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, Path, list[Path]]:
    """(signed message, trust anchor, certificates to import) for one kind of certificate."""
    tmp = tmp_path_factory.mktemp(request.param)
    cli("cert", "create", "--cn", "a.example", "--org", "A Org", "--san-domain", "a.example",
        "--san-email", "postmaster@a.example", "--out", tmp / "gw")
    cert = tmp / "gw.crt.pem"
    anchor, chain = cert, [cert]
    if request.param == "ca-issued":
        cli("cert", "create", "--ca", "--cn", "A Org CA", "--org", "A Org", "--out", tmp / "ca")
        cli("cert", "sign", "--ca", tmp / "ca.crt.pem", "--ca-key", tmp / "ca.key.pem",
            "--csr", tmp / "gw.csr.pem", "--out", tmp / "issued")
        cert, anchor = tmp / "issued.crt.pem", tmp / "ca.crt.pem"
        chain = [anchor, cert]
    (tmp / "m.eml").write_bytes(MESSAGE)
    cli("smime", "sign", tmp / "m.eml", "--key", tmp / "gw.key.pem", "--cert", cert,
        "-o", tmp / "s.eml")
    return tmp / "s.eml", anchor, chain


def test_filterlang_binds_the_sender_by_domain_only_when_asked(
        signed: tuple[Path, Path, list[Path]]) -> None:
    message, anchor, _ = signed
    out = cli("smime", "verify", message, "--trust", anchor, code=1)
    assert "from-mismatch" in out and "domain certificates are not accepted here" in out
    res = json.loads(cli("smime", "verify", message, "--trust", anchor, "--domain-certificates",
                         "--json"))
    assert (res["verified"], res["binding"]) == (True, "domain")
    text = cli("smime", "unwrap", message, "--trust", anchor, "--domain-certificates")
    assert "binding: domain" in text and "result: VERIFIED" in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_it(signed: tuple[Path, Path, list[Path]]) -> None:
    message, anchor, _ = signed
    proc = subprocess.run(["openssl", "cms", "-verify", "-CAfile", str(anchor), "-purpose",
                           "smimesign", "-in", str(message)], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"The Q3 plan." in proc.stdout


def _split(message: bytes) -> tuple[bytes, bytes]:
    """(signed part, DER signature) of a multipart/signed message: gpgsm takes bare CMS."""
    boundary = re.search(rb'boundary="?([^";\r\n]+)"?', message)
    assert boundary
    parts = message.split(b"\r\n\r\n", 1)[1].split(b"--" + boundary.group(1))
    sig = parts[2].split(b"\r\n\r\n", 1)[1]
    return parts[1][2:-2], base64.b64decode(b"".join(sig.split()))


@pytest.mark.skipif(gu.MISSING is not None, reason=f"{gu.MISSING} is not installed")
def test_gpgsm_verifies_it(signed: tuple[Path, Path, list[Path]], tmp_path: Path) -> None:
    message, anchor, chain = signed
    part, sig = _split(message.read_bytes())
    (tmp_path / "part.txt").write_bytes(part)
    (tmp_path / "sig.p7s").write_bytes(sig)
    root = x509.load_pem_x509_certificate(anchor.read_bytes())
    with gu.gpgsm_home(tmp_path / "gnupg", root) as env:
        gu.import_certs(env, tmp_path, [x509.load_pem_x509_certificate(c.read_bytes())
                                        for c in chain])
        out = gu.run(env, ["gpgsm", "--batch", "--verify", str(tmp_path / "sig.p7s"),
                           str(tmp_path / "part.txt")])
    assert out.returncode == 0, out.stderr.decode()
    assert b"Good signature" in out.stderr and b"(dns-name a.example)" in out.stderr
