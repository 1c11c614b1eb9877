"""Encrypt then decrypt: every cipher x key type, padding, many recipients, MIME shape."""

from __future__ import annotations

import base64
import itertools

import pytest
from keys_util import KINDS, recipient

from smime.envelope import (
    CIPHERS,
    choose_cipher,
    decrypt,
    decrypt_content,
    encrypt,
    encrypt_content,
)
from smime.errors import DecryptionError, EncryptionError

MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hello\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
    b"\r\nHello Bob,\nsecret line\n"
)


@pytest.mark.parametrize(("cipher", "kind"), list(itertools.product(CIPHERS, KINDS)))
def test_round_trip_every_cipher_and_key_type(cipher: str, kind: str) -> None:
    key, cert = recipient(kind)
    out = encrypt(MESSAGE, [cert], cipher=cipher)
    result = decrypt(out, [(key, cert)])
    assert result.content == (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
        b"\r\nHello Bob,\r\nsecret line\r\n"
    )
    assert result.cipher == cipher
    assert result.authenticated is cipher.endswith("gcm")
    assert result.legacy is False
    assert result.recipient == cert


@pytest.mark.parametrize("cipher", CIPHERS)
def test_rsa_oaep_round_trip(cipher: str) -> None:
    key, cert = recipient("rsa")
    der = encrypt_content(b"payload", [cert], cipher=cipher, rsa_padding="oaep")
    assert decrypt_content(der, [(key, cert)]).content == b"payload"


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_many_recipients_each_can_decrypt(cipher: str) -> None:
    people = [recipient(kind, name) for kind in KINDS for name in ("bob", "carol")]
    der = encrypt_content(b"to all", [cert for _, cert in people], cipher=cipher)
    for key, cert in people:
        result = decrypt_content(der, [(key, cert)])
        assert result.content == b"to all"
        assert result.recipient == cert


def test_decrypt_picks_the_matching_key_among_several() -> None:
    bob, carol = recipient("rsa", "bob"), recipient("p256", "carol")
    der = encrypt_content(b"x", [carol[1]])
    assert decrypt_content(der, [bob, carol]).recipient == carol[1]


def test_outer_headers_kept_and_content_headers_inside() -> None:
    _, cert = recipient("rsa")
    out = encrypt(MESSAGE, [cert], cipher="aes256-gcm")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"From: alice@example.test" in head
    assert b"Subject: hello" in head
    assert b"charset=utf-8" not in head
    assert b"smime-type=authEnveloped-data" in head
    assert base64.b64decode(body)[:1] == b"\x30"
    cbc = encrypt(MESSAGE, [cert], cipher="aes128-cbc")
    assert b"smime-type=enveloped-data" in cbc


@pytest.mark.parametrize(
    ("caps", "forced", "expected"),
    [
        (None, None, "aes256-gcm"),
        ([["aes256-gcm", "aes128-cbc"], ["aes256-gcm"]], None, "aes256-gcm"),
        ([["aes128-gcm", "aes256-gcm"], ["aes128-gcm"]], None, "aes128-gcm"),
        ([["aes256-gcm", "aes256-cbc"], ["aes256-cbc", "aes128-cbc"]], None, "aes256-cbc"),
        ([["aes256-gcm"], []], None, "aes128-cbc"),
        ([["2.16.840.1.101.3.4.1.46"], ["2.16.840.1.101.3.4.1.46"]], None, "aes256-gcm"),
        ([["aes256-gcm"]], "aes128-cbc", "aes128-cbc"),
        # What the verifier reports from a signer's smimeCapabilities (asn1crypto's names).
        ([["aes256_gcm", "aes128_cbc"], ["aes256-gcm"]], None, "aes256-gcm"),
    ],
)
def test_choose_cipher(caps: list[list[str]] | None, forced: str | None, expected: str) -> None:
    assert choose_cipher(caps, forced) == expected


def test_unknown_cipher_or_no_recipient_is_an_encryption_error() -> None:
    _, cert = recipient("rsa")
    with pytest.raises(EncryptionError, match="cipher"):
        encrypt_content(b"x", [cert], cipher="rc2")
    with pytest.raises(EncryptionError, match="recipient"):
        encrypt_content(b"x", [])


def test_encrypting_to_someone_else_does_not_decrypt_for_me() -> None:
    _, bob = recipient("rsa", "bob")
    carol = recipient("rsa", "carol")
    der = encrypt_content(b"x", [bob])
    with pytest.raises(DecryptionError):
        decrypt_content(der, [carol])


def test_signing_only_certificate_is_refused_as_recipient() -> None:
    from smime.certs import CertificateSpec, create_self_signed

    for key_type in ("rsa-2048", "p256"):
        cert = create_self_signed(
            CertificateSpec(common_name="signer", key_type=key_type, usage="signing")
        ).certificate
        with pytest.raises(EncryptionError, match="may sign but not receive"):
            encrypt_content(b"x", [cert])
