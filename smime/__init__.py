"""S/MIME recipes: sign, encrypt, verify, decrypt (CMS over asn1crypto and cryptography)."""

# Encryption / decryption recipes and certificate helpers (the envelope half).
from smime.certs import CertificateSpec, check_certificate, create_self_signed, describe
from smime.envelope import (
    DecryptResult,
    EnvelopeInfo,
    choose_cipher,
    decrypt,
    decrypt_content,
    encrypt,
    encrypt_content,
    inspect_envelope,
)

__all__ = [
    "CertificateSpec",
    "DecryptResult",
    "EnvelopeInfo",
    "check_certificate",
    "choose_cipher",
    "create_self_signed",
    "decrypt",
    "decrypt_content",
    "describe",
    "encrypt",
    "encrypt_content",
    "inspect_envelope",
]
