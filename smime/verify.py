"""Verify S/MIME signatures (smime.md section 6): signature, digest, path, usage, From.

Verification failures are reported, never raised: `VerifyResult.reasons` carries stable codes.
Only input that cannot be parsed at all raises `MalformedError`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence

import attrs
from asn1crypto import cms, x509
from asn1crypto import crl as asn1_crl
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

from smime import _cms_signed as cs
from smime import mime
from smime.errors import MalformedError
from smime.policy import DEFAULT_POLICY, VerifyPolicy
from smime.trust import TrustStore

Reason = tuple[str, str]
# Flags that describe a verified signature without failing it (legacy policy only).
WARNINGS = frozenset({"legacy-sha1", "legacy-algorithm"})
# A signer whose only failure is the From binding still counts as cryptographically sound for
# the strict multi-signer rule (a co-signer need not be the From address).
_IDENTITY = frozenset({"from-mismatch", "certificate-without-address"})

# pyhanko-certvalidator logs full tracebacks for CRL-issuer path failures that it then turns
# into a normal validation error; without a handler Python prints them to stderr.
logging.getLogger("pyhanko_certvalidator").addHandler(logging.NullHandler())


@attrs.frozen
class SignerResult:
    certificate: x509.Certificate | None
    verified: bool
    reasons: tuple[Reason, ...]
    signing_time: dt.datetime | None
    digest_algorithm: str
    capabilities: tuple[str, ...]


@attrs.frozen
class VerifyResult:
    verified: bool
    reasons: tuple[Reason, ...]
    signers: tuple[SignerResult, ...]
    certificates: tuple[x509.Certificate, ...]
    content: bytes
    form: str  # "detached" | "opaque"


def _emails(cert: x509.Certificate) -> tuple[str, ...]:
    # SAN rfc822Name first; legacy certificates carry emailAddress in the subject DN instead.
    subject = cert.subject.native
    legacy = subject.get("email_address", ()) if isinstance(subject, dict) else ()
    legacy = [legacy] if isinstance(legacy, str) else list(legacy)
    out = [str(e).lower() for e in legacy] + [
        str(n.native).lower()
        for n in (cert.subject_alt_name_value or ())
        if n.name == "rfc822_name"
    ]
    return tuple(out)


def _from_matches(cert: x509.Certificate, from_address: str) -> bool:
    addr = from_address.strip().lower()
    domain = addr.rpartition("@")[2]
    # A SAN without a local part names the whole domain (organisation certificates).
    return any(e == addr or ("@" not in e and e.lstrip(".") == domain) for e in _emails(cert))


def _stale_revocation(
    run: Callable[[str, dt.datetime], None],
    crls: Sequence[bytes | asn1_crl.CertificateList],
    now: dt.datetime,
) -> list[Reason]:
    """A CRL too old to prove "not revoked" still proves "revoked" (revocation is final; a
    sender can attach a stale CRL but cannot un-revoke): re-validate as of each older CRL's
    thisUpdate and keep only a revocation found that way."""
    for raw in crls:
        c = raw if isinstance(raw, asn1_crl.CertificateList) else asn1_crl.CertificateList.load(raw)
        try:
            issued = c["tbs_cert_list"]["this_update"].native
        except ValueError:
            continue
        if not isinstance(issued, dt.datetime) or issued >= now:
            continue
        try:
            run("require", issued)
        except RevokedError as exc:
            return [("revoked", f"{exc} (shown by a CRL issued {issued:%Y-%m-%d %H:%M}Z)")]
        except (ValidationError, PathError, ValueError, TypeError, NotImplementedError):
            continue
    return []


def _path_reasons(
    cert: x509.Certificate,
    certs: Sequence[x509.Certificate],
    trust: TrustStore,
    now: dt.datetime,
    crls: Sequence[bytes],
    fetch_revocation: str,
    policy: VerifyPolicy = DEFAULT_POLICY,
) -> list[Reason]:
    all_crls = [*trust.crls, *crls]
    # smime.md 5.2: digitalSignature or nonRepudiation; an absent KU permits both.
    ku = set(cert.key_usage_value.native) if cert.key_usage_value is not None else set()
    ku_wanted = (
        {"non_repudiation"}
        if ku and "digital_signature" not in ku and ("non_repudiation" in ku)
        else {"digital_signature"}
    )
    if not ku:
        ku_wanted = set()
    # RFC 8550 4.4: emailProtection or anyExtendedKeyUsage; the validator knows only the former.
    eku = cert.extended_key_usage_value
    any_eku = eku is not None and "any_extended_key_usage" in eku.native
    eku_wanted: set[str] = set() if any_eku else {"email_protection"}

    def run(mode: str, moment: dt.datetime = now) -> None:
        ctx = ValidationContext(
            trust_roots=list(trust.anchors),
            other_certs=[c for c in certs if c != cert],
            moment=moment,
            crls=all_crls,
            allow_fetching=fetch_revocation != "off",
            revocation_mode=mode,
            # SHA-1 in certificate signatures is accepted (PKITS and most deployed CAs still
            # chain through SHA-1 roots); MD5 only with the legacy policy; MD2 never.
            algorithm_usage_policy=DisallowWeakAlgorithmsPolicy(
                weak_hash_algos=frozenset({"md2"} if policy.legacy else {"md2", "md5"}),
                rsa_key_size_threshold=policy.rsa_floor,
                dsa_key_size_threshold=1024 if policy.legacy else 3072,
            ),
        )
        validator = CertificateValidator(cert, validation_context=ctx)
        asyncio.run(validator.async_validate_usage(ku_wanted, eku_wanted, extended_optional=True))

    try:
        # pyhanko's soft/hard-fail modes only consult CRLs for certificates that declare a
        # distribution point. Policy: once any CRL is held (message or CRL directory), every
        # certificate in the path needs current revocation info ("revocation-unknown" else),
        # as RFC 5280 / PKITS expect; with no CRLs at all, no revocation check is possible.
        if all_crls:
            run("require")
            return []
        run("hard-fail" if fetch_revocation == "hard" else "soft-fail")
    except RevokedError as exc:
        return [("revoked", str(exc))]
    except ExpiredError as exc:
        return [("expired", str(exc))]
    except NotYetValidError as exc:
        return [("not-yet-valid", str(exc))]
    except InsufficientRevinfoError as exc:
        return _stale_revocation(run, all_crls, now) or [("revocation-unknown", str(exc))]
    except DisallowedAlgorithmError as exc:
        return [("unsupported-algorithm", str(exc))]
    except PathBuildingError as exc:
        return [("untrusted", f"no path to a trust anchor: {exc}")]
    except InvalidCertificateError as exc:
        text = str(exc)
        if "self-signed" in text.lower():
            return [("untrusted", f"self-signed certificate is not a trust anchor: {text}")]
        return [("bad-usage", text)]
    except PathValidationError as exc:
        text = str(exc)
        if "critical" in text.lower():
            return [("unknown-critical-extension", text)]
        return [("path-invalid", text)]
    except (ValidationError, PathError) as exc:
        return [("path-invalid", str(exc))]
    except (ValueError, TypeError, NotImplementedError) as exc:
        return [("unsupported-algorithm", f"certificate path could not be checked: {exc}")]
    return []


def _signing_time_reason(cert: x509.Certificate, when: dt.datetime) -> Reason | None:
    # smime.md 6 4.5: a signingTime outside the certificate's validity means the certificate
    # was expired or not yet valid when the sender claims to have signed.
    validity = cert["tbs_certificate"]["validity"]
    start, end = validity["not_before"].native, validity["not_after"].native
    if when < start:
        return ("signing-time-outside-validity",
                f"signed at {when:%Y-%m-%d %H:%M:%S}Z, before the certificate's "
                f"notBefore {start:%Y-%m-%d %H:%M:%S}Z")
    if when > end:
        return ("signing-time-outside-validity",
                f"signed at {when:%Y-%m-%d %H:%M:%S}Z, after the certificate's "
                f"notAfter {end:%Y-%m-%d %H:%M:%S}Z")
    return None


def _signer(
    si: cms.SignerInfo,
    pool: Sequence[x509.Certificate],
    content: bytes,
    declared: set[str],
    *,
    trust: TrustStore,
    when: dt.datetime,
    from_address: str | None,
    crls: Sequence[bytes],
    fetch_revocation: str,
    policy: VerifyPolicy,
) -> SignerResult:
    sr: list[Reason] = []
    cert = cs.find_signer_cert(si, pool)
    digest_name = si["digest_algorithm"]["algorithm"].native
    found = cs.needed_attrs(si)
    st_attr = found.get("signing_time")
    st: dt.datetime | None = st_attr[0].native if st_attr is not None else None
    caps = tuple(
        str(c["capability_id"].native)
        for c in (found["smime_capabilities"][0] if "smime_capabilities" in found else ())
    )
    if digest_name not in declared:
        sr.append(("digest-set-mismatch", f"{digest_name} is not in digestAlgorithms"))
    if cert is None:
        sr.append(("no-signer-certificate", "the signer's certificate is not in the message"))
    else:
        bad = cs.key_reason(cert, policy) or (
            None if cs.ess_matches(si, cert) else
            ("signing-certificate-mismatch",
             "the ESS signingCertificate attribute names a different certificate")
        ) or cs.check_signature(si, cert, content, policy)
        if bad:
            sr.append(bad)
        else:
            if digest_name == "sha1":
                sr.append(("legacy-sha1", "signed with SHA-1 (accepted by the legacy policy)"))
            if cert.public_key.algorithm == "dsa" or (
                cert.public_key.algorithm == "rsa" and cert.public_key.bit_size < 2048
            ):
                sr.append(("legacy-algorithm",
                           f"{cert.public_key.algorithm.upper()} key of "
                           f"{cert.public_key.bit_size} bits (accepted by the legacy policy)"))
            if st is not None:
                late = _signing_time_reason(cert, st)
                if late:
                    sr.append(late)
            moment = st if policy.at_signing_time and st is not None else when
            sr += _path_reasons(cert, pool, trust, moment, crls, fetch_revocation, policy)
        if from_address is not None and not _emails(cert):
            # RFC 8550 3: acceptable as a certificate, but nothing binds it to From.
            sr.append(("certificate-without-address",
                       f"the certificate names no e-mail address, so From {from_address} "
                       "cannot be bound to it"))
        elif from_address is not None and not _from_matches(cert, from_address):
            sr.append(("from-mismatch", f"From {from_address} is not in the certificate"))
    fatal = [r for r in sr if r[0] not in WARNINGS]
    return SignerResult(cert, not fatal, tuple(sr), st, str(digest_name), caps)


def _aggregate(signers: Sequence[SignerResult], policy: VerifyPolicy) -> bool:
    """smime.md 7: some signer must verify and bind From; strict also needs every other
    SignerInfo to be sound (a failing extra signer makes the message "mixed")."""
    if not any(s.verified for s in signers):
        return False
    if policy.multi_signer == "lenient":
        return True
    return all(
        all(code in WARNINGS or code in _IDENTITY for code, _ in s.reasons) for s in signers
    )


def verify_content(
    der: bytes,
    detached_content: bytes | None = None,
    *,
    trust: TrustStore,
    now: dt.datetime | None = None,
    from_address: str | None = None,
    crls: Sequence[bytes] = (),
    fetch_revocation: str = "off",
    extra_certs: Sequence[x509.Certificate] = (),
    policy: VerifyPolicy = DEFAULT_POLICY,
) -> VerifyResult:
    """Verify a DER SignedData; `detached_content` is the signed bytes for detached form.

    `extra_certs` supplies certificates the message lacks (a local store, smime.md 6 4.1).
    """
    parsed = cs.parse_signed(der, policy)
    _cap_count("CRLs", len(crls), policy.max_crls)
    pool = (*parsed.certificates, *extra_certs)
    when = now or dt.datetime.now(dt.UTC)
    if parsed.content is not None and detached_content is not None:
        content, form = detached_content, "detached"
        reasons: list[Reason] = [
            ("econtent-in-detached", "multipart/signed whose SignedData also carries eContent")
        ]
    elif parsed.content is not None:
        content, form, reasons = parsed.content, "opaque", []
    elif detached_content is not None:
        content, form, reasons = detached_content, "detached", []
    else:
        content, form = b"", "detached"
        reasons = [("no-content", "detached signature without the signed content")]
    econtent_type = parsed.signed_data["encap_content_info"]["content_type"].native
    if econtent_type != "data":
        # S/MIME signs MIME entities (id-data); the contentType attribute is checked against
        # id-data per signer, so the eContentType must say the same (smime.md 6 4.2).
        reasons.append(("content-type-mismatch", f"eContentType is {econtent_type}, not id-data"))
    declared = {d["algorithm"].native for d in parsed.signed_data["digest_algorithms"]}
    signers = [
        _signer(si, pool, content, declared, trust=trust, when=when,
                from_address=from_address, crls=[*parsed.crls, *crls],
                fetch_revocation=fetch_revocation, policy=policy)
        for si in parsed.signed_data["signer_infos"]
    ]
    if not signers:
        reasons = [r for r in reasons if r[0] != "no-content"]
        reasons.append(("certs-only", "no signers: a certificate bundle is not a signature")
                       if parsed.certificates else
                       ("no-signers", "the signature has no signers"))
    all_reasons = [*reasons, *(r for s in signers for r in s.reasons)]
    ok = not reasons and _aggregate(signers, policy)
    return VerifyResult(ok, tuple(all_reasons), tuple(signers), parsed.certificates, content, form)


def _cap_count(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise MalformedError(f"{count} {what} exceed the limit of {limit}")


def _failed(code: str, text: str, form: str) -> VerifyResult:
    return VerifyResult(False, ((code, text),), (), (), b"", form)


def verify(
    message: bytes,
    *,
    trust: TrustStore,
    now: dt.datetime | None = None,
    from_address: str | None = None,
    crls: Sequence[bytes] = (),
    fetch_revocation: str = "off",
    policy: VerifyPolicy = DEFAULT_POLICY,
) -> VerifyResult:
    """Verify a whole RFC 5322 message signed in detached or opaque form.

    Identity (smime.md 9.2 ID attacks): exactly one From mailbox, its addr-spec (never the
    display name) must be in the signer's certificate, and a From inside the signed content
    (header protection, or a signed message/rfc822) must agree with the outer one.
    """
    try:
        found = mime.locate_signed(message)
    except mime.PartiallySigned as exc:
        return _failed("partially-signed", str(exc), "detached")
    if found.from_count > 1:
        return _failed("multiple-from", "the message has more than one From mailbox",
                       found.form)
    if from_address is None and policy.bind_from:
        from_address = found.from_address
    result = verify_content(
        found.der,
        found.signed_part,
        trust=trust,
        now=now,
        from_address=from_address,
        crls=crls,
        fetch_revocation=fetch_revocation,
        policy=policy,
    )
    extra: list[Reason] = []
    if not policy.bind_from:
        pass
    elif from_address is None:
        extra.append(("from-missing", "the message has no From address to bind the signer to"))
    else:
        sender = found.sender_address
        if sender is not None and result.signers and not any(
            s.certificate is not None and _from_matches(s.certificate, sender)
            for s in result.signers
        ):
            # smime.md 5.1: a Sender that the signer's certificate does not name breaks the
            # identity binding as much as a wrong From.
            extra.append(("sender-mismatch", f"Sender {sender} is not in the certificate"))
        inner = mime.inner_from(result.content)
        if inner is not None and inner.lower() != from_address.strip().lower():
            extra.append(("inner-from-mismatch",
                          f"the signed content says From {inner}, the message {from_address}"))
    if extra:
        result = attrs.evolve(result, verified=False, reasons=(*result.reasons, *extra))
    if found.form == "opaque":
        return attrs.evolve(result, form="opaque")
    return result
