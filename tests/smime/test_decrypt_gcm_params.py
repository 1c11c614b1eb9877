"""AES-GCM parameter handling on decrypt: aes-ICVlen DEFAULTs to 12 (smime.md 3.4 trap)."""

from __future__ import annotations

import os

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from keys_util import recipient

from smime._cms_enveloped import GCMParameters
from smime._cms_recipients import recipient_info as _recipient_info
from smime.envelope import decrypt_content
from smime.errors import DecryptionError


def _gcm_envelope(tag_len: int, write_icvlen: int | None, mac_len: int | None = None) -> bytes:
    _, cert = recipient("rsa")
    cek, nonce = os.urandom(16), os.urandom(12)
    enc = Cipher(algorithms.AES(cek), modes.GCM(nonce)).encryptor()
    ciphertext = enc.update(b"short tag content") + enc.finalize()
    params = {"aes_nonce": nonce} if write_icvlen is None else {
        "aes_nonce": nonce, "aes_icvlen": write_icvlen}
    auth = cms.AuthEnvelopedData({
        "version": "v0",
        "recipient_infos": [_recipient_info(cert, cek, "pkcs1v15")],
        "auth_encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "aes128_gcm",
                                             "parameters": GCMParameters(params)},
            "encrypted_content": ciphertext,
        },
        "mac": enc.tag[: mac_len if mac_len is not None else tag_len],
    })
    return cms.ContentInfo({"content_type": "authenticated_enveloped_data",
                            "content": auth}).dump()


@pytest.mark.parametrize(("tag_len", "icvlen"), [(12, None), (12, 12), (14, 14), (16, 16)])
def test_tag_lengths_12_to_16_decrypt(tag_len: int, icvlen: int | None) -> None:
    result = decrypt_content(_gcm_envelope(tag_len, icvlen), [recipient("rsa")])
    assert result.content == b"short tag content" and result.authenticated


@pytest.mark.parametrize(
    ("tag_len", "icvlen", "mac_len"),
    [(16, None, 16), (8, 8, 8), (12, 16, 12), (4, 4, 4)],
    ids=["16-byte-mac-with-default-12", "icvlen-8", "mac-shorter-than-icvlen", "icvlen-4"],
)
def test_mismatched_or_short_tags_are_the_one_error(
    tag_len: int, icvlen: int | None, mac_len: int
) -> None:
    with pytest.raises(DecryptionError) as exc:
        decrypt_content(_gcm_envelope(tag_len, icvlen, mac_len), [recipient("rsa")])
    assert str(exc.value) == DecryptionError.MESSAGE
