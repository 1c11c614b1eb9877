"""Third-party envelopes (../shared/vectors) with the outcomes of the vectors README."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from smime._keys import load_certificate, load_private_key
from smime.envelope import decrypt, decrypt_content, inspect_envelope
from smime.errors import DecryptionError, UnsupportedError

pytestmark = pytest.mark.vectors

SAMPLE = b"This is some sample content."


def _pem_der(data: bytes) -> bytes:
    lines = [line for line in data.splitlines() if line and not line.startswith(b"-----")]
    return base64.b64decode(b"".join(lines))


def _bob9216(v: Path) -> tuple[object, object]:
    return (
        load_private_key((v / "rfc9216/keys/lamps-bob.decrypt.p8.pem").read_bytes()),
        load_certificate((v / "rfc9216/certs/bob@smime.example.enc.pem").read_bytes()),
    )


def _dana9216(v: Path) -> tuple[object, object]:
    return (
        load_private_key((v / "rfc9216/keys/lamps-dana.decrypt.p8.pem").read_bytes()),
        load_certificate((v / "rfc9216/certs/dana@smime.example.enc.pem").read_bytes()),
    )


def _bob4134(v: Path) -> tuple[object, object]:
    return (
        load_private_key((v / "rfc4134/BobPrivRSAEncrypt.pri").read_bytes()),
        load_certificate((v / "rfc4134/BobRSASignByCarl.cer").read_bytes()),
    )


@pytest.mark.parametrize(
    ("name", "who", "cipher", "authenticated"),
    [
        ("encryptedForBobRSAOaep.p7m", "bob", "aes128-cbc", False),
        ("encryptedForBobAndDana.p7m", "bob", None, False),
        ("encryptedForBobAndDana.p7m", "dana", None, False),
        ("authEnvelopedForBobChaCha20Poly1305.p7m", "bob", "chacha20-poly1305", True),
        ("authEnvelopedForDanaX25519HKDF.p7m", "dana", "aes128-gcm", True),
    ],
)
def test_examples_cms(
    vectors_dir: Path, name: str, who: str, cipher: str | None, authenticated: bool
) -> None:
    keys = _bob9216(vectors_dir) if who == "bob" else _dana9216(vectors_dir)
    result = decrypt_content((vectors_dir / "examples-cms" / name).read_bytes(), [keys])  # type: ignore[list-item]
    assert result.content == SAMPLE
    if cipher is not None:
        assert result.cipher == cipher
    assert result.authenticated is authenticated


def test_kekri_only_envelope_is_the_one_error(vectors_dir: Path) -> None:
    with pytest.raises(DecryptionError):
        decrypt_content((vectors_dir / "examples-cms/encryptedKekri.p7m").read_bytes(),
                        [_bob9216(vectors_dir)])  # type: ignore[list-item]


def test_rfc4134_5_1_3des_is_legacy(vectors_dir: Path) -> None:
    result = decrypt_content((vectors_dir / "rfc4134/5.1.bin").read_bytes(),
                             [_bob4134(vectors_dir)])  # type: ignore[list-item]
    assert result.content == SAMPLE
    assert result.legacy and result.cipher == "3des-cbc" and not result.authenticated


def test_rfc4134_5_2_rc2_is_refused(vectors_dir: Path) -> None:
    # Refused by name (issue 14): RC2 is in clear in the envelope, so naming it is no oracle.
    with pytest.raises(UnsupportedError, match="^rc2-cbc: "):
        decrypt_content((vectors_dir / "rfc4134/5.2.bin").read_bytes(), [_bob4134(vectors_dir)])  # type: ignore[list-item]


def test_rfc4134_5_3_message(vectors_dir: Path) -> None:
    result = decrypt((vectors_dir / "rfc4134/5.3.eml").read_bytes(), [_bob4134(vectors_dir)])  # type: ignore[list-item]
    assert result.content == SAMPLE and result.legacy


def test_bouncycastle_aes192_message(vectors_dir: Path) -> None:
    v = vectors_dir / "bouncycastle-mail"
    keys = (load_private_key((v / "key.pem").read_bytes()), load_certificate((v / "cert.pem").read_bytes()))
    result = decrypt((v / "test192.message").read_bytes(), [keys])
    assert result.cipher == "aes192-cbc"
    assert b"multipart/mixed" in result.content.lower()


@pytest.mark.parametrize(
    ("name", "expected", "legacy"),
    [("enveloped-rsa-oaep.pem", b"Hello, world!", False),
     ("enveloped-triple-des.pem", b"Hello, World!\n", True)],
)
def test_pyca_envelopes(vectors_dir: Path, name: str, expected: bytes, legacy: bool) -> None:
    v = vectors_dir / "pyca-pkcs7"
    keys = (load_private_key((v / "rsa_key.pem").read_bytes()), load_certificate((v / "rsa_ca.pem").read_bytes()))
    result = decrypt_content(_pem_der((v / name).read_bytes()), [keys])
    assert result.content.replace(b"\r\n", b"\n") == expected
    assert result.legacy is legacy


def test_pyca_envelope_without_content_is_the_one_error(vectors_dir: Path) -> None:
    v = vectors_dir / "pyca-pkcs7"
    keys = (load_private_key((v / "rsa_key.pem").read_bytes()), load_certificate((v / "rsa_ca.pem").read_bytes()))
    with pytest.raises(DecryptionError) as exc:
        decrypt_content((v / "enveloped-no-content.der").read_bytes(), [keys])
    assert str(exc.value) == DecryptionError.MESSAGE


def test_outlook_3des_without_key_is_the_one_error(vectors_dir: Path) -> None:
    v = vectors_dir / "bouncycastle-mail"
    keys = (load_private_key((v / "key.pem").read_bytes()), load_certificate((v / "cert.pem").read_bytes()))
    with pytest.raises(DecryptionError):
        decrypt((v / "outlook_2010_beta_sime_msg.eml").read_bytes(), [keys])


@pytest.mark.parametrize(
    ("path", "pem", "kind", "recipients"),
    [("pyca-pkcs7/enveloped.pem", True, "enveloped-data", ("ktri", "ktri")),
     ("examples-cms/encryptedKekri.p7m", False, "enveloped-data", ("kekri",)),
     ("examples-cms/encryptedForBobAndDana.p7m", False, "enveloped-data", ("ktri", "kari"))],
)
def test_parse_only_envelopes(
    vectors_dir: Path, path: str, pem: bool, kind: str, recipients: tuple[str, ...]
) -> None:
    """README "parse only": the outline is read without any key."""
    data = (vectors_dir / path).read_bytes()
    info = inspect_envelope(_pem_der(data) if pem else data)
    assert info.kind == kind
    assert info.recipients == recipients
