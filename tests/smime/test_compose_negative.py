"""`unwrap` never says "verified" unless a verified signature covers what the user sees."""

from __future__ import annotations

import base64
import re

import pytest
from compose_util import MSG, ca, recipient, signer, user
from pki import issue

from smime import Signer, TrustStore, protect, unwrap
from smime.envelope import encrypt_content
from smime.errors import DecryptionError


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore((ca().root.asn1,))


def _reasons(res: object) -> list[str]:
    return [code for code, _ in res.errors]


def _head_body(message: bytes) -> tuple[bytes, bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    return head, body


def _p7m(entity: bytes, smime_type: bytes, cipher: str = "aes256-gcm") -> bytes:
    """A whole message whose body is an envelope around `entity` (no signature inside)."""
    _, cert = recipient("p256")
    der = encrypt_content(entity, [cert], cipher=cipher)
    return (
        b"From: alice@example.com\r\nTo: bob@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type
        + b'; name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_tampered_inner_signed_layer(cipher: str, trust: TrustStore) -> None:
    """Sign, tamper the signed text, then encrypt: decryption works, verification must not."""
    plain = MSG.replace(b"Caf\xc3\xa9", b"Cafe")  # 7-bit: the text is signed as is
    signed = protect(plain, mode="sign", signer=signer("p256"), form="detached")
    entity = signed[signed.index(b"Content-Type: multipart/signed"):]
    tampered = entity.replace(b"Revenue is up.", b"Revenue is down")
    assert tampered != entity
    key, cert = recipient("p256")
    msg = _p7m(tampered, b"authEnveloped-data" if "gcm" in cipher else b"enveloped-data",
               cipher)
    res = unwrap(msg, keys=[(key, cert)], trust=trust)
    assert [(layer.kind, layer.ok) for layer in res.layers] == [("encrypted", True),
                                                                ("signed", False)]
    assert (res.signed, res.verified, res.signers) == (True, False, ())
    assert "bad-digest" in _reasons(res) or any("digest" in r for r in _reasons(res))


def test_wrong_key_and_corrupt_envelope_look_the_same(trust: TrustStore) -> None:
    _, cert = recipient("rsa")
    other = recipient("rsa", "mallory")
    out = protect(MSG, mode="sign-encrypt", signer=signer("rsa2048"), recipients=[cert],
                  cipher="aes128-cbc")
    wrong = unwrap(out, keys=[other], trust=trust)
    head, body = _head_body(out)
    der = bytearray(base64.b64decode(body))
    der[-20] ^= 1  # flip a ciphertext bit: CBC padding or garbage
    corrupt = head + b"\r\n\r\n" + base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    broken = unwrap(corrupt, keys=[recipient("rsa")], trust=trust)
    for res in (wrong, broken):
        assert res.errors == (("decryption-failed", DecryptionError.MESSAGE),)
        assert (res.encrypted, res.signed, res.verified) == (True, False, False)
        assert res.content == (out if res is wrong else corrupt)  # nothing half-decrypted
    assert [layer.reasons for layer in wrong.layers] == [layer.reasons for layer in broken.layers]


def test_layer_bomb_stops_at_max_layers(trust: TrustStore) -> None:
    out = MSG
    for _ in range(6):
        out = protect(out, mode="sign", signer=signer("p256"), form="opaque")
    res = unwrap(out, trust=trust, max_layers=4)
    assert len(res.layers) == 4
    assert "too-many-layers" in _reasons(res)
    assert res.verified is False and res.content == out
    assert unwrap(out, trust=trust, max_layers=6).verified


def test_lying_label_envelope_around_unsigned_body(trust: TrustStore) -> None:
    """Labelled signed-data, actually an envelope around plain text: never 'signed'."""
    key, cert = recipient("p256")
    msg = _p7m(b"Content-Type: text/plain\r\n\r\nPay the invoice.\r\n", b"signed-data")
    res = unwrap(msg, keys=[(key, cert)], trust=trust)
    assert [layer.kind for layer in res.layers] == ["encrypted"]
    assert (res.encrypted, res.signed, res.verified) == (True, False, False)
    assert b"Pay the invoice." in res.content


def test_envelope_around_mixed_with_signed_part(trust: TrustStore) -> None:
    """Attacker text beside a genuinely signed part, all encrypted: partially signed."""
    signed = protect(MSG, mode="sign", signer=signer("p256"))
    part = signed[signed.index(b"Content-Type: multipart/signed"):]
    mixed = (
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain\r\n\r\nWire the money to account 666.\r\n--b1\r\n"
        + part + b"\r\n--b1--\r\n"
    )
    key, cert = recipient("p256")
    res = unwrap(_p7m(mixed, b"authEnveloped-data"), keys=[(key, cert)], trust=trust)
    assert res.verified is False and "partially-signed" in _reasons(res)


def test_top_level_mixed_with_signed_part(trust: TrustStore) -> None:
    signed = protect(MSG, mode="sign", signer=signer("p256"))
    part = signed[signed.index(b"Content-Type: multipart/signed"):]
    msg = (
        b'From: alice@example.com\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nattacker text\r\n--b1\r\n" + part
        + b"\r\n--b1--\r\n"
    )
    res = unwrap(msg, trust=trust)
    assert (res.signed, res.verified, res.content) == (False, False, msg)
    assert _reasons(res) == ["partially-signed"]


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_encrypt_then_sign_does_not_verify_plaintext(cipher: str, trust: TrustStore) -> None:
    key, cert = recipient("p256")
    env = protect(MSG, mode="encrypt", recipients=[cert], cipher=cipher)
    out = protect(env, mode="sign", signer=signer("p256"))
    res = unwrap(out, keys=[(key, cert)], trust=trust)
    assert [(layer.kind, layer.ok) for layer in res.layers] == [("signed", True),
                                                                ("encrypted", True)]
    assert (res.signed, res.encrypted, res.verified) == (True, True, False)
    assert "unsigned-content" in _reasons(res)


def test_cbc_outside_verified_signature_is_flagged_in_layer(trust: TrustStore) -> None:
    key, cert = recipient("rsa")
    out = protect(MSG, mode="sign-encrypt", signer=signer("rsa2048"), recipients=[cert],
                  cipher="aes256-cbc")
    res = unwrap(out, keys=[(key, cert)], trust=trust)
    # CBC tampering would break the inner signature, so the content is verified; the layer
    # still says it was not authenticated encryption (smime.md 9.1 rule 3).
    assert res.verified and res.layers[0].authenticated is False


def test_triple_with_gateway_outer_signer(trust: TrustStore) -> None:
    gw = issue("gateway@example.com", ca().inter, emails=["gateway@example.com"], kind="p256")
    gateway = Signer(gw.key, gw.cert, (ca().inter.cert,))
    key, cert = recipient("p256")
    inner = protect(MSG, mode="sign-encrypt", signer=signer("p256"), recipients=[cert])
    out = protect(inner, mode="sign", signer=gateway)
    res = unwrap(out, keys=[(key, cert)], trust=trust)
    assert res.verified, res.errors
    # The hop signer is not the author (its address is not From): not offered for harvesting.
    assert [c.dump() for c in res.signers] == [user("p256").asn1.dump()]
    assert res.layers[0].ok and res.layers[0].verify is not None
    # The author's own signature must still match From.
    bad = protect(MSG, mode="triple", signer=gateway, recipients=[cert])
    res = unwrap(bad, keys=[(key, cert)], trust=trust)
    assert not res.verified and "from-mismatch" in _reasons(res)


def test_tampered_outer_signature_of_triple(trust: TrustStore) -> None:
    key, cert = recipient("p256")
    out = protect(MSG, mode="triple", signer=signer("p256"), recipients=[cert])
    lines = out.split(b"\r\n")
    # Change one base64 line of the enveloped part (covered by the outer signature).
    i = next(n for n, line in enumerate(lines)
             if re.fullmatch(rb"[A-Za-z0-9+/]{76}", line) and n > 12)
    lines[i] = lines[i][:10] + (b"A" if lines[i][10:11] != b"A" else b"B") + lines[i][11:]
    res = unwrap(b"\r\n".join(lines), keys=[(key, cert)], trust=trust)
    assert not res.verified and res.layers[0].ok is False


def test_untrusted_signer(trust: TrustStore) -> None:
    out = protect(MSG, mode="sign", signer=signer("p256"))
    res = unwrap(out, trust=TrustStore())
    assert res.signed and not res.verified and "untrusted" in _reasons(res)


def test_malformed_signature_is_clean(trust: TrustStore) -> None:
    out = protect(MSG, mode="sign", signer=signer("p256"), form="opaque")
    head, _ = _head_body(out)
    res = unwrap(head + b"\r\n\r\nMIIBAAAA\r\n", trust=trust)
    assert res.signed and not res.verified and res.errors
