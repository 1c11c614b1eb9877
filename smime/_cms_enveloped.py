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
from asn1crypto import algos, cms, core, keys
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from smime._keys import PrivateKey, key_matches_certificate
from smime.errors import DecryptionError, EncryptionError, MalformedError

# Largest envelope we parse at all: a cap on work for hostile input (smime.md 9.2, last row).
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024

# RSA recipients we encrypt to: 2048 is RFC 8551's floor, 8192 our cap on hostile keys.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192

CBC_CIPHERS = {"aes128-cbc": ("aes128_cbc", 16), "aes256-cbc": ("aes256_cbc", 32)}
GCM_CIPHERS = {"aes128-gcm": ("aes128_gcm", 16), "aes256-gcm": ("aes256_gcm", 32)}
CIPHERS = (*CBC_CIPHERS, *GCM_CIPHERS)

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

# Key agreement schemes: OID -> (kdf kind, hash).
_KA_SCHEMES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    # OpenSSL's default: it writes SHA-1 KDF unless told otherwise (-keyopt ecdh_kdf_md:...).
    "1.3.133.16.840.63.0.2": ("x963", hashes.SHA1),
    "1.3.132.1.11.0": ("x963", hashes.SHA224),
    "1.3.132.1.11.1": ("x963", hashes.SHA256),
    "1.3.132.1.11.2": ("x963", hashes.SHA384),
    "1.3.132.1.11.3": ("x963", hashes.SHA512),
    "1.2.840.113549.1.9.16.3.19": ("hkdf", hashes.SHA256),
    "1.2.840.113549.1.9.16.3.20": ("hkdf", hashes.SHA384),
    "1.2.840.113549.1.9.16.3.21": ("hkdf", hashes.SHA512),
}
_WRAP_OIDS = {
    "2.16.840.1.101.3.4.1.5": 16,
    "2.16.840.1.101.3.4.1.25": 24,
    "2.16.840.1.101.3.4.1.45": 32,
}


class GCMParameters(core.Sequence):
    """RFC 5084 GCMParameters; aes-ICVlen DEFAULTs to 12 (smime.md 3.4 trap)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 ECC-CMS-SharedInfo, the KDF input for ECDH recipients (also RFC 8418)."""

    _fields = [
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
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
    cipher = _DECRYPT_ALGS.get(oid, (None, 0, ""))[0]
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
    infos = [_recipient_info(cert, cek, rsa_padding) for cert in recipients]
    has_kari = any(info.name == "kari" for info in infos)
    if cipher in CBC_CIPHERS:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(content) + padder.finalize()
        enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ciphertext = enc.update(padded) + enc.finalize()
        eci = cms.EncryptedContentInfo(
            {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": alg_name, "parameters": iv},
                "encrypted_content": ciphertext,
            }
        )
        env = cms.EnvelopedData(
            {"version": "v2" if has_kari else "v0", "recipient_infos": infos,
             "encrypted_content_info": eci}
        )
        return cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump()
    nonce = os.urandom(12)
    sealed = AESGCM(cek).encrypt(nonce, content, None)
    params = GCMParameters({"aes_nonce": nonce, "aes_icvlen": 16})
    eci = cms.EncryptedContentInfo(
        {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": alg_name, "parameters": params},
            "encrypted_content": sealed[:-16],
        }
    )
    auth = cms.AuthEnvelopedData(
        {"version": "v0", "recipient_infos": infos, "auth_encrypted_content_info": eci,
         "mac": sealed[-16:]}
    )
    return cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": auth}).dump()


def _issuer_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    parsed = cms.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber(
        {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
    )


def _usable_for_encryption(cert: x509.Certificate, bit: str) -> None:
    """RFC 8550 4.4.2: a keyUsage, if present, must allow key management for this key type."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not getattr(usage, bit):
        name = {"key_encipherment": "keyEncipherment", "key_agreement": "keyAgreement"}[bit]
        raise EncryptionError(
            f"recipient {cert.subject.rfc4514_string()}: key usage lacks {name}, so the "
            "certificate may sign but not receive encrypted mail; use the recipient's "
            "encryption certificate"
        )


def _recipient_info(cert: x509.Certificate, cek: bytes, rsa_padding: str) -> cms.RecipientInfo:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        _usable_for_encryption(cert, "key_encipherment")
        if not MIN_RSA_BITS <= public.key_size <= MAX_RSA_BITS:
            raise EncryptionError(
                f"recipient {cert.subject.rfc4514_string()}: RSA-{public.key_size} is outside "
                f"{MIN_RSA_BITS}..{MAX_RSA_BITS} bits (RFC 8551 4); ask for a current certificate"
            )
        if rsa_padding == "oaep":
            alg = cms.KeyEncryptionAlgorithm(
                {"algorithm": "rsaes_oaep", "parameters": _oaep_params()}
            )
            encrypted = public.encrypt(cek, _oaep())
        else:
            alg = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
            encrypted = public.encrypt(cek, asym_padding.PKCS1v15())
        ktri = cms.KeyTransRecipientInfo(
            {"version": "v0", "rid": {"issuer_and_serial_number": _issuer_serial(cert)},
             "key_encryption_algorithm": alg, "encrypted_key": encrypted}
        )
        return cms.RecipientInfo({"ktri": ktri})
    if isinstance(public, ec.EllipticCurvePublicKey):
        _usable_for_encryption(cert, "key_agreement")
        return _ecdh_recipient_info(cert, public, cek)
    raise EncryptionError(
        f"recipient {cert.subject.rfc4514_string()}: key type {type(public).__name__} cannot "
        "receive mail; use an RSA or EC (P-256/P-384) encryption certificate"
    )


def _oaep() -> asym_padding.OAEP:
    return asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


def _oaep_params() -> algos.RSAESOAEPParams:
    return algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    )


def _ecdh_recipient_info(
    cert: x509.Certificate, public: ec.EllipticCurvePublicKey, cek: bytes
) -> cms.RecipientInfo:
    if public.curve.name not in ("secp256r1", "secp384r1"):
        raise EncryptionError(
            f"recipient {cert.subject.rfc4514_string()}: curve {public.curve.name} is not "
            "supported for encryption; use P-256 or P-384"
        )
    # RFC 5753 / 8551: the KDF hash follows the curve strength.
    scheme, hash_cls = (
        ("1.3.132.1.11.1", hashes.SHA256)
        if public.curve.name == "secp256r1"
        else ("1.3.132.1.11.2", hashes.SHA384)
    )
    wrap_oid = {16: "aes128_wrap", 32: "aes256_wrap"}[len(cek)]
    ephemeral = ec.generate_private_key(public.curve)
    shared = ephemeral.exchange(ec.ECDH(), public)
    kek = _kdf("x963", hash_cls, shared, wrap_oid, len(cek), None)
    wrapped = aes_key_wrap(kek, cek)
    eph_point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    originator = keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "ec"}, "public_key": eph_point}
    )
    kari = cms.KeyAgreeRecipientInfo(
        {
            "version": "v3",
            "originator": {"originator_key": originator},
            "key_encryption_algorithm": {
                "algorithm": scheme,
                "parameters": algos.EncryptionAlgorithm({"algorithm": wrap_oid}),
            },
            "recipient_encrypted_keys": [
                {"rid": {"issuer_and_serial_number": _issuer_serial(cert)},
                 "encrypted_key": wrapped}
            ],
        }
    )
    return cms.RecipientInfo({"kari": kari})


def _kdf(
    kind: str,
    hash_cls: type[hashes.HashAlgorithm],
    shared: bytes,
    wrap_alg: str,
    length: int,
    ukm: bytes | None,
) -> bytes:
    info = EccCmsSharedInfo(
        {
            "key_info": {"algorithm": wrap_alg},
            "entity_u_info": ukm,
            "supp_pub_info": (length * 8).to_bytes(4, "big"),
        }
    ).dump()
    if kind == "x963":
        return X963KDF(algorithm=hash_cls(), length=length, sharedinfo=info).derive(shared)
    # RFC 8418: HKDF with the ukm (if any) as salt and the shared info as info.
    return HKDF(algorithm=hash_cls(), length=length, salt=ukm, info=info).derive(shared)


# ---------------------------------------------------------------------------------- open


def open_envelope(der: bytes, keys_: Sequence[tuple[PrivateKey, x509.Certificate]]) -> Opened:
    """Decrypt an EnvelopedData or AuthEnvelopedData ContentInfo with one of `keys_`.

    Raises `DecryptionError` (one wording) for every failure whatsoever.
    """
    try:
        return _open(der, keys_)
    except DecryptionError:
        raise DecryptionError() from None
    except Exception:  # noqa: BLE001 - every cause must look the same from outside (no oracle)
        raise DecryptionError() from None


def _open(der: bytes, keys_: Sequence[tuple[PrivateKey, x509.Certificate]]) -> Opened:
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
    if oid not in _DECRYPT_ALGS:
        raise DecryptionError()
    cipher_name, key_len, mode = _DECRYPT_ALGS[oid]
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
            cek = _recover_cek(ri, private_key, cert, key_len)
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


def _rid_matches(rid: core.Choice, cert: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        parsed = cms.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        return bool(
            ias["serial_number"].native == parsed.serial_number and ias["issuer"] == parsed.issuer
        )
    ski_value = rid.chosen["subject_key_identifier"].native if rid.name == "r_key_id" else (
        rid.chosen.native
    )
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return bool(ext.value.digest == ski_value)


def _recover_cek(
    ri: cms.RecipientInfo, private_key: PrivateKey, cert: x509.Certificate, key_len: int
) -> bytes | None:
    """The CEK for this recipient info and key, or None when they are not for each other."""
    if not key_matches_certificate(private_key, cert):
        return None
    if ri.name == "ktri":
        ktri = ri.chosen
        if not isinstance(private_key, rsa.RSAPrivateKey):
            return None
        if not _rid_matches(ktri["rid"], cert):
            return None
        alg = ktri["key_encryption_algorithm"]
        encrypted = ktri["encrypted_key"].native
        name = alg["algorithm"].native
        if name == "rsaes_oaep":
            params = alg["parameters"]
            hash_name = params["hash_algorithm"]["algorithm"].native
            mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            label = params["p_source_algorithm"]["parameters"].native or None
            pad = asym_padding.OAEP(
                asym_padding.MGF1(_hash(mgf_hash)), _hash(hash_name), label
            )
            return private_key.decrypt(encrypted, pad)
        if name == "rsaes_pkcs1v15":
            # RFC 3218: a padding failure continues with a random CEK, so it surfaces only
            # as a content failure, never as a distinct error.
            try:
                cek = private_key.decrypt(encrypted, asym_padding.PKCS1v15())
            except ValueError:
                return os.urandom(key_len)
            return cek if len(cek) == key_len else os.urandom(key_len)
        raise DecryptionError()
    if ri.name == "kari":
        return _recover_cek_kari(ri.chosen, private_key, cert)
    return None


def _hash(name: str) -> hashes.HashAlgorithm:
    table: dict[str, hashes.HashAlgorithm] = {
        "sha1": hashes.SHA1(), "sha224": hashes.SHA224(), "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(), "sha512": hashes.SHA512(),
    }
    return table[name]


def _recover_cek_kari(
    kari: cms.KeyAgreeRecipientInfo, private_key: PrivateKey, cert: x509.Certificate
) -> bytes | None:
    mine = [rek for rek in kari["recipient_encrypted_keys"] if _rid_matches(rek["rid"], cert)]
    if not mine:
        return None
    alg = kari["key_encryption_algorithm"]
    scheme = alg["algorithm"].dotted
    if scheme not in _KA_SCHEMES:
        raise DecryptionError()
    kdf_kind, hash_cls = _KA_SCHEMES[scheme]
    wrap = algos.EncryptionAlgorithm.load(alg["parameters"].dump())
    wrap_oid = wrap["algorithm"].dotted
    if wrap_oid not in _WRAP_OIDS:
        raise DecryptionError()
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise DecryptionError()
    point = originator.chosen["public_key"].native
    ukm = kari["ukm"].native
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and kdf_kind == "x963":
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, point)
        shared = private_key.exchange(ec.ECDH(), peer)
    elif isinstance(private_key, x25519.X25519PrivateKey):
        shared = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(point))
    else:
        return None
    kek = _kdf(kdf_kind, hash_cls, shared, wrap["algorithm"].native, _WRAP_OIDS[wrap_oid], ukm)
    return aes_key_unwrap(kek, mine[0]["encrypted_key"].native)


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
