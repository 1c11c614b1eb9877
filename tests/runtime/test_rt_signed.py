"""``signed`` and ``signed-certificate`` on a real S/MIME signature made by openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from rt_helpers import matched

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")


@pytest.fixture(scope="module")
def signed_message(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d: Path = tmp_path_factory.mktemp("smime")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"),
                    "-subj", "/C=US/ST=CA/O=Example, Inc./CN=Alice",
                    "-addext", "subjectAltName=email:alice@example.com"],
                   check=True, capture_output=True)
    (d / "m.txt").write_bytes(b"Content-Type: text/plain\r\n\r\nsigned text\r\n")
    for detached in (True, False):
        name = "det.eml" if detached else "opaque.eml"
        cmd = ["openssl", "cms", "-sign", "-in", str(d / "m.txt"), "-signer", str(d / "c.pem"),
               "-inkey", str(d / "k.pem"), "-out", str(d / name)]
        if not detached:
            cmd.append("-nodetach")
        subprocess.run(cmd, check=True, capture_output=True)
    return b"Subject: signed\r\nFrom: alice@example.com\r\n" + (d / "det.eml").read_bytes()


def test_signed_and_signer_and_issuer(signed_message: bytes) -> None:
    assert matched("f: if signed { no-op(); }", signed_message)
    assert matched("f: if signed-certificate('signer') == '^alice@example\\\\.com$' { no-op(); }",
                   signed_message)
    assert not matched("f: if signed-certificate('signer') != 'example\\\\.com$' { no-op(); }",
                       signed_message)
    # RFC 4514 escaping of the comma; the guide's S= spelling of the state also matches
    assert matched("f: if signed-certificate('issuer') == 'O=Example\\\\\\\\, Inc\\\\.' { no-op(); }",
                   signed_message)
    assert matched("f: if signed-certificate('issuer') == 'S=CA' { no-op(); }", signed_message)
    assert not matched("f: if encrypted { no-op(); }", signed_message)
