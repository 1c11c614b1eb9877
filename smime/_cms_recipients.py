"""Private CMS layer, recipients: wrap the content-encryption key for each recipient, unwrap it.

Key transport (RSA PKCS#1 v1.5 and RSA-OAEP, RFC 3560) and key agreement (ECDH
ephemeral-static with the RFC 5753 X9.63 KDF, X25519 with the RFC 8418 HKDF) with AES key
wrap. Recipient identifiers: issuerAndSerialNumber and subjectKeyIdentifier.
"""

from __future__ import annotations

import functools
import os

from asn1crypto import algos, cms, core, keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from smime._cms_signed import same_name
from smime._der import tlv
from smime._keys import PrivateKey, key_matches_certificate
from smime.errors import DecryptionError, EncryptionError

# RSA recipients we encrypt to: 2048 is RFC 8551's floor, 8192 our cap on hostile keys.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192

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


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 ECC-CMS-SharedInfo, the KDF input for ECDH recipients (also RFC 8418)."""

    _fields = [
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def _issuer_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    parsed = cms.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber(
        {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
    )


@functools.lru_cache(maxsize=256)
def _issuer_serial_der(cert: x509.Certificate) -> bytes:
    # Per recipient certificate, not per message: building it re-encodes the issuer name.
    return _issuer_serial(cert).dump()


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


def recipient_info(cert: x509.Certificate, cek: bytes, rsa_padding: str) -> cms.RecipientInfo:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        _usable_for_encryption(cert, "key_encipherment")
        if not MIN_RSA_BITS <= public.key_size <= MAX_RSA_BITS:
            raise EncryptionError(
                f"recipient {cert.subject.rfc4514_string()}: RSA-{public.key_size} is outside "
                f"{MIN_RSA_BITS}..{MAX_RSA_BITS} bits (RFC 8551 4); ask for a current certificate"
            )
        if rsa_padding == "oaep":
            alg = _OAEP_ALG_DER
            encrypted = public.encrypt(cek, _oaep())
        else:
            alg = _PKCS1_ALG_DER
            encrypted = public.encrypt(cek, asym_padding.PKCS1v15())
        # KeyTransRecipientInfo ::= SEQUENCE { version 0, rid, algorithm, encryptedKey },
        # written directly (the asn1crypto tree cost more than the RSA operation).
        return cms.RecipientInfo.load(
            tlv(0x30, b"\x02\x01\x00" + _issuer_serial_der(cert) + alg + tlv(0x04, encrypted))
        )
    if isinstance(public, ec.EllipticCurvePublicKey):
        _usable_for_encryption(cert, "key_agreement")
        return _ecdhrecipient_info(cert, public, cek)
    raise EncryptionError(
        f"recipient {cert.subject.rfc4514_string()}: key type {type(public).__name__} cannot "
        "receive mail; use an RSA or EC (P-256/P-384) encryption certificate"
    )


_PKCS1_ALG_DER = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"}).dump()


def _oaep() -> asym_padding.OAEP:
    return asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


def _oaep_params() -> algos.RSAESOAEPParams:
    return algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    )


_OAEP_ALG_DER = cms.KeyEncryptionAlgorithm(
    {"algorithm": "rsaes_oaep", "parameters": _oaep_params()}
).dump()


def _ecdhrecipient_info(
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


def _rid_matches(rid: core.Choice, cert: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        parsed = cms.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        return bool(
            ias["serial_number"].native == parsed.serial_number
            and same_name(ias["issuer"], parsed.issuer)
        )
    ski_value = rid.chosen["subject_key_identifier"].native if rid.name == "r_key_id" else (
        rid.chosen.native
    )
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return bool(ext.value.digest == ski_value)


def recover_cek(
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
