"""S/MIME recipes: sign, encrypt, verify, decrypt (CMS over asn1crypto and cryptography)."""

from smime.signing import sign, sign_content
from smime.trust import TrustStore
from smime.verify import SignerResult, VerifyResult, verify, verify_content

__all__ = [
    "SignerResult",
    "TrustStore",
    "VerifyResult",
    "sign",
    "sign_content",
    "verify",
    "verify_content",
]
