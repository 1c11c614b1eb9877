"""Self-signed S/MIME certificates and the requirement checks."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smime.certs import CertificateSpec, check_certificate, create_self_signed, describe
from smime.envelope import decrypt_content, encrypt_content
from smime.errors import CertificateError

FULL = CertificateSpec(
    common_name="mail.example.com", organization="Example Ltd", organizational_unit="IT",
    locality="Springfield", state="Illinois", country="us",
    san_domains=("example.com", "*.example.net"), san_emails=("ops@example.com",),
    days=730, key_type="rsa-2048", usage="dual",
)


def test_every_field_of_the_brief_lands_in_the_certificate() -> None:
    created = create_self_signed(FULL)
    cert = created.certificate
    info = describe(cert)
    assert info["common_name"] == ["mail.example.com"]
    assert info["organization"] == ["Example Ltd"]
    assert info["organizational_unit"] == ["IT"]
    assert info["locality"] == ["Springfield"] and info["state"] == ["Illinois"]
    assert info["country"] == ["US"]
    assert info["san_domains"] == ["example.com", "*.example.net"]
    assert info["san_emails"] == ["ops@example.com"]
    assert info["key"] == "RSA-2048"
    assert info["signature_algorithm"] == "sha256WithRSAEncryption"
    assert info["key_usage"] == ["digitalSignature", "nonRepudiation", "keyEncipherment"]
    assert info["key_usage_critical"] is True
    assert info["extended_key_usage"] == ["emailProtection"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=730) <= lifetime <= dt.timedelta(days=730, minutes=6)
    assert created.csr.subject == cert.subject
    assert created.csr.is_signature_valid
    assert check_certificate(cert, ("signing", "encryption"), fqdn=True) == []


@pytest.mark.parametrize(
    ("key_type", "usage", "alg", "expected_ku"),
    [
        ("p256", "signing", None, ["digitalSignature", "nonRepudiation"]),
        ("p384", "encryption", "ecdsa-sha384", ["keyAgreement"]),
        ("ed25519", "signing", None, ["digitalSignature", "nonRepudiation"]),
        ("rsa-3072", "signing", "sha384-rsa", ["digitalSignature", "nonRepudiation"]),
        ("rsa-2048", "encryption", "sha512-rsa", ["keyEncipherment"]),
    ],
)
def test_key_types_and_usages(key_type: str, usage: str, alg: str | None, expected_ku: list[str]) -> None:
    spec = CertificateSpec(common_name="Ops", key_type=key_type, usage=usage,
                           signature_algorithm=alg, san_emails=("ops@example.com",))
    cert = create_self_signed(spec).certificate
    assert describe(cert)["key_usage"] == expected_ku
    errors = [p for p in check_certificate(cert, (usage,)) if p.severity == "error"]
    assert errors == []


@pytest.mark.parametrize("key_type", ["rsa-2048", "p256"])
def test_created_encryption_certificate_receives_mail(key_type: str) -> None:
    usage = "dual" if key_type.startswith("rsa") else "encryption"
    created = create_self_signed(CertificateSpec(common_name="bob", key_type=key_type, usage=usage))
    der = encrypt_content(b"hi", [created.certificate])
    assert decrypt_content(der, [(created.key, created.certificate)]).content == b"hi"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"common_name": " "}, "common name"),
        ({"country": "USA"}, "country"),
        ({"days": 0}, "days valid"),
        ({"key_type": "rsa-1024"}, "key"),
        ({"signature_algorithm": "ecdsa-sha256"}, "signature algorithm"),
        ({"signature_algorithm": "md5-rsa"}, "signature algorithm"),
        ({"key_type": "p256", "usage": "dual"}, "usage"),
        ({"key_type": "ed25519", "usage": "encryption"}, "usage"),
        ({"san_domains": ("not a domain",)}, "SAN domains"),
        ({"san_emails": ("nobody",)}, "SAN e-mails"),
    ],
)
def test_bad_spec_names_the_field(change: dict[str, object], field: str) -> None:
    spec = attrs.evolve(FULL, **change)
    with pytest.raises(CertificateError, match=f"^{field}: .*(use|give|choose|is not)"):
        create_self_signed(spec)


def test_check_reports_key_usage_and_eku_problems_with_fixes() -> None:
    sign_only = create_self_signed(CertificateSpec(common_name="x", key_type="rsa-2048",
                                                   usage="signing")).certificate
    problems = check_certificate(sign_only, ("encryption",))
    [ku] = [p for p in problems if p.field == "key usage"]
    assert "keyEncipherment" in ku.problem and "reissue" in ku.fix
    ec_sign = create_self_signed(CertificateSpec(common_name="x", key_type="p256",
                                                 usage="signing")).certificate
    [ku] = [p for p in check_certificate(ec_sign, ("encryption",)) if p.field == "key usage"]
    assert "keyAgreement" in ku.problem
    enc_only = create_self_signed(CertificateSpec(common_name="x", key_type="p256",
                                                  usage="encryption")).certificate
    [ku] = [p for p in check_certificate(enc_only, ("signing",)) if p.field == "key usage"]
    assert "digitalSignature and nonRepudiation" in ku.problem


def test_check_fqdn_and_no_key_usage_and_wrong_eku() -> None:
    created = create_self_signed(CertificateSpec(common_name="Not An FQDN", key_type="p256",
                                                 usage="signing"))
    problems = check_certificate(created.certificate, ("signing",), fqdn=True)
    assert [p.field for p in problems if p.severity == "error"] == ["common name"]
    # No keyUsage at all: presumed digitalSignature + nonRepudiation for signing (RFC 8550),
    # but encryption needs the extension; an EKU without emailProtection fails both.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare.example.com")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(created.key.public_key())  # type: ignore[arg-type]
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(created.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    fields = {p.field for p in check_certificate(cert, ("signing", "encryption"))
              if p.severity == "error"}
    assert fields == {"validity", "extended key usage", "key usage"}


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")
@pytest.mark.parametrize("key_type", ["rsa-2048", "p256"])
def test_openssl_accepts_it_for_smimesign(tmp_path: Path, key_type: str) -> None:
    created = create_self_signed(CertificateSpec(common_name="ops", key_type=key_type,
                                                 usage="signing" if key_type == "p256" else "dual",
                                                 san_emails=("ops@example.com",)))
    pem = tmp_path / "c.pem"
    pem.write_bytes(created.certificate.public_bytes(serialization.Encoding.PEM))
    proc = subprocess.run(
        ["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(pem), str(pem)],
        capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
