"""What real clients send (issue 14 items 3-5), on messages made here: octet-stream labels,
certificate bundles, hidden encrypted parts, a Date far from signingTime, nested signers,
signer certificates left out, refused ciphers and digests, NSS-style PKCS#12, mbox lines.
The client corpus (`test_client_corpus.py`) checks the same on the real clients' messages."""

from __future__ import annotations

import base64
import datetime as dt
import re
import warnings
from pathlib import Path

import pytest
from asn1crypto import cms
from compose_util import MSG, ca, recipient, signer, user
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pki import NOW

from smime import TrustStore, is_smime, protect, unwrap, verify
from smime._keys import load_pkcs12
from smime.envelope import decrypt

MID = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore((ca().root.asn1,))


def _codes(res: object) -> list[str]:
    return [c for c, _ in getattr(res, "errors", None) or getattr(res, "reasons", ())]


def _body_der(message: bytes) -> bytes:
    body = message.partition(b"\r\n\r\n")[2]
    return base64.b64decode(re.sub(rb"\s+", b"", body))


def _opaque(der: bytes, head: bytes = b"From: alice@example.com\r\nTo: bob@example.test\r\n"
            ) -> bytes:
    return (head + b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
            b'smime-type=signed-data; name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.encodebytes(der).replace(b"\n", b"\r\n"))


def _signed_der(**changes: object) -> bytes:
    """Alice's opaque SignedData of MSG, with SignedData fields replaced as asked."""
    info = cms.ContentInfo.load(_body_der(protect(MSG, mode="sign", signer=signer("p256"),
                                                  form="opaque", now=MID)))
    for name, value in changes.items():
        info["content"][name] = value
    return info.dump(force=True)


# ---------------------------------------------------------------- octet-stream (RFC 8551 3.10)


def test_octet_stream_p7m_envelope_is_decrypted(trust: TrustStore) -> None:
    key, cert = recipient("p256")
    msg = protect(MSG, mode="encrypt", recipients=[cert], cipher="aes256-gcm")
    relabelled = re.sub(rb"application/pkcs7-mime; smime-type=[\w-]+", b"application/octet-stream",
                        msg)
    assert b"application/octet-stream" in relabelled
    assert is_smime(relabelled) == (False, True)
    res = unwrap(relabelled, keys=[(key, cert)], trust=trust)
    assert [layer.kind for layer in res.layers] == ["encrypted"] and res.layers[0].ok
    assert b"Revenue is up." in res.content
    assert decrypt(relabelled, [(key, cert)]).content.endswith(b"unchanged.\r\n")


def test_octet_stream_p7s_signature_part_verifies(trust: TrustStore) -> None:
    msg = protect(MSG, mode="sign", signer=signer("p256"), now=NOW)
    relabelled = msg.replace(b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
                             b'Content-Type: application/octet-stream; name="smime.p7s"')
    assert relabelled != msg
    assert verify(relabelled, trust=trust, now=NOW).verified


def test_octet_stream_without_p7_name_is_not_smime(trust: TrustStore) -> None:
    _, cert = recipient("p256")
    msg = protect(MSG, mode="encrypt", recipients=[cert])
    plain = re.sub(rb"application/pkcs7-mime; smime-type=[\w-]+; name=\"smime.p7m\"",
                   b'application/octet-stream; name="report.bin"', msg)
    plain = plain.replace(b'filename="smime.p7m"', b'filename="report.bin"')
    assert is_smime(plain) == (False, False)


# ------------------------------------------------------------ certificate bundles, hidden parts


def test_certs_only_is_not_a_signature(trust: TrustStore) -> None:
    bundle = _signed_der(signer_infos=cms.SignerInfos([]))
    top = _opaque(bundle).replace(b"smime-type=signed-data", b"smime-type=certs-only")
    assert is_smime(top) == (False, False)
    res = unwrap(top, trust=trust)
    assert (res.signed, res.verified, res.layers) == (False, False, ())
    # As an attachment beside text it is no hidden signature either.
    part = top[top.index(b"Content-Type: application/pkcs7-mime"):]
    mixed = (b'From: alice@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
             b"--b\r\nContent-Type: text/plain\r\n\r\nmy certificate\r\n--b\r\n" + part
             + b"\r\n--b--\r\n")
    assert _codes(unwrap(mixed, trust=trust)) == []


def test_hidden_encrypted_part_is_partially_encrypted(trust: TrustStore) -> None:
    key, cert = recipient("p256")
    env = protect(MSG, mode="encrypt", recipients=[cert])
    part = env[env.index(b"Content-Type: application/pkcs7-mime"):]
    mixed = (b'From: alice@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
             b"--b\r\nContent-Type: text/plain\r\n\r\nFirst part\r\n--b\r\n" + part
             + b"\r\n--b--\r\n")
    res = unwrap(mixed, keys=[(key, cert)], trust=trust)
    assert _codes(res) == ["partially-encrypted"]
    assert res.layers == () and b"Revenue" not in res.content  # not opened


# ----------------------------------------------------------------------------- date-mismatch


@pytest.mark.parametrize(("offset", "warned"), [(dt.timedelta(minutes=5), False),
                                                 (dt.timedelta(hours=6), True),
                                                 (-dt.timedelta(hours=2), True)])
def test_date_far_from_signing_time_is_a_warning(trust: TrustStore, offset: dt.timedelta,
                                                 warned: bool) -> None:
    from email.utils import format_datetime

    dated = MSG.replace(b"Subject:", f"Date: {format_datetime(MID + offset)}\r\nSubject:".encode())
    res = verify(protect(dated, mode="sign", signer=signer("p256"), now=MID), trust=trust,
                 now=NOW)
    assert res.verified is True
    assert ("date-mismatch" in _codes(res)) is warned
    assert ("date-mismatch" in [c for c, _ in res.signers[0].reasons]) is warned


# -------------------------------------------------------------------------- nested signatures


def _resign(message: bytes, who: str, kind: str = "p256") -> bytes:
    from smime import Signer

    issued = user(kind, who)
    outer = Signer(issued.key, issued.cert, (ca().inter.cert,))
    return protect(message, mode="sign", signer=outer, form="opaque", now=MID)


def test_outer_hop_signer_is_excused_by_a_bound_inner_signer(trust: TrustStore) -> None:
    inner = protect(MSG, mode="sign", signer=signer("p256"), form="opaque", now=MID)
    res = unwrap(_resign(inner, "gateway@example.com"), trust=trust, now=NOW)
    assert [layer.ok for layer in res.layers] == [True, True] and res.verified


@pytest.mark.parametrize("envelope", [False, True])
def test_inner_signer_must_bind_from_in_every_nesting(trust: TrustStore, envelope: bool) -> None:
    """From is Alice; Mallory signed the content, Alice re-signed it (perhaps around an
    envelope). Mallory's layer is not ok either way: the outer signer does not excuse it."""
    key, cert = recipient("p256")
    mallory = _resign(MSG, "mallory@example.com")
    if envelope:
        mallory = protect(mallory, mode="encrypt", recipients=[cert])
    from smime import Signer

    alice = user("p256")
    wrapped = protect(mallory, mode="sign", signer=Signer(alice.key, alice.cert,
                                                          (ca().inter.cert,)),
                      form="opaque", now=MID)
    res = unwrap(wrapped, keys=[(key, cert)], trust=trust, now=NOW)
    signed = [layer for layer in res.layers if layer.kind == "signed"]
    assert [layer.ok for layer in signed] == [True, False]
    assert res.verified is False and "from-mismatch" in _codes(res)


# --------------------------------------------------------------- signer certificate left out


def test_signer_certificate_left_out_is_found_in_extra_certs(trust: TrustStore) -> None:
    bare = _opaque(_signed_der(certificates=cms.CertificateSet([])))
    assert _codes(verify(bare, trust=trust, now=NOW)) == ["no-signer-certificate"]
    alice, inter = user("p256").asn1, ca().inter.asn1
    assert verify(bare, trust=trust, now=NOW, extra_certs=[alice, inter]).verified
    asked: list[str | None] = []

    def lookup(address: str | None) -> list:
        asked.append(address)
        return [alice, inter]

    assert verify(bare, trust=trust, now=NOW, signer_lookup=lookup).verified
    assert asked == ["alice@example.com"]
    # A message that carries its certificate never asks the store.
    full = _opaque(_signed_der())
    assert verify(full, trust=trust, now=NOW, signer_lookup=lookup).verified
    assert asked == ["alice@example.com"]
    res = unwrap(bare, trust=trust, now=NOW, signer_lookup=lookup)
    assert res.verified and len(asked) == 2


# -------------------------------------------------------------------- algorithms named as such


def test_sha3_digest_is_unsupported_not_weak(trust: TrustStore) -> None:
    info = cms.ContentInfo.load(_signed_der())
    sha3 = cms.DigestAlgorithm({"algorithm": "2.16.840.1.101.3.4.2.8"})
    info["content"]["digest_algorithms"] = cms.DigestAlgorithms([sha3])
    info["content"]["signer_infos"][0]["digest_algorithm"] = sha3
    codes = _codes(verify(_opaque(info.dump(force=True)), trust=trust, now=NOW))
    assert "unsupported-algorithm" in codes and "weak-digest" not in codes


def _with_cipher_oid(message: bytes, oid: str) -> bytes:
    info = cms.ContentInfo.load(_body_der(message))
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"] = oid
    head = message.partition(b"\r\n\r\n")[0]
    return head + b"\r\n\r\n" + base64.encodebytes(info.dump(force=True)).replace(b"\n", b"\r\n")


def test_rc2_is_named_unsupported_before_any_key_is_used(trust: TrustStore) -> None:
    key, cert = recipient("p256")
    msg = _with_cipher_oid(protect(MSG, mode="encrypt", recipients=[cert], cipher="aes128-cbc"),
                           "1.2.840.113549.3.2")
    for keys in ([(key, cert)], []):
        res = unwrap(msg, keys=keys, trust=trust)
        assert res.layers[0].reasons[0][0] == "unsupported-algorithm"
        assert res.layers[0].reasons[0][1].startswith("rc2-cbc:")
    from smime.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="rc2-cbc"):
        decrypt(msg, [(key, cert)])


def test_3des_reads_with_a_warning_or_is_refused(trust: TrustStore) -> None:
    openssl = pytest.importorskip("shutil").which("openssl")
    if openssl is None:
        pytest.skip("openssl makes the 3DES envelope")
    import subprocess
    import tempfile

    key, cert = recipient("rsa")
    with tempfile.NamedTemporaryFile(suffix=".pem") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
        fh.flush()
        out = subprocess.run(["openssl", "cms", "-encrypt", "-des3", "-binary", fh.name],
                             input=b"Content-Type: text/plain\r\n\r\nold mail\r\n",
                             capture_output=True, check=True).stdout
    msg = b"From: alice@example.com\r\n" + re.sub(rb"(?<!\r)\n", b"\r\n", out)
    res = unwrap(msg, keys=[(key, cert)], trust=trust)
    assert res.layers[0].ok and res.layers[0].reasons[0][0] == "legacy-algorithm"
    assert b"old mail" in res.content
    refused = unwrap(msg, keys=[(key, cert)], trust=trust, allow_3des=False)
    assert not refused.layers[0].ok
    assert refused.layers[0].reasons[0][1].startswith("3des-cbc:")


# ----------------------------------------------------------------- PKCS#12 and mbox framing


def _p12() -> bytes:
    alice = user("p256")
    return pkcs12.serialize_key_and_certificates(
        b"alice", alice.key, alice.cert, [ca().inter.cert],
        serialization.BestAvailableEncryption(b"nss"))


def _indefinite(der: bytes) -> bytes:
    """The outer SEQUENCE re-written with an indefinite length, as NSS writes PKCS#12."""
    assert der[0] == 0x30
    n = der[1] & 0x7F if der[1] & 0x80 else 0
    return b"\x30\x80" + der[2 + n:] + b"\x00\x00"


def test_ber_pkcs12_loads_without_the_fallback_warning() -> None:
    ber = _indefinite(_p12())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key, cert, chain = load_pkcs12(ber, b"nss")
    assert cert == user("p256").cert and len(chain) == 1


def test_pem_armoured_pkcs12_loads() -> None:
    armoured = (b"-----BEGIN PKCS12-----\n" + base64.encodebytes(_p12())
                + b"-----END PKCS12-----\n")
    assert load_pkcs12(armoured, b"nss")[1] == user("p256").cert


def test_decrypt_accepts_the_mbox_from_line() -> None:
    key, cert = recipient("p256")
    msg = protect(MSG, mode="encrypt", recipients=[cert])
    mbox = b"From alice@example.com Sat Apr 13 01:54:30 2013\r\n" + msg
    assert decrypt(mbox, [(key, cert)]).content.endswith(b"unchanged.\r\n")


def test_3des_is_never_chosen_for_sending() -> None:
    from smime.envelope import choose_cipher

    assert choose_cipher([["3des-cbc"]]) == "aes128-cbc"
    assert choose_cipher([["des-ede3-cbc", "rc2-cbc"]]) == "aes128-cbc"


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["Alice", "Bob", "Dave"])
def test_thunderbird_pkcs12_loads_without_the_fallback_warning(vectors_dir: Path,
                                                                name: str) -> None:
    """NSS writes PKCS#12 in BER; cryptography warns it may stop reading that (issue 14)."""
    p12 = vectors_dir / "clients" / "thunderbird" / f"{name}.p12"
    if not p12.is_file():
        pytest.skip(f"{p12} not found (the client corpus beside the checkout)")
    assert p12.read_bytes()[:2] == b"\x30\x80"  # indefinite length: BER, as NSS writes it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _key, cert, _chain = load_pkcs12(p12.read_bytes(), b"nss")
    assert f"{name}@example.com" in cert.subject.rfc4514_string()
