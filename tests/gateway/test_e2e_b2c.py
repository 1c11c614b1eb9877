"""Business to consumer: the consumer's own S/MIME client is played by `openssl cms` and
`gpgsm`. They decrypt and verify what the gateway sends; the gateway decrypts and verifies what
they sign and encrypt, and the internal user gets it unsigned and unencrypted.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from tests.smime.pki import issue

from .e2e_support import Org, key_pem, message, pump

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]
CAROL = "carol@home.example"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Org, Path]]:
    """Org A's gateway, carol's certificate known to it, carol's files in `home`."""
    home = tmp_path / "home"
    home.mkdir()
    ca = issue("Consumer CA", ca=True)
    carol = issue(CAROL, ca, emails=[CAROL], key_usage=None)
    (home / "carol.crt").write_bytes(carol.pem)
    (home / "carol.key").write_bytes(key_pem(carol.key))
    (home / "ca.pem").write_bytes(ca.pem)
    org = Org(tmp_path / "a", "a.example", ("alice",), cipher="aes256-cbc")  # gpgsm reads no GCM
    (org.root / "trust" / "consumer.pem").write_bytes(ca.pem)
    (home / "org-ca.pem").write_bytes(org.ca.pem)
    (home / "org.crt").write_bytes(org.cert.pem)
    org.store.add_public(CAROL, carol.pem.decode("ascii"))
    from aiosmtpd.controller import Controller

    from .conftest import free_port
    from .e2e_support import Capture

    inbox, port = Capture(), free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    org.route("home.example", port)
    org.start()
    org.consumer_inbox = inbox  # type: ignore[attr-defined]
    yield org, home
    org.stop()
    ctl.stop()


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["openssl", "cms", *args], cwd=cwd, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def sent_to_carol(org: Org, home: Path) -> Path:
    body = "Your contract is ready.\r\n"
    org.submit("alice@a.example", [CAROL], message("alice@a.example", CAROL, "contract", body))
    inbox = org.consumer_inbox  # type: ignore[attr-defined]
    pump(org, until=lambda: bool(inbox.messages))
    path = home / "got.eml"
    path.write_bytes(inbox.messages[0][2])
    assert b"contract is ready" not in path.read_bytes()
    return path


def test_openssl_decrypts_and_verifies_what_the_gateway_sends(world: tuple[Org, Path]) -> None:
    org, home = world
    sent_to_carol(org, home)
    openssl("-decrypt", "-in", "got.eml", "-inkey", "carol.key", "-recip", "carol.crt", "-out", "inner.eml",
            cwd=home)
    out = openssl("-verify", "-in", "inner.eml", "-CAfile", "org-ca.pem", "-purpose", "smimesign", cwd=home)
    assert b"Your contract is ready." in out.stdout
    assert b"Verification successful" in out.stderr


def test_gateway_decrypts_and_verifies_what_openssl_produces(world: tuple[Org, Path]) -> None:
    org, home = world
    (home / "part.txt").write_bytes(b"Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned by carol.\r\n")
    openssl("-sign", "-binary", "-in", "part.txt", "-signer", "carol.crt", "-inkey", "carol.key",
            "-md", "sha256", "-out", "signed.eml", cwd=home)
    openssl("-encrypt", "-binary", "-aes-256-gcm", "-in", "signed.eml", "-out", "enc.eml",
            "-from", CAROL, "-to", "alice@a.example", "-subject", "from carol", "org.crt", cwd=home)
    wire = re.sub(rb"\r?\n", b"\r\n", (home / "enc.eml").read_bytes())  # openssl writes LF
    org.submit(CAROL, ["alice@a.example"], wire, source="127.0.0.1")
    pump(org, until=lambda: bool(org.mailbox.messages))
    got = org.mailbox.for_rcpt("alice@a.example")[0]
    assert b"Signed by carol." in got
    assert b"X-Filterlang-SMIME: decrypted; verified; signers=carol@home.example" in got
    assert b"pkcs7" not in got.lower()  # unsigned and unencrypted for the internal user
    assert b"Subject: from carol" in got


@pytest.fixture
def gnupghome(world: tuple[Org, Path]) -> Iterator[dict[str, str]]:
    if shutil.which("gpgsm") is None or shutil.which("gpgconf") is None:
        pytest.skip("gpgsm is not installed")
    org, home = world
    gh = home / "gnupg"
    gh.mkdir(mode=0o700)
    (gh / "gpgsm.conf").write_text("disable-crl-checks\n")
    (gh / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    from cryptography import x509

    fprs = [x509.load_pem_x509_certificate((home / f).read_bytes()).fingerprint(hashes.SHA1()).hex().upper()
            for f in ("ca.pem", "org-ca.pem")]
    (gh / "trustlist.txt").write_text("".join(f"{f} S relax\n" for f in fprs))
    env = dict(os.environ, GNUPGHOME=str(gh))
    gpgsm = ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--import"]
    try:
        # gpgsm 2.2.40 mis-reads some PKCS#12 files depending on their random salt and IV
        # ("encryptedData error ... possibly bad passphrase"): export again and retry.
        for _ in range(5):
            subprocess.run(["openssl", "pkcs12", "-export", "-inkey", "carol.key", "-in", "carol.crt",
                            "-certfile", "ca.pem", "-keypbe", "PBE-SHA1-3DES", "-certpbe",
                            "PBE-SHA1-3DES", "-macalg", "sha1", "-passout", "pass:pw", "-out",
                            "carol.p12"], cwd=home, check=True, capture_output=True, timeout=60)
            out = subprocess.run([*gpgsm, str(home / "carol.p12")], input=b"pw\n", env=env,
                                 capture_output=True, timeout=60)
            if out.returncode == 0:
                break
        assert out.returncode == 0, out.stderr.decode()
        for f in ("org-ca.pem", "org.crt"):
            subprocess.run([*gpgsm, str(home / f)], input=b"pw\n", env=env, check=True,
                           capture_output=True, timeout=60)
        yield env
    finally:
        # "all": gpgsm also starts dirmngr for this GNUPGHOME, which would outlive the test.
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30,
                       check=False)


def _b64_body(data: bytes) -> bytes:
    return base64.b64decode(re.sub(rb"\s+", b"", data.split(b"\r\n\r\n", 1)[1]))


def test_gpgsm_decrypts_and_verifies_what_the_gateway_sends(world: tuple[Org, Path],
                                                            gnupghome: dict[str, str]) -> None:
    org, home = world
    got = sent_to_carol(org, home)
    (home / "enc.der").write_bytes(_b64_body(got.read_bytes()))
    dec = subprocess.run(["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                          "--decrypt", str(home / "enc.der")], input=b"pw\n", env=gnupghome,
                         capture_output=True, timeout=60, check=False)
    assert dec.returncode == 0, dec.stderr.decode()
    inner = dec.stdout
    # multipart/signed: the first part is the signed entity, the second the detached signature
    boundary = re.search(rb'boundary="([^"]+)"', inner).group(1)  # type: ignore[union-attr]
    pieces = inner.split(b"--" + boundary)
    signed_part = pieces[1][2:-2]
    (home / "part.eml").write_bytes(signed_part)
    (home / "sig.der").write_bytes(_b64_body(pieces[2][2:]))
    ver = subprocess.run(["gpgsm", "--batch", "--verify", str(home / "sig.der"), str(home / "part.eml")],
                         env=gnupghome, capture_output=True, timeout=60, check=False)
    assert ver.returncode == 0, ver.stderr.decode()
    assert b"Good signature" in ver.stderr
    assert b"contract is ready" in signed_part


def _gpgsm(env: dict[str, str], *args: str, data: bytes = b"pw\n") -> bytes:
    proc = subprocess.run(["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", *args],
                          input=data, env=env, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def test_gateway_decrypts_and_verifies_what_gpgsm_produces(world: tuple[Org, Path],
                                                           gnupghome: dict[str, str]) -> None:
    org, home = world
    part = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned with gpgsm.\r\n"
    (home / "part.eml").write_bytes(part)
    sig = _gpgsm(gnupghome, "--detach-sign", "--local-user", CAROL, "-o", "-", str(home / "part.eml"))
    b64 = base64.encodebytes(sig).replace(b"\n", b"\r\n")
    signed = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;'
              b' boundary="b1"\r\n\r\n--b1\r\n' + part + b"\r\n--b1\r\n"
              b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"\r\n--b1--\r\n")
    (home / "signed.eml").write_bytes(signed)
    env_der = _gpgsm(gnupghome, "--encrypt", "--recipient", "alice@a.example", "-o", "-",
                     str(home / "signed.eml"))
    wire = (f"From: <{CAROL}>\r\nTo: <alice@a.example>\r\nSubject: via gpgsm\r\nMIME-Version: 1.0\r\n"
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64.encodebytes(env_der).replace(
                b"\n", b"\r\n")
    org.submit(CAROL, ["alice@a.example"], wire, source="127.0.0.1")
    pump(org, until=lambda: bool(org.mailbox.messages))
    got = org.mailbox.for_rcpt("alice@a.example")[0]
    assert b"Signed with gpgsm." in got
    assert b"X-Filterlang-SMIME: decrypted; verified; signers=carol@home.example" in got
    assert b"pkcs7" not in got.lower()
