"""Throw-away gpgsm homes for the interop tests, and ways to get a private key into them.

RSA keys go in as legacy-profile PKCS#12 (smime.md 13). gpgsm 2.2.40 crashes (SIGSEGV) when it
imports an EC key from PKCS#12 and cannot write an EC certificate request, so an EC key is
generated inside the agent with `gpg` (the agent's keys serve gpg and gpgsm alike), its public
point read back with READKEY, and a certificate for it issued by the test CA.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TOOLS = ("gpgsm", "gpg", "gpgconf", "gpg-connect-agent")
MISSING = next((t for t in TOOLS if shutil.which(t) is None), None)
LOOP = ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]

Issuer = tuple[object, x509.Certificate]


@contextmanager
def gpgsm_home(path: Path, anchor: x509.Certificate) -> Iterator[dict[str, str]]:
    """An environment whose GNUPGHOME trusts `anchor`; its agents are stopped afterwards."""
    path.mkdir(mode=0o700, exist_ok=True)
    (path / "gpgsm.conf").write_text("disable-crl-checks\n")
    (path / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    fpr = anchor.fingerprint(hashes.SHA1()).hex(":").upper()  # gpgsm's trustlist format
    (path / "trustlist.txt").write_text(f"{fpr} S relax\n")
    env = dict(os.environ, GNUPGHOME=str(path))
    # Start the agent before the first gpgsm call and wait until it answers: gpgsm's own
    # autostart gives up after a few seconds on a loaded machine, which made imports flaky.
    for _ in range(3):
        subprocess.run(["gpgconf", "--launch", "gpg-agent"], env=env, capture_output=True,
                       timeout=30, check=False)
        ping = subprocess.run(["gpg-connect-agent", "/bye"], env=env, capture_output=True,
                              timeout=30, check=False)
        if ping.returncode == 0:
            break
    try:
        yield env
    finally:
        # Stops only the agents started for this GNUPGHOME.
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30,
                       check=False)


def run(env: dict[str, str], args: list[str], data: bytes = b"\n") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, env=env, input=data, capture_output=True, timeout=60,
                          check=False)


def import_certs(env: dict[str, str], tmp: Path, certs: list[x509.Certificate]) -> None:
    for i, cert in enumerate(certs):
        f = tmp / f"import-{i}.pem"
        f.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out = run(env, ["gpgsm", "--batch", "--import", str(f)])
        assert out.returncode == 0, out.stderr.decode()


def import_rsa_key(env: dict[str, str], tmp: Path, key: rsa.RSAPrivateKey,
                   cert: x509.Certificate) -> None:
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(b"pw")
    )
    p12 = tmp / "key.p12"
    # gpgsm 2.2.40's PKCS#12 reader rejects some files whose random salt and IV give DER
    # lengths it mis-parses ("encryptedData error at outer.outer.seq", then "possibly bad
    # passphrase"): a fresh serialisation (new salt and IV) of the same key is tried again.
    for _ in range(5):
        p12.write_bytes(pkcs12.serialize_key_and_certificates(b"k", key, cert, None, enc))
        out = run(env, ["gpgsm", *LOOP, "--import", str(p12)], b"pw\n")
        if out.returncode == 0:
            break
    assert out.returncode == 0, out.stderr.decode()


def agent_ec_key(env: dict[str, str], usage: str) -> ec.EllipticCurvePublicKey:
    """Generate a P-256 key inside gpg-agent ("sign" or "encr"); return its public key."""
    uid = f"interop-{usage} <{usage}@agent.test>"
    out = run(env, ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", uid, "nistp256", "sign", "never"])
    assert out.returncode == 0, out.stderr.decode()
    listing = run(env, ["gpg", "--with-colons", "--with-keygrip", "--list-secret-keys"])
    lines = listing.stdout.decode().splitlines()
    if usage == "encr":
        fpr = next(line.split(":")[9] for line in lines if line.startswith("fpr"))
        out = run(env, ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                        "--quick-add-key", fpr, "nistp256", "encr", "never"])
        assert out.returncode == 0, out.stderr.decode()
        lines = run(env, ["gpg", "--with-colons", "--with-keygrip",
                          "--list-secret-keys"]).stdout.decode().splitlines()
    grip = [line.split(":")[9] for line in lines if line.startswith("grp")][-1]
    reply = run(env, ["gpg-connect-agent", f"READKEY {grip}", "/bye"]).stdout
    sexp = b"".join(line[2:] for line in reply.split(b"\n") if line.startswith(b"D "))
    sexp = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), sexp)
    length, rest = sexp[sexp.index(b"(1:q") + 4 :].split(b":", 1)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), rest[: int(length)])


def issue_for(public: ec.EllipticCurvePublicKey, issuer: Issuer, email: str,
              usage: str, now: dt.datetime) -> x509.Certificate:
    """An S/MIME certificate for `public`: digitalSignature+nonRepudiation or keyAgreement."""
    ca_key, ca_cert = issuer
    sign = usage == "sign"
    ku = x509.KeyUsage(sign, sign, False, False, not sign, False, False, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(ku, critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
