"""S/MIME certificates: create self-signed ones, describe them, check them against the brief.

The profile follows smime.md 5.5 (RFC 8550 3, 4.4 and RFC 5280); the checks follow the
vendor's "S/MIME Certificate Requirements" (signing: digitalSignature and nonRepudiation, or
no keyUsage; encryption: keyEncipherment for RSA, keyAgreement for EC) plus the EKU rule of
smime.md 5.2. Every problem names the field and the fix.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smime._keys import PrivateKey, key_description
from smime.binding import sender_binding
from smime.errors import CertificateError

KEY_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096", "p256", "p384", "ed25519")
SIGNATURE_ALGORITHMS = {
    "sha256-rsa": ("rsa", hashes.SHA256),
    "sha384-rsa": ("rsa", hashes.SHA384),
    "sha512-rsa": ("rsa", hashes.SHA512),
    "ecdsa-sha256": ("ec", hashes.SHA256),
    "ecdsa-sha384": ("ec", hashes.SHA384),
    "ed25519": ("ed25519", None),
}
USAGES = ("dual", "signing", "encryption")
MAX_DAYS = 3650
_FQDN = re.compile(
    r"^(\*\.)?(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@attrs.frozen
class CertificateSpec:
    """Every field of the product brief's "Create Self-Signed S/MIME Certificate" form."""

    common_name: str
    organization: str = ""
    organizational_unit: str = ""
    locality: str = ""
    state: str = ""
    country: str = ""
    san_domains: tuple[str, ...] = ()
    san_emails: tuple[str, ...] = ()
    signature_algorithm: str | None = None  # default follows the key type
    days: int = 365
    key_type: str = "rsa-2048"
    usage: str = "dual"  # dual (RSA only), signing, encryption


@attrs.frozen
class CreatedCertificate:
    key: PrivateKey
    certificate: x509.Certificate
    csr: x509.CertificateSigningRequest

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def csr_pem(self) -> bytes:
        return self.csr.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, passphrase: bytes | None = None) -> bytes:
        return private_key_pem(self.key, passphrase)


@attrs.frozen
class Problem:
    """One unmet requirement: which field, what is wrong, how to fix it."""

    field: str
    problem: str
    fix: str
    severity: str = "error"  # "error" fails the check; "warning" is reported only

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.problem}; fix: {self.fix}"


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


# ------------------------------------------------------------------------------- create


def _validate(spec: CertificateSpec) -> tuple[str, str]:
    if not spec.common_name.strip():
        raise CertificateError("common name: empty; give --cn, e.g. the sending domain")
    if spec.country and not re.fullmatch(r"[A-Za-z]{2}", spec.country):
        raise CertificateError(
            f"country: {spec.country!r} is not a two-letter ISO 3166 code; use e.g. US or DE"
        )
    if not 1 <= spec.days <= MAX_DAYS:
        raise CertificateError(f"days valid: {spec.days} is outside 1..{MAX_DAYS}; use e.g. 365")
    if spec.key_type not in KEY_TYPES:
        raise CertificateError(
            f"key: {spec.key_type!r} is not one of {', '.join(KEY_TYPES)}; RSA below 2048 bits "
            "is not allowed (RFC 8551 4)"
        )
    if spec.usage not in USAGES:
        raise CertificateError(f"usage: {spec.usage!r} is not one of {', '.join(USAGES)}")
    family = "rsa" if spec.key_type.startswith("rsa") else (
        "ed25519" if spec.key_type == "ed25519" else "ec"
    )
    default_alg = {"rsa": "sha256-rsa", "ec": "ecdsa-sha256", "ed25519": "ed25519"}[family]
    alg = spec.signature_algorithm or default_alg
    if alg not in SIGNATURE_ALGORITHMS:
        raise CertificateError(
            f"signature algorithm: {alg!r} is not one of {', '.join(SIGNATURE_ALGORITHMS)}"
        )
    if SIGNATURE_ALGORITHMS[alg][0] != family:
        raise CertificateError(
            f"signature algorithm: {alg} does not fit a {spec.key_type} key; use {default_alg}"
        )
    if spec.usage == "dual" and family != "rsa":
        raise CertificateError(
            f"usage: dual use needs an RSA key; an {spec.key_type} key is either signing or "
            "encryption (RFC 9216 keeps them as separate key pairs): choose one"
        )
    if spec.usage == "encryption" and family == "ed25519":
        raise CertificateError(
            "usage: Ed25519 keys cannot encrypt; use rsa-2048 or p256 for an encryption certificate"
        )
    for domain in spec.san_domains:
        if not _FQDN.match(domain):
            raise CertificateError(
                f"SAN domains: {domain!r} is not a domain name; use e.g. example.com or "
                "*.example.net"
            )
    for email in spec.san_emails:
        if not _EMAIL.match(email):
            raise CertificateError(
                f"SAN e-mails: {email!r} is not an address; use e.g. user@example.com"
            )
    return family, alg


def _generate(key_type: str) -> PrivateKey:
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def generate_key(key_type: str) -> PrivateKey:
    """A new key of one of KEY_TYPES."""
    if key_type not in KEY_TYPES:
        raise CertificateError(f"key: {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    return _generate(key_type)


def subject_name(spec: CertificateSpec) -> x509.Name:
    pairs = [
        (NameOID.COUNTRY_NAME, spec.country.upper()),
        (NameOID.STATE_OR_PROVINCE_NAME, spec.state),
        (NameOID.LOCALITY_NAME, spec.locality),
        (NameOID.ORGANIZATION_NAME, spec.organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, spec.organizational_unit),
        (NameOID.COMMON_NAME, spec.common_name),
    ]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])


def _key_usage(usage: str, family: str) -> x509.KeyUsage:
    sign = usage in ("dual", "signing")
    encrypt = usage in ("dual", "encryption")
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=encrypt and family == "rsa",
        data_encipherment=False,
        key_agreement=encrypt and family == "ec",
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _self_signed(key: PrivateKey, name: x509.Name, days: int, now: dt.datetime,
                 extensions: list[tuple[x509.ExtensionType, bool]],
                 algorithm: hashes.HashAlgorithm | None) -> CreatedCertificate:
    """A certificate issued by its own key (subject and issuer `name`, SKI = AKI), and a CSR
    asking for the same extensions: what `cert create` writes, with or without --ca."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    )
    csr_builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
        csr_builder = csr_builder.add_extension(ext, critical=critical)
    cert = builder.sign(key, algorithm)  # type: ignore[arg-type]
    csr = csr_builder.sign(key, algorithm)  # type: ignore[arg-type]
    return CreatedCertificate(key=key, certificate=cert, csr=csr)


def create_self_signed(
    spec: CertificateSpec, *, now: dt.datetime | None = None, key: PrivateKey | None = None
) -> CreatedCertificate:
    """A self-signed S/MIME certificate per smime.md 5.5, its key and a matching CSR."""
    family, alg = _validate(spec)
    key = key or _generate(spec.key_type)
    hash_cls = SIGNATURE_ALGORITHMS[alg][1]
    algorithm = hash_cls() if hash_cls is not None else None
    now = now or dt.datetime.now(dt.UTC)
    name = subject_name(spec)
    general_names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in spec.san_emails]
    general_names += [x509.DNSName(d) for d in spec.san_domains]
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (_key_usage(spec.usage, family), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
    ]
    if general_names:
        extensions.append((x509.SubjectAlternativeName(general_names), False))
    return _self_signed(key, name, spec.days, now, extensions, algorithm)


# ----------------------------------------------------------------------------- describe


def _ext(cert: x509.Certificate, cls: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _name_values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attr.value) for attr in name.get_attributes_for_oid(oid)]


def _key_usage_names(ku: x509.KeyUsage) -> list[str]:
    names = [
        ("digitalSignature", ku.digital_signature),
        ("nonRepudiation", ku.content_commitment),
        ("keyEncipherment", ku.key_encipherment),
        ("dataEncipherment", ku.data_encipherment),
        ("keyAgreement", ku.key_agreement),
        ("keyCertSign", ku.key_cert_sign),
        ("cRLSign", ku.crl_sign),
    ]
    return [name for name, on in names if on]


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """The certificate as plain data (for `cert show` and `--json`)."""
    subject = cert.subject
    san = _ext(cert, x509.SubjectAlternativeName)
    ku = _ext(cert, x509.KeyUsage)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    sig_oid = cert.signature_algorithm_oid
    return {
        "subject": subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "common_name": _name_values(subject, NameOID.COMMON_NAME),
        "organization": _name_values(subject, NameOID.ORGANIZATION_NAME),
        "organizational_unit": _name_values(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        "locality": _name_values(subject, NameOID.LOCALITY_NAME),
        "state": _name_values(subject, NameOID.STATE_OR_PROVINCE_NAME),
        "country": _name_values(subject, NameOID.COUNTRY_NAME),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": key_description(cert.public_key()),
        "signature_algorithm": getattr(sig_oid, "_name", sig_oid.dotted_string),
        "san_emails": san.value.get_values_for_type(x509.RFC822Name) if san else [],
        "san_domains": san.value.get_values_for_type(x509.DNSName) if san else [],
        "key_usage": _key_usage_names(ku.value) if ku else None,
        "key_usage_critical": ku.critical if ku else None,
        "extended_key_usage": [
            getattr(oid, "_name", oid.dotted_string) for oid in eku.value
        ] if eku else None,
        "self_signed": cert.subject == cert.issuer,
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
    }


# -------------------------------------------------------------------------------- check


def check_certificate(
    cert: x509.Certificate,
    purposes: Sequence[str] = ("signing",),
    *,
    fqdn: bool = False,
    now: dt.datetime | None = None,
) -> list[Problem]:
    """Every way `cert` misses the requirements for `purposes` ("signing", "encryption")."""
    problems: list[Problem] = []
    now = now or dt.datetime.now(dt.UTC)
    subject = cert.subject
    cns = _name_values(subject, NameOID.COMMON_NAME)
    if not cns:
        problems.append(Problem("common name", "missing", "issue the certificate with a CN"))
    for field, oid in (
        ("organization", NameOID.ORGANIZATION_NAME),
        ("organizational unit", NameOID.ORGANIZATIONAL_UNIT_NAME),
        ("locality", NameOID.LOCALITY_NAME),
        ("state", NameOID.STATE_OR_PROVINCE_NAME),
        ("country", NameOID.COUNTRY_NAME),
    ):
        if not _name_values(subject, oid):
            problems.append(Problem(
                field, "missing from the subject",
                f"add {field} when requesting the certificate", "warning",
            ))
    if cert.not_valid_after_utc < now:
        problems.append(Problem("validity", f"expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                                "renew the certificate"))
    if cert.not_valid_before_utc > now:
        problems.append(Problem("validity", f"not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
                                "check the clock or wait"))
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
        problems.append(Problem("key size", f"RSA-{public.key_size} is too small",
                                "use at least RSA-2048 (RFC 8551 4)"))
    san = _ext(cert, x509.SubjectAlternativeName)
    emails = san.value.get_values_for_type(x509.RFC822Name) if san else []
    domains = san.value.get_values_for_type(x509.DNSName) if san else []
    if not emails and not domains:
        problems.append(Problem(
            "subject alternative name", "no e-mail address and no domain",
            "add SAN e-mails (user@example.com) or SAN domains (example.com)", "warning",
        ))
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None and not (
        ExtendedKeyUsageOID.EMAIL_PROTECTION in eku.value
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku.value
    ):
        problems.append(Problem(
            "extended key usage", "has neither emailProtection nor anyExtendedKeyUsage",
            "reissue with EKU emailProtection (1.3.6.1.5.5.7.3.4)",
        ))
    ku_ext = _ext(cert, x509.KeyUsage)
    ku = ku_ext.value if ku_ext else None
    if "signing" in purposes:
        if ku is not None and not (ku.digital_signature and ku.content_commitment):
            problems.append(Problem(
                "key usage", "signing needs digitalSignature and nonRepudiation, found "
                + (", ".join(_key_usage_names(ku)) or "none"),
                "reissue with key usage digitalSignature + nonRepudiation, or without key usage",
            ))
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                          | ed25519.Ed25519PublicKey):
            problems.append(Problem("key", f"{key_description(public)} cannot sign",
                                    "use an RSA, EC or Ed25519 signing key"))
    if "encryption" in purposes:
        if isinstance(public, rsa.RSAPublicKey):
            needed, bit = "keyEncipherment", bool(ku and ku.key_encipherment)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            needed, bit = "keyAgreement", bool(ku and ku.key_agreement)
        else:
            needed, bit = "", False
            problems.append(Problem("key", f"{key_description(public)} cannot receive "
                                    "encrypted mail here", "use an RSA or EC encryption key"))
        if needed and not bit:
            found = ", ".join(_key_usage_names(ku)) if ku else "no key usage extension"
            problems.append(Problem(
                "key usage", f"encryption needs {needed}, found {found or 'none'}",
                f"reissue with key usage {needed} (the extension must be present)",
            ))
    if fqdn:
        for cn in cns:
            if not _FQDN.match(cn):
                problems.append(Problem("common name", f"{cn!r} is not a fully qualified domain "
                                        "name", "use e.g. mail.example.com as the CN"))
        for domain in domains:
            if not _FQDN.match(domain):
                problems.append(Problem("SAN DNS name", f"{domain!r} is not a fully qualified "
                                        "domain name", "use e.g. example.com or *.example.com"))
    return problems


# ------------------------------------------------------------------ organisation CA


def _hash_for(key: PrivateKey | Any) -> hashes.HashAlgorithm | None:
    # The issuer's key decides the signature: SHA-384 goes with P-384 (RFC 5480 4), Ed25519
    # carries its own hash.
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def create_ca(
    spec: CertificateSpec, *, now: dt.datetime | None = None, key: PrivateKey | None = None
) -> CreatedCertificate:
    """An organisation CA (RFC 5280 4.2.1.9): basicConstraints cA=TRUE with pathLen 0 (it
    issues end-entity certificates only), keyUsage keyCertSign + cRLSign, SKI = AKI. No EKU:
    RFC 5280 does not inherit it, and OpenSSL's smimesign purpose refuses a CA whose EKU
    lacks emailProtection, so leaving it out suits every verifier. The CSR is for an outside
    parent that wants to cross-certify it."""
    if not spec.common_name.strip():
        raise CertificateError("common name: empty; give --cn, e.g. 'Example Org CA'")
    if not 1 <= spec.days <= MAX_DAYS:
        raise CertificateError(f"days valid: {spec.days} is outside 1..{MAX_DAYS}; use e.g. 1825")
    if spec.key_type not in KEY_TYPES:
        raise CertificateError(f"key: {spec.key_type!r} is not one of {', '.join(KEY_TYPES)}")
    if spec.san_emails or spec.san_domains:
        raise CertificateError("SAN: a CA certificate names no senders; give --san-email / "
                               "--san-domain to `cert sign` for the certificates it issues")
    if spec.country and not re.fullmatch(r"[A-Za-z]{2}", spec.country):
        raise CertificateError(
            f"country: {spec.country!r} is not a two-letter ISO 3166 code; use e.g. US or DE")
    key = key or _generate(spec.key_type)
    now = now or dt.datetime.now(dt.UTC)
    name = subject_name(spec)
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (usage, True),
    ]
    return _self_signed(key, name, spec.days, now, extensions, _hash_for(key))


def check_issuer(ca: x509.Certificate, ca_key: PrivateKey, now: dt.datetime | None = None) -> None:
    """Refuse to issue from something that is not a usable CA, saying what to fix."""
    now = now or dt.datetime.now(dt.UTC)
    bc = _ext(ca, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        raise CertificateError("CA certificate: it is not a CA (no basicConstraints cA=TRUE); "
                               "make one with `filterlang cert create --ca`")
    ku = _ext(ca, x509.KeyUsage)
    if ku is not None and not ku.value.key_cert_sign:
        raise CertificateError("CA certificate: its key usage lacks keyCertSign; it cannot "
                               "sign certificates")
    if not ca.not_valid_before_utc <= now < ca.not_valid_after_utc:
        raise CertificateError(f"CA certificate: not valid now (valid "
                               f"{ca.not_valid_before_utc:%Y-%m-%d} to "
                               f"{ca.not_valid_after_utc:%Y-%m-%d})")
    public = ca_key.public_key()
    if public.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo) != \
            ca.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo):
        raise CertificateError("CA key: it does not belong to the CA certificate; give the "
                               "key written with it (PREFIX.key.pem)")


def _family(public: Any) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise CertificateError(f"key: {key_description(public)} is not an S/MIME key; use RSA, "
                           "EC (P-256/P-384) or Ed25519")


def issue_certificate(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    *,
    subject: x509.Name,
    public_key: Any,
    san_emails: Sequence[str] = (),
    san_domains: Sequence[str] = (),
    usage: str | None = None,
    days: int = 365,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """An end-entity S/MIME certificate issued by `ca` (smime.md 5.2, 5.5): keyUsage critical
    (signing: digitalSignature + nonRepudiation; RSA dual use adds keyEncipherment; EC
    encryption: keyAgreement), EKU emailProtection, SKI of the subject key, AKI = the CA's SKI,
    basicConstraints cA=FALSE (critical), SAN with the addresses and domains it signs for."""
    now = now or dt.datetime.now(dt.UTC)
    check_issuer(ca, ca_key, now)
    family = _family(public_key)
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        raise CertificateError(f"key: RSA-{public_key.key_size} is too small; use at least "
                               "RSA-2048 (RFC 8551 4)")
    usage = usage or ("dual" if family == "rsa" else "signing")
    if usage not in USAGES:
        raise CertificateError(f"usage: {usage!r} is not one of {', '.join(USAGES)}")
    if usage == "dual" and family != "rsa":
        raise CertificateError(f"usage: dual use needs an RSA key, this is {family}; choose "
                               "signing or encryption")
    if usage == "encryption" and family == "ed25519":
        raise CertificateError("usage: Ed25519 keys cannot encrypt")
    if not san_emails and not san_domains:
        raise CertificateError("SAN: the certificate would name no sender; give --san-email "
                               "and/or --san-domain (or a request that carries them)")
    for domain in san_domains:
        if not _FQDN.match(domain):
            raise CertificateError(f"SAN domains: {domain!r} is not a domain name; use e.g. "
                                   "example.com or *.example.net")
    for email in san_emails:
        if not _EMAIL.match(email):
            raise CertificateError(f"SAN e-mails: {email!r} is not an address; use e.g. "
                                   "user@example.com")
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"days valid: {days} is outside 1..{MAX_DAYS}; use e.g. 365")
    not_after = now + dt.timedelta(days=days)
    if not_after > ca.not_valid_after_utc:
        left = (ca.not_valid_after_utc - now).days
        raise CertificateError(f"days valid: the certificate would outlive its CA (valid to "
                               f"{ca.not_valid_after_utc:%Y-%m-%d}); use --days {left} or less")
    ca_ski = _ext(ca, x509.SubjectKeyIdentifier)
    aki = (x509.AuthorityKeyIdentifier(ca_ski.value.digest, None, None) if ca_ski else
           x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()))  # type: ignore[arg-type]
    names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in san_emails]
    names += [x509.DNSName(d) for d in san_domains]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usage, family), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        # An empty subject needs the SAN critical (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)
    )
    return builder.sign(ca_key, _hash_for(ca_key))  # type: ignore[arg-type]


def request_names(csr: x509.CertificateSigningRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (e-mail addresses, domains) a certificate request asks for in its SAN."""
    if not csr.is_signature_valid:
        raise CertificateError("request: its signature does not verify; it was altered or "
                               "not made with its own key")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (tuple(san.get_values_for_type(x509.RFC822Name)),
            tuple(san.get_values_for_type(x509.DNSName)))


def sender_binding_of(cert: x509.Certificate, address: str, *, domain_certificates: bool
                      ) -> str | None:
    """How `cert` names `address` ("address" | "domain" | None), by the verifier's rule."""
    san = _ext(cert, x509.SubjectAlternativeName)
    emails = list(san.value.get_values_for_type(x509.RFC822Name)) if san else []
    domains = list(san.value.get_values_for_type(x509.DNSName)) if san else []
    domains += [e.lstrip(".") for e in emails if "@" not in e]
    emails = [e for e in emails if "@" in e]
    emails += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return sender_binding(emails, domains, address, domain_certificates=domain_certificates)
