"""`filterlang cert create --ca`, `cert sign` and `cert check --for`, through the real CLI in a
subprocess (issue 14 item 2): an organisation CA issues S/MIME certificates that OpenSSL
accepts for S/MIME signing, and `check --for` says whether one would verify for a sender."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

FILTERLANG = Path(sys.executable).parent / "filterlang"


def cli(*args: str | Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(FILTERLANG), *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    cli("cert", "create", "--ca", "--cn", "A Org CA", "--org", "A Org", "--key", "p256",
        "--out", folder / "ca")
    return folder / "ca"


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_certificate_is_a_ca(ca: Path) -> None:
    cert = _load(Path(f"{ca}.crt.pem"))
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert cert.subject == cert.issuer
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 1824


def test_sign_a_request_from_cert_create(ca: Path, tmp_path: Path) -> None:
    cli("cert", "create", "--cn", "a.example", "--org", "A Org", "--san-domain", "a.example",
        "--san-email", "postmaster@a.example", "--out", tmp_path / "gw")
    out = cli("cert", "sign", "--ca", f"{ca}.crt.pem", "--ca-key", f"{ca}.key.pem",
              "--csr", tmp_path / "gw.csr.pem", "--out", tmp_path / "issued").stdout
    assert "wrote" in out and "issued by CN=A Org CA" in out
    assert not (tmp_path / "issued.key.pem").exists()  # the key stays with the requester
    cert, ca_cert = _load(tmp_path / "issued.crt.pem"), _load(Path(f"{ca}.crt.pem"))
    assert cert.issuer == ca_cert.subject
    assert cert.public_key() == _load(tmp_path / "gw.crt.pem").public_key()
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert ku.value.content_commitment and not ku.value.key_cert_sign
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.EMAIL_PROTECTION]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]
    assert san.get_values_for_type(x509.RFC822Name) == ["postmaster@a.example"]
    if shutil.which("openssl"):
        proc = subprocess.run(["openssl", "verify", "-purpose", "smimesign", "-CAfile",
                               f"{ca}.crt.pem", tmp_path / "issued.crt.pem"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sign_for_a_new_key_and_check_for_senders(ca: Path, tmp_path: Path) -> None:
    cli("cert", "sign", "--ca", f"{ca}.crt.pem", "--ca-key", f"{ca}.key.pem", "--cn", "Alice",
        "--san-email", "alice@a.example", "--san-dns", "*.a.example", "--key", "p256",
        "--out", tmp_path / "alice")
    assert oct((tmp_path / "alice.key.pem").stat().st_mode & 0o777) == "0o600"
    crt = tmp_path / "alice.crt.pem"
    check = ("cert", "check", crt, "--trust", f"{ca}.crt.pem", "--for")
    out = cli(*check, "alice@a.example").stdout
    assert "(binding: address)" in out and f"{crt}: OK for signing as alice@a.example's" in out
    out = cli(*check, "bob@eu.a.example").stdout
    assert "(binding: domain)" in out and "--domain-certificates" in out
    # One label only under the wildcard, and never another domain.
    for sender in ("bob@a.example", "bob@x.eu.a.example", "bob@b.example"):
        out = cli(*check, sender, code=1).stdout
        assert f"names neither {sender} nor its domain" in out and "FAILED" in out
    report = json.loads(cli("cert", "check", crt, "--for", "bob@eu.a.example", "--json").stdout)
    assert (report["ok"], report["binding"], report["for"]) == (True, "domain", "bob@eu.a.example")
    proc = cli("cert", "check", crt, "--for", "eu.a.example", code=2)
    assert proc.stderr == ("filterlang cert: error: --for: 'eu.a.example' is not an address; "
                           "use e.g. alice@example.com\n")


def test_check_for_validates_the_path_when_given_anchors(ca: Path, tmp_path: Path) -> None:
    cli("cert", "create", "--cn", "b.example", "--san-domain", "b.example", "--key", "p256",
        "--usage", "signing", "--out", tmp_path / "b")
    crt = tmp_path / "b.crt.pem"
    out = cli("cert", "check", crt, "--for", "x@b.example", "--trust", f"{ca}.crt.pem",
              code=1).stdout
    assert "error: path: untrusted" in out
    # A partner's self-signed gateway certificate verifies once pinned as a trust anchor.
    cli("cert", "check", crt, "--for", "x@b.example", "--trust", crt)


@pytest.mark.parametrize(("args", "message"), [
    (("--csr", "REQ", "--san-email", "x@a.example"), "--san-email and --san-domain go with --cn"),
    (("--cn", "X"), "SAN: the certificate would name no sender"),
    (("--cn", "X", "--san-dns", "*.com.", "--days", "4000"), "SAN domains"),
    (("--cn", "X", "--san-email", "x@a.example", "--days", "2000"), "would outlive its CA"),
    (("--csr", "REQ"), "not a certificate request"),
])
def test_sign_errors_are_one_line(ca: Path, tmp_path: Path, args: tuple[str, ...],
                                  message: str) -> None:
    (tmp_path / "REQ").write_text("junk")
    args = tuple(str(tmp_path / a) if a == "REQ" else a for a in args)
    proc = cli("cert", "sign", "--ca", f"{ca}.crt.pem", "--ca-key", f"{ca}.key.pem", *args,
               "--key", "p256", "--out", tmp_path / "o", code=2)
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_sign_refuses_a_non_ca_and_a_wrong_key(ca: Path, tmp_path: Path) -> None:
    cli("cert", "create", "--cn", "c.example", "--san-domain", "c.example", "--key", "p256",
        "--usage", "signing", "--out", tmp_path / "ee")
    proc = cli("cert", "sign", "--ca", tmp_path / "ee.crt.pem", "--ca-key", tmp_path / "ee.key.pem",
               "--csr", tmp_path / "ee.csr.pem", "--out", tmp_path / "o", code=2)
    assert "it is not a CA" in proc.stderr
    proc = cli("cert", "sign", "--ca", f"{ca}.crt.pem", "--ca-key", tmp_path / "ee.key.pem",
               "--csr", tmp_path / "ee.csr.pem", "--out", tmp_path / "o", code=2)
    assert "does not belong to the CA certificate" in proc.stderr
    proc = cli("cert", "create", "--ca", "--cn", "X", "--san-email", "x@a.example",
               "--out", tmp_path / "x", code=2)
    assert "a CA certificate names no senders" in proc.stderr
