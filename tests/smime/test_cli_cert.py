"""`filterlang cert ...` end to end through runtime.commands.cli.main."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from runtime.commands.cli import main
from smime._keys import load_private_key


def _create(tmp_path: Path, *extra: str) -> Path:
    prefix = tmp_path / "gw"
    argv = ["cert", "create", "--cn", "mail.example.com", "--org", "Example Ltd", "--unit", "IT",
            "--locality", "Springfield", "--state", "IL", "--country", "US",
            "--san-domain", "example.com,example.net", "--san-email", "a@example.com",
            "--san-email", "b@example.com", "--days", "400", "--out", str(prefix), *extra]
    assert main(argv) == 0
    return prefix


def test_create_writes_certificate_key_and_csr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _create(tmp_path)
    cert = x509.load_pem_x509_certificate(Path(f"{prefix}.crt.pem").read_bytes())
    csr = x509.load_pem_x509_csr(Path(f"{prefix}.csr.pem").read_bytes())
    key = load_private_key(Path(f"{prefix}.key.pem").read_bytes())
    assert csr.subject == cert.subject
    assert key.public_key() == cert.public_key()  # type: ignore[comparison-overlap]
    assert oct(Path(f"{prefix}.key.pem").stat().st_mode & 0o777) == "0o600"
    assert "wrote" in capsys.readouterr().out


def test_create_with_encrypted_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_PASS", "s3cret")
    prefix = _create(tmp_path, "--key", "p256", "--usage", "signing", "--passphrase-env", "GW_PASS")
    data = Path(f"{prefix}.key.pem").read_bytes()
    assert b"ENCRYPTED" in data
    load_private_key(data, b"s3cret")


def test_show_and_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _create(tmp_path)
    capsys.readouterr()
    assert main(["cert", "show", f"{prefix}.crt.pem", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["san_emails"] == ["a@example.com", "b@example.com"]
    assert info["san_domains"] == ["example.com", "example.net"]
    assert main(["cert", "check", f"{prefix}.crt.pem", "--fqdn", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == []
    assert main(["cert", "show", f"{prefix}.crt.pem"]) == 0
    assert "mail.example.com" in capsys.readouterr().out


def test_check_failure_names_field_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _create(tmp_path, "--usage", "signing")
    capsys.readouterr()
    assert main(["cert", "check", f"{prefix}.crt.pem", "--purpose", "encryption"]) == 1
    out = capsys.readouterr().out
    assert "key usage: encryption needs keyEncipherment" in out
    assert "fix: reissue with key usage keyEncipherment" in out
    assert "FAILED for encryption" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cert", "show", "/nonexistent.pem"], "cannot read"),
        (["cert", "create", "--cn", "x", "--country", "USA", "--out", "OUT"], "country"),
        (["cert", "create", "--cn", "x", "--passphrase-env", "NOPE_UNSET_VAR", "--out", "OUT"],
         "NOPE_UNSET_VAR is not set"),
    ],
)
def test_errors_are_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("filterlang cert: error: ") and message in err
    assert "Traceback" not in err


def test_show_garbage_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert main(["cert", "show", str(tmp_path / "junk.pem")]) == 2
    assert "not a readable X.509 certificate" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")
def test_import_pkcs12_passphrase_from_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _create(tmp_path)
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-inkey", f"{prefix}.key.pem", "-in", f"{prefix}.crt.pem",
         "-passout", "pass:p12pass", "-out", str(tmp_path / "id.p12")],
        check=True, capture_output=True, timeout=60,
    )
    (tmp_path / "pass.txt").write_text("p12pass\n")
    out = tmp_path / "imported"
    assert main(["cert", "import", str(tmp_path / "id.p12"), "--passphrase-file",
                 str(tmp_path / "pass.txt"), "--out", str(out)]) == 0
    assert Path(f"{out}.crt.pem").read_bytes() == Path(f"{prefix}.crt.pem").read_bytes()
    key = serialization.load_pem_private_key(Path(f"{out}.key.pem").read_bytes(), None)
    assert key.public_key() == x509.load_pem_x509_certificate(  # type: ignore[comparison-overlap]
        Path(f"{prefix}.crt.pem").read_bytes()).public_key()
    (tmp_path / "wrong.txt").write_text("nope\n")
    capsys.readouterr()
    assert main(["cert", "import", str(tmp_path / "id.p12"), "--passphrase-file",
                 str(tmp_path / "wrong.txt"), "--out", str(out)]) == 2
    assert "passphrase is wrong" in capsys.readouterr().err


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["ValidCertificatePathTest1EE.p12", "GoodCACert.p12"])
def test_import_pkits_pkcs12_with_env_passphrase(
    vectors_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    monkeypatch.setenv("P12_PASS", "password")
    out = tmp_path / "pkits"
    assert main(["cert", "import", str(vectors_dir / "pkits/pkcs12-sample" / name),
                 "--passphrase-env", "P12_PASS", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "Test Certificates 2011" in info["subject"]
    assert Path(f"{out}.key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
