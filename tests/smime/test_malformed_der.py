"""Malformed DER must give one clean MalformedError, fast, never a recursion error."""

from __future__ import annotations

import base64

import pytest
from pki import NOW, make_pki

from smime import TrustStore, sign_content, verify_content
from smime.errors import MalformedError, UnsupportedError


def _good() -> bytes:
    pki = make_pki()
    user = pki.user(kind="p256")
    return sign_content(b"Content-Type: text/plain\r\n\r\nhi\r\n", user.key, user.asn1, now=NOW)


GOOD = _good()
DEEP = b"\x30\x80" * 10_000  # 10,000-deep indefinite nesting
DEEP_DEF = b"".join(b"\x30\x84" + (4 * (10_000 - i)).to_bytes(4, "big") for i in range(10_000))


@pytest.mark.parametrize(
    ("der", "match"),
    [
        (b"", "empty"),
        (GOOD[: len(GOOD) // 2], "claims|truncated"),
        (GOOD[:1], "truncated"),
        (GOOD + b"\x00\x00", "trailing"),
        (b"\x30\x89" + b"\xff" * 9, "bad length"),
        (b"\x30\x84\x06\x40\x00\x00" + b"\x00" * 10, "claims"),  # 100 MB claimed
        (DEEP, "nesting"),
        (DEEP_DEF, "nesting|claims"),
        (b"\x30\x03\x02\x01\x01", "not a valid SignedData|content type"),
        (b"\x04\x03abc", "not a valid SignedData"),
    ],
    ids=["empty", "half", "one-byte", "trailing", "overlong-length", "100MB-claim", "deep-ber",
         "deep-der", "wrong-structure", "octet-string"],
)
def test_malformed(der: bytes, match: str) -> None:
    with pytest.raises((MalformedError, UnsupportedError), match=match):
        verify_content(der, b"x", trust=TrustStore(), now=NOW)


def test_every_truncation_is_clean() -> None:
    for cut in range(0, len(GOOD), 7):
        with pytest.raises(MalformedError):
            verify_content(GOOD[:cut], b"x", trust=TrustStore(), now=NOW)


def test_bit_flips_never_crash() -> None:
    for pos in range(0, len(GOOD), 3):
        bad = bytearray(GOOD)
        bad[pos] ^= 0x40
        try:
            res = verify_content(bytes(bad), b"Content-Type: text/plain\r\n\r\nhi\r\n",
                                 trust=TrustStore(), now=NOW)
        except (MalformedError, UnsupportedError):
            continue
        assert not res.verified  # no trust anchor: never verified, but a clean result


def test_an_issuer_name_that_cannot_be_prepared_is_no_match() -> None:
    # Found by the smime_mime fuzz target: comparing names prepares their strings, and
    # asn1crypto raises ValueError for unassigned code points; the signer's certificate is
    # then simply not the one the SignerInfo names.
    from asn1crypto import cms, x509

    info = cms.ContentInfo.load(GOOD)
    signer = info["content"]["signer_infos"][0]
    serial = signer["sid"].chosen["serial_number"].native
    signer["sid"] = cms.SignerIdentifier({"issuer_and_serial_number": {
        "issuer": x509.Name.build({"common_name": "x\u0378"}), "serial_number": serial}})
    res = verify_content(info.dump(force=True), b"Content-Type: text/plain\r\n\r\nhi\r\n",
                         trust=TrustStore(), now=NOW)
    assert not res.verified


def test_a_signer_certificate_cryptography_refuses_names_no_signer() -> None:
    # Found by running mutated client messages through the gateway's stages: asn1crypto
    # reads a PrintableString with "@" in it, cryptography refuses the certificate, and the
    # S/MIME stage failed the message (moved to hold) naming its signer.
    from asn1crypto import cms, core, x509

    from runtime.pipeline.stages.smime_ops import unwrap

    info = cms.ContentInfo.load(GOOD)
    cert = info["content"]["certificates"][0].chosen
    rdn = x509.RelativeDistinguishedName([x509.NameTypeAndValue({
        "type": "organization_name", "value": x509.DirectoryString(
            name="printable_string", value=core.PrintableString("x"))})])
    bad = x509.Name.load(cert["tbs_certificate"]["subject"].dump())
    bad.chosen.append(rdn)
    raw = bad.dump(force=True).replace(b"\x13\x01x", b"\x13\x01@")
    cert["tbs_certificate"]["subject"] = x509.Name.load(raw)
    message = (b"From: a@example.com\r\nContent-Type: application/pkcs7-mime; "
               b"smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(info.dump(force=True)))
    res = unwrap(message, keys=[], trust=TrustStore(), now=NOW)
    assert not res.verified and res.signers == ()


def test_a_boundary_with_8bit_bytes_is_found_or_refused() -> None:
    # Read as text (a Content-Type too costly to parse), it raised UnicodeEncodeError and the
    # stage failed the message; parsed, its 8-bit byte is U+FFFD and nothing matches.
    from smime import mime
    from smime.errors import MalformedError

    for extra, found in ((b"", False), (b"; x=y" * 100, True)):
        msg = (b"From: <a@example.com>\r\n"
               b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
               b'boundary="b\xff"' + extra + b"\r\n\r\n--b\xff\r\nContent-Type: text/plain\r\n\r\n"
               b"hi\r\n--b\xff\r\nContent-Type: application/pkcs7-signature\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b\xff--\r\n")
        if found:
            assert mime.locate_signed(msg).signed_part == b"Content-Type: text/plain\r\n\r\nhi"
        else:
            with pytest.raises(MalformedError):
                mime.locate_signed(msg)
