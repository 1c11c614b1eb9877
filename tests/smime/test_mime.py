"""MIME layer: canonical form, header split, locating the signed structure."""

from __future__ import annotations

import base64

import pytest

from smime.errors import MalformedError
from smime.mime import canonicalise, locate_signed, split_message


@pytest.mark.parametrize(
    ("body", "encoded"),
    [
        (b"plain ascii\n", False),
        (b"caf\xc3\xa9\n", True),
        (b"trailing space \n", True),
        (b"x" * 100 + b"\n", True),
        (b"From the start\n", True),
    ],
    ids=["ascii", "8bit", "trailing-ws", "long-line", "from-line"],
)
def test_canonicalise(body: bytes, encoded: bool) -> None:
    out = canonicalise(b"Content-Type: text/plain\n\n" + body)
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert (b"Content-Transfer-Encoding: base64" in out) == encoded
    assert max(out) < 128


def test_split_message_moves_content_headers() -> None:
    outer, inner = split_message(
        b"From: a@x\nSubject: s\nMIME-Version: 1.0\nContent-Type: text/html\n\n<p>hi</p>\n"
    )
    assert outer == [b"From: a@x", b"Subject: s"]
    assert inner.startswith(b"Content-Type: text/html\r\n\r\n")


def test_default_content_type() -> None:
    _, inner = split_message(b"From: a@x\n\nhello\n")
    assert inner.startswith(b"Content-Type: text/plain; charset=us-ascii")


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"Content-Type: multipart/signed\r\n\r\nx", "boundary"),
        (b'Content-Type: multipart/signed; boundary="b"\r\n\r\nno parts', "first boundary"),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAA==",
         "not signed"),
        (b"Content-Type: application/pkcs7-mime\r\n\r\n!!!", "base64"),
        (b"Content-Type: text/plain\r\n\r\nhi", "no S/MIME signature"),
    ],
    ids=["no-boundary", "no-parts", "enveloped", "bad-base64", "plain"],
)
def test_locate_errors(message: bytes, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        locate_signed(message)


def test_locate_keeps_signed_bytes_exact() -> None:
    part = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=\r\nb"
    msg = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=B\r\n'
        b"\r\n--B\r\n" + part + b"\r\n--B\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
        b"MAA=\r\n--B--\r\n"
    )
    found = locate_signed(msg)
    assert found.signed_part == part
    assert found.der == b"0\x00"


def test_reencoding_decodes_quoted_printable_first() -> None:
    """An entity whose quoted-printable breaks RFC 2045 (a 78-character line) must become
    base64 of the text, not base64 of the escapes: the recipient reads 'Café', not '=C3=A9'."""
    entity = (b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
              + b"a" * 77 + b"=\r\nCaf=C3=A9 =3D 1\r\n")
    head, body = canonicalise(entity).split(b"\r\n\r\n", 1)
    assert head.endswith(b"Content-Transfer-Encoding: base64")
    assert head.count(b"Content-Transfer-Encoding") == 1
    assert base64.b64decode(body) == b"a" * 77 + "Café = 1\r\n".encode()
