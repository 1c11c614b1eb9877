"""Every decryption failure looks the same: one class, one wording (no oracle)."""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import Callable

import pytest
from asn1crypto import cms
from keys_util import recipient
from wrong_cek import corrupted, wrong_cek_envelope

from smime.compose import DECRYPTION_FAILED, unwrap
from smime.envelope import decrypt, decrypt_content, encrypt_content
from smime.errors import DecryptionError, MalformedError
from smime.trust import TrustStore

decrypt_entity = functools.partial(decrypt_content, entity=True)

CONTENT = b"Content-Type: text/plain\r\n\r\n" + b"attack at dawn " * 20


def _flip_ciphertext(der: bytes) -> bytes:
    info = cms.ContentInfo.load(der)
    body = info["content"]
    key = "encrypted_content_info" if "encrypted_content_info" in body else "auth_encrypted_content_info"
    ct = bytearray(body[key]["encrypted_content"].native)
    ct[len(ct) // 2] ^= 0x01
    return der.replace(body[key]["encrypted_content"].native, bytes(ct))


def _flip_last_byte_of_ciphertext(der: bytes) -> bytes:
    # For CBC this hits the padding block: the classic padding-oracle probe.
    info = cms.ContentInfo.load(der)
    body = info["content"]
    key = "encrypted_content_info" if "encrypted_content_info" in body else "auth_encrypted_content_info"
    ct = body[key]["encrypted_content"].native
    return der.replace(ct, ct[:-17] + bytes([ct[-17] ^ 0x5A]) + ct[-16:])


def _bad_tag(der: bytes) -> bytes:
    mac = cms.ContentInfo.load(der)["content"]["mac"].native
    return der.replace(mac, mac[:-1] + bytes([mac[-1] ^ 1]))


def _truncate(der: bytes) -> bytes:
    return der[: len(der) - 7]


def _corrupt_encrypted_key(der: bytes) -> bytes:
    ri = cms.ContentInfo.load(der)["content"]["recipient_infos"][0]
    if ri.name == "kari":
        ek = ri.chosen["recipient_encrypted_keys"][0]["encrypted_key"].native
    else:
        ek = ri.chosen["encrypted_key"].native
    return der.replace(ek, ek[:10] + bytes([ek[10] ^ 0xFF]) + ek[11:])


def _malformed_recipient_info(der: bytes) -> bytes:
    ri = cms.ContentInfo.load(der)["content"]["recipient_infos"][0].dump()
    broken = ri[:2] + b"\x02\x05" + ri[4:]  # the version INTEGER now claims 5 octets
    return der.replace(ri, broken)


TAMPERS: dict[str, Callable[[bytes], bytes]] = {
    "flipped-ciphertext": _flip_ciphertext,
    "flipped-padding-block": _flip_last_byte_of_ciphertext,
    "truncated": _truncate,
    "corrupt-encrypted-key": _corrupt_encrypted_key,
    "malformed-recipient-info": _malformed_recipient_info,
    "empty": lambda der: b"",
    "garbage": lambda der: b"\x30\x03\x02\x01\x00",
}


def _assert_uniform(exc: pytest.ExceptionInfo[DecryptionError]) -> None:
    assert type(exc.value) is DecryptionError
    assert str(exc.value) == DecryptionError.MESSAGE
    assert exc.value.__cause__ is None
    assert exc.value.__suppress_context__


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
@pytest.mark.parametrize("tamper", list(TAMPERS))
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_tampered_envelope_gives_the_one_error(cipher: str, tamper: str, kind: str) -> None:
    key, cert = recipient(kind)
    der = encrypt_content(CONTENT, [cert], cipher=cipher)
    bad = TAMPERS[tamper](der)
    assert bad != der
    if tamper == "flipped-ciphertext" and cipher.endswith("cbc"):
        # A CBC flip in a middle block decrypts "successfully" to garbage: that is CBC's
        # nature (EFAIL), and why the result says it is unauthenticated.
        result = decrypt_content(bad, [(key, cert)])
        assert not result.authenticated and result.content != CONTENT
        return
    with pytest.raises(DecryptionError) as exc:
        decrypt_content(bad, [(key, cert)])
    _assert_uniform(exc)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_bad_gcm_tag(kind: str) -> None:
    key, cert = recipient(kind)
    der = encrypt_content(CONTENT, [cert], cipher="aes128-gcm")
    with pytest.raises(DecryptionError) as exc:
        decrypt_content(_bad_tag(der), [(key, cert)])
    _assert_uniform(exc)


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_wrong_key_and_no_key(cipher: str) -> None:
    _, bob = recipient("rsa", "bob")
    carol = recipient("rsa", "carol")
    der = encrypt_content(CONTENT, [bob], cipher=cipher)
    for keys in ([carol], [], [(carol[0], bob)]):
        with pytest.raises(DecryptionError) as exc:
            decrypt_content(der, keys)  # type: ignore[arg-type]
        _assert_uniform(exc)


@pytest.mark.parametrize(
    "der",
    [
        b"\x30\x84\x06\x00\x00\x00" + b"\x00" * 10,  # claims ~100 MB, holds 10 bytes
        b"\x30\x80" * 10_000,  # 10,000-deep indefinite nesting
        b"\x30" * 20_000,
        b"\x04\x01A",
    ],
    ids=["huge-claimed-length", "deep-nesting", "tags-only", "not-a-sequence"],
)
def test_hostile_der_is_refused_cleanly(der: bytes) -> None:
    _, cert = recipient("rsa")
    with pytest.raises(DecryptionError) as exc:
        decrypt_content(der, [(recipient("rsa")[0], cert)])
    _assert_uniform(exc)


def test_broken_base64_body_is_the_one_error() -> None:
    key, cert = recipient("rsa")
    message = (
        b"To: bob@example.test\r\nContent-Type: application/pkcs7-mime; "
        b"smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n!!notbase64!!\r\n"
    )
    with pytest.raises(DecryptionError) as exc:
        decrypt(message, [(key, cert)])
    _assert_uniform(exc)


def test_plain_message_is_malformed_not_a_decryption_failure() -> None:
    key, cert = recipient("rsa")
    with pytest.raises(MalformedError, match="not encrypted"):
        decrypt(b"Content-Type: text/plain\r\n\r\nhi\r\n", [(key, cert)])


@pytest.mark.parametrize(
    ("der", "where"),
    [
        (b"\x30\x84\x06\x00\x00\x00" + b"\x00" * 10, "ContentInfo"),
        (b"\x30\x80" * 10_000, "ContentInfo"),
        (b"", "SEQUENCE"),
        (b"\x04\x01A", "SEQUENCE"),
    ],
    ids=["huge-claimed-length", "deep-nesting", "empty", "not-a-sequence"],
)
def test_inspect_names_where_hostile_der_breaks(der: bytes, where: str) -> None:
    from smime.envelope import inspect_envelope

    with pytest.raises(MalformedError, match=where):
        inspect_envelope(der)


def test_inspect_outline_and_broken_recipient_info() -> None:
    from smime.envelope import inspect_envelope

    _, rsa_cert = recipient("rsa")
    _, ec_cert = recipient("p256")
    der = encrypt_content(CONTENT, [rsa_cert, ec_cert], cipher="aes128-gcm")
    info = inspect_envelope(der)
    assert info.kind == "authEnveloped-data" and info.cipher == "aes128-gcm"
    assert sorted(info.recipients) == ["kari", "ktri"]
    with pytest.raises(MalformedError, match="recipientInfos"):
        inspect_envelope(_malformed_recipient_info(der))


def test_wrong_cek_whose_padding_looks_valid_is_the_one_error() -> None:
    """CBC padding is a weak check (1 in 256 wrong keys pass it): the MIME structure of the
    content is the rest, and failing it is the same one error, never random bytes."""
    key, cert = recipient("rsa", "bob")
    for seed in range(3):
        der = wrong_cek_envelope(CONTENT, cert, seed)
        assert decrypt_content(der, [(key, cert)]).content != CONTENT  # random bytes, unpadded
        message = (b"To: bob@example.test\r\nContent-Type: application/pkcs7-mime; "
                   b"smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + base64.encodebytes(der))
        with pytest.raises(DecryptionError) as exc:
            decrypt(message, [(key, cert)])
        _assert_uniform(exc)
        res = unwrap(message, keys=[(key, cert)], trust=TrustStore(()))
        assert res.errors == (DECRYPTION_FAILED,) and res.content == message


def test_corrupted_private_key_never_yields_content() -> None:
    """A corrupted RSA key, 300 envelopes: every one is the one error (before, about 1 in
    200 came back as random bytes 'decrypted')."""
    key, cert = recipient("rsa", "bob")
    bad = corrupted(key)  # type: ignore[arg-type]
    for _ in range(300):
        with pytest.raises(DecryptionError) as exc:
            decrypt_entity(encrypt_content(CONTENT, [cert], cipher="aes128-cbc"), [(bad, cert)])
        _assert_uniform(exc)


def test_random_bytes_after_a_line_break_are_no_entity() -> None:
    """Random content starts with a line break about once in 256: an entity without header
    fields is text/plain, so its body must be text (this made the test above fail 1 run in
    80)."""
    from smime import mime

    noise = random.Random(7).randbytes(64)
    assert not mime.is_plausible_content(b"\r\n" + noise)
    assert not mime.is_plausible_content(b"\n" + noise)
    assert mime.is_plausible_content(b"\r\nno header fields, just text\r\n")
