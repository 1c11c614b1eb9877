"""The S/MIME engine's exceptions, one root for the package.

    SMIMEError
    ├── MalformedError            the input is not well-formed DER / CMS / MIME (names where)
    ├── UnsupportedError          a well-formed object using an algorithm or form we refuse
    ├── SigningError              we could not produce a signature (key, certificate, options)
    ├── EncryptionError           we could not encrypt (no usable recipient key, options)
    ├── DecryptionError           *every* decryption failure, one class and one wording: no oracle
    ├── CertificateError          a certificate fails a requirement (names the field and the fix)
    └── KeyStoreError             the key store refused an operation (see smime.keystore)

Verification failures are not exceptions: `verify` returns a result object whose reasons say
why a signature is not verified. Exceptions are for inputs we cannot process at all.
"""

from __future__ import annotations


class SMIMEError(Exception):
    """Root of every error the S/MIME engine raises."""


class MalformedError(SMIMEError):
    """The input is not well-formed DER, CMS or MIME."""


class UnsupportedError(SMIMEError):
    """The input is well-formed but uses an algorithm or form that is not supported."""


class SigningError(SMIMEError):
    """A signature could not be produced."""


class EncryptionError(SMIMEError):
    """A message could not be encrypted."""


class DecryptionError(SMIMEError):
    """A message could not be decrypted.

    Raised with the same wording for every cause (wrong key, bad padding, bad tag, malformed
    envelope) so that a gateway answering on the result cannot become a decryption oracle.
    """

    MESSAGE = "the message could not be decrypted"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class CertificateError(SMIMEError):
    """A certificate does not meet a requirement; the message names the field and the fix."""


class KeyStoreError(SMIMEError):
    """The key store refused an operation."""
