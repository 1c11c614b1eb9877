"""Private CMS layer for EnvelopedData and AuthEnvelopedData (RFC 5652, 5083, 5084, 8103).

Built on asn1crypto for the structures and cryptography for the primitives, because
cryptography's own pkcs7 module cannot write AES-GCM, RSA-OAEP or ECDH recipients and cannot
read most real-world envelopes (smime.md 10).

`build` writes an envelope; `open_envelope` reads one. Every failure in `open_envelope`
becomes the one `DecryptionError`: callers must not be able to tell a bad key from bad
padding, a bad tag or a malformed structure (RFC 3218, smime.md 3.3, 9.1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from smime._cms_recipients import recipient_info, recover_cek
from smime._der import OID_AUTH_ENVELOPED_DATA, OID_DATA, OID_ENVELOPED_DATA, content_info, tlv
from smime._keys import PrivateKey
from smime.errors import DecryptionError, EncryptionError, MalformedError, UnsupportedError

# Largest envelope we parse at all: a cap on work for hostile input (smime.md 9.2, last row).
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024

CBC_CIPHERS = {"aes128-cbc": ("aes128_cbc", 16), "aes256-cbc": ("aes256_cbc", 32)}
GCM_CIPHERS = {"aes128-gcm": ("aes128_gcm", 16), "aes256-gcm": ("aes256_gcm", 32)}
CIPHERS = (*CBC_CIPHERS, *GCM_CIPHERS)
# Content-encryption algorithm OIDs as DER (tag, length, value), for `build`.
_CONTENT_OIDS = {
    "aes128_cbc": bytes.fromhex("0609608648016503040102"),
    "aes256_cbc": bytes.fromhex("060960864801650304012a"),
    "aes128_gcm": bytes.fromhex("0609608648016503040106"),
    "aes256_gcm": bytes.fromhex("060960864801650304012e"),
}

# Content-encryption OIDs we decrypt: name -> (cipher name for results, key length, kind).
_DECRYPT_ALGS: dict[str, tuple[str, int, str]] = {
    "2.16.840.1.101.3.4.1.2": ("aes128-cbc", 16, "cbc"),
    "2.16.840.1.101.3.4.1.22": ("aes192-cbc", 24, "cbc"),
    "2.16.840.1.101.3.4.1.42": ("aes256-cbc", 32, "cbc"),
    "1.2.840.113549.3.7": ("3des-cbc", 24, "3des"),
    "2.16.840.1.101.3.4.1.6": ("aes128-gcm", 16, "gcm"),
    "2.16.840.1.101.3.4.1.26": ("aes192-gcm", 24, "gcm"),
    "2.16.840.1.101.3.4.1.46": ("aes256-gcm", 32, "gcm"),
    "1.2.840.113549.1.9.16.3.18": ("chacha20-poly1305", 32, "chacha"),
}

# Public algorithms we never decrypt. The envelope names them in clear, so saying which one it
# is reveals nothing the sender did not already publish (no oracle), and tells the reader why.
UNSUPPORTED_ALGS: dict[str, str] = {
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.3.14.3.2.7": "des-cbc",
    "1.2.840.113549.3.4": "rc4",
}


class GCMParameters(core.Sequence):
    """RFC 5084 GCMParameters; aes-ICVlen DEFAULTs to 12 (smime.md 3.4 trap)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


@attrs.frozen
class Opened:
    """What `open_envelope` recovered."""

    content: bytes
    cipher: str
    authenticated: bool
    legacy: bool
    recipient: x509.Certificate


@attrs.frozen
class EnvelopeInfo:
    """The public outline of an envelope (no key needed): for routing and diagnostics."""

    kind: str  # "enveloped-data" or "authEnveloped-data"
    cipher: str | None  # None when the content cipher is one we do not decrypt
    recipients: tuple[str, ...]  # "ktri", "kari", "kekri", "pwri", "ori" per RecipientInfo


def inspect_envelope(der: bytes) -> EnvelopeInfo:
    """Parse an envelope's outline; malformed DER raises `MalformedError` naming the part.

    Unlike `open_envelope` this needs no key and reveals nothing secret, so it may say where
    the structure is broken.
    """
    if len(der) > MAX_ENVELOPE_BYTES:
        raise MalformedError(f"CMS envelope: {len(der)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    if not der or der[0] != 0x30:
        raise MalformedError("CMS envelope: does not start with a DER SEQUENCE (ContentInfo)")
    where = "ContentInfo"
    try:
        info = cms.ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind not in ("enveloped_data", "authenticated_enveloped_data"):
            raise MalformedError(f"ContentInfo: content type {kind} is not an envelope")
        where = "EnvelopedData" if kind == "enveloped_data" else "AuthEnvelopedData"
        body = info["content"]
        where += ".recipientInfos"
        recipients = tuple(ri.name for ri in body["recipient_infos"])
        for ri in body["recipient_infos"]:
            ri.native  # noqa: B018 - forces a full parse of each recipient info
        where = where.split(".")[0] + ".encryptedContentInfo"
        eci = body["encrypted_content_info" if kind == "enveloped_data"
                   else "auth_encrypted_content_info"]
        oid = eci["content_encryption_algorithm"]["algorithm"].dotted
        eci["encrypted_content"].native  # noqa: B018
    except MalformedError:
        raise
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises many types on bad DER
        raise MalformedError(f"{where}: malformed DER ({type(exc).__name__})") from None
    cipher = _DECRYPT_ALGS.get(oid, (None, 0, ""))[0] or UNSUPPORTED_ALGS.get(oid)
    return EnvelopeInfo(
        kind="enveloped-data" if kind == "enveloped_data" else "authEnveloped-data",
        cipher=cipher,
        recipients=recipients,
    )


# ---------------------------------------------------------------------------------- build


def build(
    content: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: str = "aes256-gcm",
    rsa_padding: str = "pkcs1v15",
) -> bytes:
    """Encrypt `content` (id-data) to every recipient; return the ContentInfo DER."""
    if not recipients:
        raise EncryptionError("no recipients: give at least one recipient certificate")
    if cipher not in CIPHERS:
        raise EncryptionError(f"cipher {cipher!r} is not one of {', '.join(CIPHERS)}")
    if rsa_padding not in ("pkcs1v15", "oaep"):
        raise EncryptionError(f"rsa_padding {rsa_padding!r} must be 'pkcs1v15' or 'oaep'")
    alg_name, key_len = (CBC_CIPHERS | GCM_CIPHERS)[cipher]
    cek = os.urandom(key_len)
    infos = [recipient_info(cert, cek, rsa_padding) for cert in recipients]
    has_kari = any(info.name == "kari" for info in infos)
    # The envelope around the recipient infos is written directly: building it as an asn1crypto
    # tree copied the ciphertext and re-encoded every RecipientInfo (bench/smime.py).
    infos_der = tlv(0x31, b"".join(info.dump() for info in infos))
    if cipher in CBC_CIPHERS:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(content) + padder.finalize()
        enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ciphertext = enc.update(padded) + enc.finalize()
        alg = tlv(0x30, _CONTENT_OIDS[alg_name] + tlv(0x04, iv))
        eci = tlv(0x30, OID_DATA + alg + tlv(0x80, ciphertext))
        version = b"\x02\x01\x02" if has_kari else b"\x02\x01\x00"
        return content_info(OID_ENVELOPED_DATA, tlv(0x30, version + infos_der + eci))
    nonce = os.urandom(12)
    sealed = AESGCM(cek).encrypt(nonce, content, None)
    # GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER 16 }
    alg = tlv(0x30, _CONTENT_OIDS[alg_name] + tlv(0x30, tlv(0x04, nonce) + b"\x02\x01\x10"))
    eci = tlv(0x30, OID_DATA + alg + tlv(0x80, sealed[:-16]))
    mac = tlv(0x04, sealed[-16:])
    return content_info(OID_AUTH_ENVELOPED_DATA,
                        tlv(0x30, b"\x02\x01\x00" + infos_der + eci + mac))


# ---------------------------------------------------------------------------------- open


def open_envelope(der: bytes, keys_: Sequence[tuple[PrivateKey, x509.Certificate]], *,
                  allow_3des: bool = True) -> Opened:
    """Decrypt an EnvelopedData or AuthEnvelopedData ContentInfo with one of `keys_`.

    Raises `DecryptionError` (one wording) for every failure whatsoever, except a content
    cipher we refuse by name (`UnsupportedError`, decided from the clear algorithm
    identifier before any key is used): RC2, DES, RC4, and 3DES when `allow_3des` is off.
    """
    try:
        return _open(der, keys_, allow_3des)
    except UnsupportedError:
        raise
    except DecryptionError:
        raise DecryptionError() from None
    except Exception:  # noqa: BLE001 - every cause must look the same from outside (no oracle)
        raise DecryptionError() from None


def _open(der: bytes, keys_: Sequence[tuple[PrivateKey, x509.Certificate]],
          allow_3des: bool = True) -> Opened:
    if len(der) > MAX_ENVELOPE_BYTES or not der or der[0] != 0x30:
        raise DecryptionError()
    info = cms.ContentInfo.load(der, strict=True)
    kind = info["content_type"].native
    body = info["content"]
    if kind == "enveloped_data":
        eci = body["encrypted_content_info"]
        mac = None
        aad = b""
    elif kind == "authenticated_enveloped_data":
        eci = body["auth_encrypted_content_info"]
        mac = body["mac"].native
        attrs_ = body["auth_attrs"]
        # RFC 5083: the AAD is the DER of authAttrs with the SET OF tag.
        aad = b"" if attrs_.native is None else b"\x31" + attrs_.dump()[1:]
    else:
        raise DecryptionError()
    alg = eci["content_encryption_algorithm"]
    oid = alg["algorithm"].dotted
    if oid in UNSUPPORTED_ALGS:
        raise UnsupportedError(f"{UNSUPPORTED_ALGS[oid]}: the content is encrypted with a "
                               "cipher that is not supported")
    if oid not in _DECRYPT_ALGS:
        raise DecryptionError()
    cipher_name, key_len, mode = _DECRYPT_ALGS[oid]
    if mode == "3des" and not allow_3des:
        raise UnsupportedError("3des-cbc: 3DES content is refused (decrypt_3des is off)")
    if (mac is None) != (mode in ("cbc", "3des")):
        raise DecryptionError()
    ciphertext = eci["encrypted_content"].native
    if ciphertext is None:
        raise DecryptionError()
    params = alg["parameters"]
    params_der = params.dump() if params is not None else b""
    # Parse everything (including the recipient infos) before any private-key operation.
    recipient_infos = list(body["recipient_infos"])
    for ri in recipient_infos:
        ri.native  # noqa: B018 - forces a full parse: malformed fails here, before key use
    for private_key, cert in keys_:
        for ri in recipient_infos:
            cek = recover_cek(ri, private_key, cert, key_len)
            if cek is None:
                continue
            content = _decrypt_content(mode, cek, params_der, ciphertext, mac, aad)
            return Opened(
                content=content,
                cipher=cipher_name,
                authenticated=mode in ("gcm", "chacha"),
                legacy=mode == "3des",
                recipient=cert,
            )
    raise DecryptionError()


def _decrypt_content(
    mode: str, cek: bytes, params_der: bytes, ciphertext: bytes, mac: bytes | None, aad: bytes
) -> bytes:
    if mode in ("cbc", "3des"):
        iv = core.OctetString.load(params_der).native
        block = 16 if mode == "cbc" else 8
        if len(iv) != block or not ciphertext or len(ciphertext) % block:
            raise DecryptionError()
        algo = algorithms.AES(cek) if mode == "cbc" else TripleDES(cek)
        dec = Cipher(algo, modes.CBC(iv)).decryptor()
        padded = dec.update(ciphertext) + dec.finalize()
        unpadder = padding.PKCS7(block * 8).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    assert mac is not None
    if mode == "chacha":
        nonce = core.OctetString.load(params_der).native
        return ChaCha20Poly1305(cek).decrypt(nonce, ciphertext + mac, aad or None)
    params = GCMParameters.load(params_der)
    nonce = params["aes_nonce"].native
    icvlen = params["aes_icvlen"].native
    if not 12 <= icvlen <= 16 or len(mac) != icvlen or not nonce:
        raise DecryptionError()
    # cryptography's AESGCM wants a 16-byte tag; the default ICVlen is 12 (smime.md 3.4).
    dec = Cipher(algorithms.AES(cek), modes.GCM(nonce, mac, min_tag_length=12)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    return dec.update(ciphertext) + dec.finalize()
