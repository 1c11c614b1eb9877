"""The composer: every mode x key type x cipher x form round-trips through `unwrap`."""

from __future__ import annotations

import base64

import pytest
from compose_util import CIPHERS, KINDS, MSG, ca, recipient, signer, user
from pki import issue

from smime import Signer, TrustStore, is_smime, protect, unwrap
from smime.errors import EncryptionError, SigningError


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore((ca().root.asn1,))


def _inner_ok(content: bytes) -> None:
    head, _, body = content.partition(b"\r\n\r\n")
    assert b"Subject: quarterly figures" in head
    assert b"Content-Type: text/plain" in head
    # 8-bit text was made 7-bit safe before signing; it decodes to the original.
    if b"base64" in head:
        body = base64.b64decode(body)
    assert body == b"Revenue is up.\r\nCaf\xc3\xa9 budget unchanged.\r\n"


def _check_routing(out: bytes, smime_type: bytes) -> None:
    head = out.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"From: alice@example.com\r\nTo: bob@example.test\r\nSubject: ")
    assert head.count(b"Content-Type:") == 1 and smime_type in head
    assert b"charset=utf-8" not in head  # content headers moved inside


@pytest.mark.parametrize("form", ["detached", "opaque"])
@pytest.mark.parametrize("kind", KINDS)
def test_sign_roundtrip(kind: str, form: str, trust: TrustStore) -> None:
    out = protect(MSG, mode="sign", signer=signer(kind), form=form)
    _check_routing(out, b"multipart/signed" if form == "detached" else b"signed-data")
    assert is_smime(out) == (True, False)
    res = unwrap(out, trust=trust)
    assert (res.signed, res.encrypted, res.verified, res.errors) == (True, False, True, ())
    assert [(layer.kind, layer.form) for layer in res.layers] == [("signed", form)]
    assert [c.dump() for c in res.signers] == [user(kind).asn1.dump()]
    _inner_ok(res.content)


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("rkind", ["rsa", "p256", "p384"])
def test_encrypt_roundtrip(rkind: str, cipher: str, trust: TrustStore) -> None:
    key, cert = recipient(rkind)
    out = protect(MSG, mode="encrypt", recipients=[cert], cipher=cipher)
    gcm = cipher.endswith("gcm")
    _check_routing(out, b"authEnveloped-data" if gcm else b"smime-type=enveloped-data")
    assert is_smime(out) == (False, True)
    res = unwrap(out, keys=[(key, cert)], trust=trust)
    assert (res.encrypted, res.signed, res.verified) == (True, False, False)
    assert res.layers[0].cipher == cipher and res.layers[0].authenticated is gcm
    # CBC without a signature inside is flagged (smime.md 9.1 rule 3).
    assert [e[0] for e in res.errors] == ([] if gcm else ["unauthenticated-encryption"])
    _inner_ok(res.content)


@pytest.mark.parametrize("form", ["detached", "opaque"])
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["sign-encrypt", "triple"])
def test_layered_roundtrip(mode: str, kind: str, cipher: str, form: str,
                           trust: TrustStore) -> None:
    key, cert = recipient(KINDS[kind])
    out = protect(MSG, mode=mode, signer=signer(kind), recipients=[cert], cipher=cipher,
                  form=form)
    assert is_smime(out) == ((True, False) if mode == "triple" else (False, True))
    res = unwrap(out, keys=[(key, cert)], trust=trust)
    expected = ["encrypted", "signed"] if mode == "sign-encrypt" else [
        "signed", "encrypted", "signed"]
    assert [layer.kind for layer in res.layers] == expected
    assert all(layer.ok for layer in res.layers)
    assert (res.encrypted, res.signed, res.verified, res.errors) == (True, True, True, ())
    enc = next(layer for layer in res.layers if layer.kind == "encrypted")
    assert enc.cipher == cipher and enc.authenticated is cipher.endswith("gcm")
    _inner_ok(res.content)


def test_cipher_from_capabilities(trust: TrustStore) -> None:
    key, cert = recipient("rsa")
    out = protect(MSG, mode="encrypt", recipients=[cert],
                  capabilities=[["aes256-cbc", "aes128-cbc"]])
    assert unwrap(out, keys=[(key, cert)], trust=trust).layers[0].cipher == "aes256-cbc"


def test_many_recipients_and_encrypt_to_self(trust: TrustStore) -> None:
    keys = [recipient("rsa"), recipient("p256"), recipient("p384", "carol")]
    # No key usage extension: one certificate for signing and encryption.
    dual = issue("alice@example.com", ca().inter, emails=["alice@example.com"], key_usage=None)
    me = Signer(dual.key, dual.cert, (ca().inter.cert,))
    out = protect(MSG, mode="sign-encrypt", signer=me, recipients=[c for _, c in keys],
                  encrypt_to_self=True)
    for pair in [*keys, (dual.key, dual.cert)]:
        res = unwrap(out, keys=[pair], trust=trust)
        assert res.verified, res.errors


def test_ed25519signer(trust: TrustStore) -> None:
    out = protect(MSG, mode="sign", signer=signer("ed25519"))
    assert b"micalg=sha-512" in out
    assert unwrap(out, trust=trust).verified


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mode": "sign"}, SigningError),
        ({"mode": "triple", "recipients": "R"}, SigningError),
        ({"mode": "encrypt"}, EncryptionError),
        ({"mode": "sign-encrypt", "signer": "S"}, EncryptionError),
        ({"mode": "shout"}, SigningError),
        ({"mode": "sign", "signer": "S", "form": "inline"}, SigningError),
    ],
)
def test_missing_parts_are_errors_never_plaintext(kwargs: dict[str, object],
                                                   error: type[Exception]) -> None:
    if kwargs.get("signer") == "S":
        kwargs["signer"] = signer("p256")
    if kwargs.get("recipients") == "R":
        kwargs["recipients"] = [recipient("rsa")[1]]
    with pytest.raises(error):
        protect(MSG, **kwargs)  # type: ignore[arg-type]


def test_not_smime_is_unchanged(trust: TrustStore) -> None:
    assert is_smime(MSG) == (False, False)
    res = unwrap(MSG, trust=trust)
    assert (res.layers, res.signed, res.encrypted, res.verified) == ((), False, False, False)
    assert res.content == MSG and res.errors == ()


def test_smime_type_without_label_is_sniffed(trust: TrustStore) -> None:
    key, cert = recipient("p256")
    out = protect(MSG, mode="encrypt", recipients=[cert])
    out = out.replace(b"; smime-type=authEnveloped-data", b"")
    assert is_smime(out) == (False, True)
    assert unwrap(out, keys=[(key, cert)], trust=trust).layers[0].ok
