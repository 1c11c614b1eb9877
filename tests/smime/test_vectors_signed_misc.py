"""RFC 4134, examples-cms and Bouncy Castle signed vectors (see vectors/README.md).

Policy notes: 1024-bit RSA and MD5-signed certificates are refused ("unsupported-algorithm"),
DSA is refused, so legacy vectors whose README outcome is "valid" are not verified here; what
must hold is that their signatures and digests check (never bad-signature / bad-digest).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import pem, x509

from smime import TrustStore, verify, verify_content
from smime.errors import MalformedError

CONTENT = b"This is some sample content."
BAD = {"bad-signature", "bad-digest"}


def _cert(p: Path) -> x509.Certificate:
    d = p.read_bytes()
    return x509.Certificate.load(pem.unarmor(d)[2] if pem.detect(d) else d)


@pytest.mark.vectors
@pytest.mark.parametrize(
    "name",
    ["signedByAliceRSA", "signedByAliceRSAPSS", "signedByCarlosEd25519",
     "signedByCarlosDetached", "signedByAliceAndCarlosNoCerts"],
)
def test_examples_cms(vectors_dir: Path, name: str) -> None:
    certs = vectors_dir / "rfc9216/certs"
    trust = TrustStore.load(sorted(certs.glob("*selfsigned*")))
    res = verify_content(
        (vectors_dir / f"examples-cms/{name}.p7m").read_bytes(),
        CONTENT if "Detached" in name else None,
        trust=trust,
        extra_certs=[_cert(p) for p in sorted(certs.glob("*.pem"))],
    )
    assert res.verified, res.reasons
    assert res.content == CONTENT
    assert len(res.signers) == (2 if "AndCarlos" in name else 1)


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "outcome"),
    [("4.1.bin", "legacy"), ("4.2.bin", "legacy"), ("4.3.bin", "legacy"),
     ("4.4.bin", "legacy"), ("4.5.bin", "legacy"), ("4.6.bin", "legacy"),
     ("4.7.bin", "legacy"), ("4.10.bin", "legacy"), ("4.11.bin", "certs-only"),
     ("4.8.eml", "legacy"), ("4.9.eml", "legacy")],
)
def test_rfc4134(vectors_dir: Path, name: str, outcome: str) -> None:
    d = vectors_dir / "rfc4134"
    trust = TrustStore.load([d / "CarlRSASelf.cer", d / "CarlDSSSelf.cer"])
    data = (d / name).read_bytes()
    if name.endswith(".eml"):
        res = verify(data, trust=trust)
    else:
        res = verify_content(data, (d / "ExContent.bin").read_bytes() if name == "4.3.bin"
                             else None, trust=trust)
    codes = {c for c, _ in res.reasons}
    assert not res.verified
    assert not codes & BAD, res.reasons
    if outcome == "certs-only":
        assert "no-signers" in codes
    else:
        assert "unsupported-algorithm" in codes


BC_SIG_OK = [
    "3nnn_smime.eml", "circular.eml", "embeddedmulti.message", "extra-nl.eml",
    "multi-alternative.eml", "openssl-signed-sha256-non-default-salt-length.eml",
    "qp-soft-break.eml", "quotable.message",
]


@pytest.mark.vectors
@pytest.mark.parametrize("name", BC_SIG_OK)
def test_bouncycastle_real_clients(vectors_dir: Path, name: str) -> None:
    """Signature bytes verify; no anchor is given, so the result is "untrusted"."""
    d = vectors_dir / "bouncycastle-mail"
    res = verify((d / name).read_bytes(), trust=TrustStore())
    codes = {c for c, _ in res.reasons}
    assert not res.verified
    assert "untrusted" in codes and not codes & BAD, res.reasons


@pytest.mark.vectors
@pytest.mark.parametrize(
    "name",
    ["validMail", "expired", "notYetValid", "keyUsage", "extKeyUsage", "noEmail", "revoked",
     "shortKey", "longValidity"],
)
def test_bouncycastle_validator(vectors_dir: Path, name: str) -> None:
    """All are MD5-signed 1024-bit certificates: refused by policy, never verified."""
    d = vectors_dir / "bouncycastle-mail"
    res = verify((d / f"validator.{name}.eml").read_bytes(),
                 trust=TrustStore.load([d / "validator.root.crt"]),
                 now=dt.datetime(2006, 10, 1, tzinfo=dt.UTC),
                 crls=[(d / "validator.revoked.crl").read_bytes()])
    codes = {c for c, _ in res.reasons}
    assert not res.verified
    assert not codes & BAD, res.reasons


@pytest.mark.vectors
def test_fake_root_fails(vectors_dir: Path) -> None:
    d = vectors_dir / "bouncycastle-mail"
    res = verify((d / "validator.validMail.eml").read_bytes(),
                 trust=TrustStore.load([d / "validator.fakeRoot.crt"]),
                 now=dt.datetime(2006, 10, 1, tzinfo=dt.UTC))
    assert not res.verified


@pytest.mark.vectors
def test_broken_envelope_is_clean_error(vectors_dir: Path) -> None:
    with pytest.raises(MalformedError):
        verify((vectors_dir / "bouncycastle-mail/brokenEnv.message").read_bytes(),
               trust=TrustStore())


@pytest.mark.vectors
def test_openssl_empty_digest_set(vectors_dir: Path) -> None:
    res = verify((vectors_dir / "openssl/pkcs7-empty-digest-set.eml").read_bytes(),
                 trust=TrustStore())
    assert not res.verified
    assert "digest-set-mismatch" in {c for c, _ in res.reasons}
