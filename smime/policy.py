"""Verification policy: algorithm and key-size floors, multi-signer rule, DoS caps.

One value object so the gateway configuration, the operator CLI and the tests all name the
same switches (smime.md sections 5.3, 6 and 7; docs/smime-verify.md explains each one).
"""

from __future__ import annotations

import attrs

# RFC 8550 4.3: RSA keys below 2048 bits are SHOULD NOT; legacy mode lowers the floor for
# stored historic mail (RFC 4134, 1999-2006 clients) but never below 1024.
MIN_RSA_BITS = 2048
LEGACY_MIN_RSA_BITS = 1024
# RFC 8551 2.2 MUST/SHOULD curves; anything else (brainpool, secp224r1, binary curves) is
# refused rather than trusted to a less-reviewed code path.
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def _mode(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("strict", "lenient"):
        raise ValueError(f"{attribute.name} must be 'strict' or 'lenient', not {value!r}")


@attrs.frozen
class VerifyPolicy:
    """How strict verification is; the defaults are the production settings.

    `legacy` accepts SHA-1 message digests, MD5/SHA-1 certificate signatures, DSA and RSA keys
    from `LEGACY_MIN_RSA_BITS`, each flagged in the result: only for archived mail.
    `multi_signer`: "strict" fails the message when any SignerInfo fails; "lenient" ignores
    unverifiable extra signers (they stay listed) as long as one signer verifies and binds From.
    `bind_from=False` skips the From/certificate binding of `verify` (conformance runs such as
    PKITS, whose certificates carry no address); a gateway never turns it off.
    `at_signing_time` validates the path at the signer's signingTime instead of now: only for
    stored mail whose arrival time the gateway recorded itself (smime.md 5.3).
    `require_signed_attributes` refuses a SignerInfo without signed attributes (RFC 5652 5.3
    allows it): then nothing binds the signature to its content type, signing time or signing
    certificate (ESS), and the signature is over the raw content alone. Every mail client of
    the last twenty years writes them; conformance vectors (RFC 4134, RFC 9216, Bouncy
    Castle) often lack them, so the library's default is off and the gateway's is on
    (`[smime] require_signed_attributes`).
    `domain_certificates` lets a signer certificate whose subjectAltName holds a DNS name
    (exact, or a `*.` wildcard over one label) stand for every sender of that domain: what
    gateways exchange (smime/binding.py). Off in the library and the CLI, like mail clients;
    on in the gateway (`[smime] accept_domain_certificates`).
    """

    legacy: bool = False
    multi_signer: str = attrs.field(default="strict", validator=_mode)
    at_signing_time: bool = False
    bind_from: bool = True
    require_signed_attributes: bool = False
    domain_certificates: bool = False
    min_rsa_bits: int | None = None
    ec_curves: tuple[str, ...] = EC_CURVES
    max_signers: int = 16
    max_certificates: int = 64
    max_crls: int = 32
    max_attributes: int = 32

    @property
    def rsa_floor(self) -> int:
        if self.min_rsa_bits is not None:
            return self.min_rsa_bits
        return LEGACY_MIN_RSA_BITS if self.legacy else MIN_RSA_BITS

    @property
    def digests(self) -> tuple[str, ...]:
        return ("sha256", "sha384", "sha512", "sha1") if self.legacy else (
            "sha256", "sha384", "sha512"
        )


DEFAULT_POLICY = VerifyPolicy()
