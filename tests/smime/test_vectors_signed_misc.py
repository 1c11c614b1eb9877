"""RFC 4134, examples-cms and Bouncy Castle signed vectors (see vectors/README.md).

Policy: the default policy refuses SHA-1, RSA below 2048 bits, MD5 certificate signatures and
DSA; `VerifyPolicy(legacy=True)` accepts them (flagged) so the README's "valid" outcomes for
1999-2006 mail are reproduced, with the path validated at signingTime for archived mail.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import pem, x509

from smime import TrustStore, VerifyResult, verify, verify_content
from smime.errors import MalformedError, UnsupportedError
from smime.policy import VerifyPolicy

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


LEGACY = VerifyPolicy(legacy=True)
# Stored mail: validate as of the signer's signingTime (the vectors are from 1999-2006).
ARCHIVE = VerifyPolicy(legacy=True, at_signing_time=True)


def _rfc4134(vectors_dir: Path, name: str, policy: VerifyPolicy, **kw: object) -> VerifyResult:
    d = vectors_dir / "rfc4134"
    trust = TrustStore.load([d / "CarlRSASelf.cer", d / "CarlDSSSelf.cer"])
    data = (d / name).read_bytes()
    if name.endswith(".eml"):
        return verify(data, trust=trust, policy=policy, **kw)  # type: ignore[arg-type]
    return verify_content(data, (d / "ExContent.bin").read_bytes() if name == "4.3.bin"
                          else None, trust=trust, policy=policy)


@pytest.mark.vectors
@pytest.mark.parametrize(
    "name", ["4.1.bin", "4.2.bin", "4.3.bin", "4.5.bin", "4.7.bin", "4.10.bin"]
)
def test_rfc4134_valid_under_legacy_policy(vectors_dir: Path, name: str) -> None:
    """README: valid. SHA-1, 1024-bit RSA and DSA pass only as flagged legacy algorithms."""
    res = _rfc4134(vectors_dir, name, LEGACY)
    assert res.verified, res.reasons
    assert res.content == CONTENT
    assert {c for c, _ in res.reasons} <= {"legacy-sha1", "legacy-algorithm"}
    assert "legacy-sha1" in {c for c, _ in res.reasons}


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "code"),
    [("4.1.bin", "unsupported-algorithm"), ("4.2.bin", "weak-key"), ("4.5.bin", "weak-key"),
     ("4.7.bin", "unsupported-algorithm"), ("4.10.bin", "unsupported-algorithm")],
)
def test_rfc4134_refused_by_default_policy(vectors_dir: Path, name: str, code: str) -> None:
    res = _rfc4134(vectors_dir, name, VerifyPolicy())
    assert not res.verified
    assert code in {c for c, _ in res.reasons}


@pytest.mark.vectors
def test_rfc4134_sha1_refused_by_default(vectors_dir: Path) -> None:
    res = _rfc4134(vectors_dir, "4.2.bin", VerifyPolicy(min_rsa_bits=1024))
    assert ("weak-digest" in {c for c, _ in res.reasons}) and not res.verified


@pytest.mark.vectors
def test_rfc4134_fancier_main_signature(vectors_dir: Path) -> None:
    """4.4: the main signature checks; the CRL the message itself carries (CarlDSSCRLForAll)
    lists Alice's certificate, which the README's OpenSSL check (no -crl_check) ignored."""
    res = _rfc4134(vectors_dir, "4.4.bin", ARCHIVE)
    assert not {c for c, _ in res.reasons} & BAD
    assert [c for c, _ in res.reasons if not c.startswith("legacy-")] == ["revoked"]


@pytest.mark.vectors
def test_rfc4134_one_good_one_unverifiable_signer(vectors_dir: Path) -> None:
    """4.6: Alice valid, Diane needs DSA parameter inheritance (unverifiable)."""
    strict = _rfc4134(vectors_dir, "4.6.bin", LEGACY)
    lenient = _rfc4134(vectors_dir, "4.6.bin", VerifyPolicy(legacy=True, multi_signer="lenient"))
    assert [s.verified for s in strict.signers] == [True, False]
    assert not strict.verified
    assert lenient.verified and len(lenient.signers) == 2
    assert "unsupported-algorithm" in {c for c, _ in lenient.signers[1].reasons}


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["4.8.eml", "4.9.eml"])
def test_rfc4134_messages(vectors_dir: Path, name: str) -> None:
    """The samples say From aliceDss@examples.com while the certificate names
    AliceDSS@example.com: the identity binding fails, everything else holds."""
    res = _rfc4134(vectors_dir, name, LEGACY)
    assert not res.verified
    assert [c for c, _ in res.reasons if not c.startswith("legacy-")] == ["from-mismatch"]
    bound = _rfc4134(vectors_dir, name, LEGACY, from_address="AliceDSS@example.com")
    assert bound.verified, bound.reasons


@pytest.mark.vectors
def test_rfc4134_certs_only(vectors_dir: Path) -> None:
    res = _rfc4134(vectors_dir, "4.11.bin", LEGACY)
    assert not res.verified
    assert [c for c, _ in res.reasons] == ["certs-only"]


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
    res = verify((d / name).read_bytes(), trust=TrustStore(), policy=LEGACY)
    codes = {c for c, _ in res.reasons}
    assert not res.verified
    assert "untrusted" in codes and not codes & BAD, res.reasons
    assert codes <= {"untrusted", "legacy-sha1", "legacy-algorithm", "from-mismatch"}


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "code"),
    [("validMail", None), ("longValidity", None),
     ("expired", "expired"), ("notYetValid", "not-yet-valid"), ("keyUsage", "bad-usage"),
     ("extKeyUsage", "bad-usage"), ("noEmail", "certificate-without-address"),
     ("revoked", "revoked"), ("shortKey", "weak-key")],
)
def test_bouncycastle_validator(vectors_dir: Path, name: str, code: str | None) -> None:
    """README outcomes, validating at the signing time (archive policy)."""
    d = vectors_dir / "bouncycastle-mail"
    crls = [(d / "validator.revoked.crl").read_bytes()] if name == "revoked" else []
    res = verify((d / f"validator.{name}.eml").read_bytes(),
                 trust=TrustStore.load([d / "validator.root.crt"]), crls=crls, policy=ARCHIVE)
    codes = {c for c, _ in res.reasons} - {"legacy-sha1", "legacy-algorithm"}
    assert res.verified is (code is None), res.reasons
    if code is not None:
        assert code in codes, res.reasons
    if name in ("expired", "notYetValid"):
        assert "signing-time-outside-validity" in codes


@pytest.mark.vectors
def test_bouncycastle_validator_refused_by_default_policy(vectors_dir: Path) -> None:
    """Without the legacy policy, the SHA-1 / 1024-bit / MD5-certificate mail is refused."""
    d = vectors_dir / "bouncycastle-mail"
    res = verify((d / "validator.validMail.eml").read_bytes(),
                 trust=TrustStore.load([d / "validator.root.crt"]),
                 now=dt.datetime(2006, 9, 4, 10, tzinfo=dt.UTC))
    assert not res.verified
    assert {c for c, _ in res.reasons} & {"weak-key", "weak-digest"}


@pytest.mark.vectors
def test_fake_root_fails(vectors_dir: Path) -> None:
    d = vectors_dir / "bouncycastle-mail"
    res = verify((d / "validator.validMail.eml").read_bytes(),
                 trust=TrustStore.load([d / "validator.fakeRoot.crt"]), policy=ARCHIVE)
    assert not res.verified
    assert "untrusted" in {c for c, _ in res.reasons}


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


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "kind"),
    [("3.1.bin", "data"), ("3.2.bin", "data"), ("6.0.bin", "digested_data"),
     ("7.1.bin", "encrypted_data"), ("7.2.bin", "encrypted_data"),
     ("5.1.bin", "enveloped_data")],
)
def test_rfc4134_parse_only_objects(vectors_dir: Path, name: str, kind: str) -> None:
    """README: "parse only". Offered to the verifier they are one clean, named refusal."""
    with pytest.raises(UnsupportedError, match=f"content type {kind} is not signed-data"):
        verify_content((vectors_dir / "rfc4134" / name).read_bytes(), trust=TrustStore())
