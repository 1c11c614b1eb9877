"""S/MIME recipes: sign, encrypt, verify, decrypt (CMS over asn1crypto and cryptography)."""

from smime.certs import CertificateSpec, check_certificate, create_self_signed, describe
from smime.compose import Form, Layer, Mode, Signer, UnwrapResult, is_smime, protect, unwrap
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
from smime.signing import sign, sign_content
from smime.trust import TrustStore
from smime.verify import SignerResult, VerifyResult, verify, verify_content

__all__ = [
    "CertificateSpec",
    "DecryptResult",
    "Form",
    "Layer",
    "Mode",
    "Signer",
    "UnwrapResult",
    "EnvelopeInfo",
    "SignerResult",
    "TrustStore",
    "VerifyResult",
    "check_certificate",
    "choose_cipher",
    "create_self_signed",
    "decrypt",
    "decrypt_content",
    "describe",
    "encrypt",
    "encrypt_content",
    "inspect_envelope",
    "is_smime",
    "protect",
    "sign",
    "sign_content",
    "unwrap",
    "verify",
    "verify_content",
]
