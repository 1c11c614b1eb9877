"""Verify S/MIME signatures (smime.md section 6): signature, digest, path, usage, From.

Verification failures are reported, never raised: `VerifyResult.reasons` carries stable codes.
Only input that cannot be parsed at all raises `MalformedError`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

import attrs
from asn1crypto import x509
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

from smime import _cms_signed as cs
from smime import mime
from smime.trust import TrustStore

Reason = tuple[str, str]

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


def _path_reasons(
    cert: x509.Certificate,
    certs: Sequence[x509.Certificate],
    trust: TrustStore,
    now: dt.datetime,
    crls: Sequence[bytes],
    fetch_revocation: str,
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

    def run(mode: str) -> None:
        ctx = ValidationContext(
            trust_roots=list(trust.anchors),
            other_certs=[c for c in certs if c != cert],
            moment=now,
            crls=all_crls,
            allow_fetching=fetch_revocation != "off",
            revocation_mode=mode,
            # SHA-1 in certificate signatures is accepted for legacy mail (flagged on the
            # message digest); MD2/MD5 never.
            weak_hash_algos={"md2", "md5"},
        )
        validator = CertificateValidator(cert, validation_context=ctx)
        asyncio.run(
            validator.async_validate_usage(ku_wanted, {"email_protection"}, extended_optional=True)
        )

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
        return [("revocation-unknown", str(exc))]
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
) -> VerifyResult:
    """Verify a DER SignedData; `detached_content` is the signed bytes for detached form.

    `extra_certs` supplies certificates the message lacks (a local store, smime.md 6 4.1).
    """
    parsed = cs.parse_signed(der)
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
    declared = {d["algorithm"].native for d in parsed.signed_data["digest_algorithms"]}
    signers: list[SignerResult] = []
    for si in parsed.signed_data["signer_infos"]:
        sr: list[Reason] = []
        cert = cs.find_signer_cert(si, pool)
        digest_name = si["digest_algorithm"]["algorithm"].native
        found = cs.needed_attrs(si)
        st = found.get("signing_time")
        caps = tuple(
            str(c["capability_id"].native)
            for c in (found["smime_capabilities"][0] if "smime_capabilities" in found else ())
        )
        if digest_name not in declared:
            sr.append(("digest-set-mismatch", f"{digest_name} is not in digestAlgorithms"))
        if cert is None:
            sr.append(("no-signer-certificate", "the signer's certificate is not in the message"))
        else:
            bad = cs.check_signature(si, cert, content)
            if bad:
                sr.append(bad)
            elif digest_name == "sha1":
                sr.append(("legacy-sha1", "signed with SHA-1 (legacy; accepted only as flagged)"))
            if not bad:
                sr += _path_reasons(
                    cert, pool, trust, when, [*parsed.crls, *crls], fetch_revocation
                )
            if from_address is not None and not _from_matches(cert, from_address):
                sr.append(("from-mismatch", f"From {from_address} is not in the certificate"))
        fatal = [r for r in sr if r[0] != "legacy-sha1"]
        signers.append(
            SignerResult(
                cert,
                not fatal and not reasons,
                tuple(sr),
                st[0].native if st is not None else None,
                str(digest_name),
                caps,
            )
        )
    if not signers:
        reasons.append(("no-signers", "the signature has no signers"))
    all_reasons = [*reasons, *(r for s in signers for r in s.reasons)]
    ok = bool(signers) and not reasons and all(s.verified for s in signers)
    return VerifyResult(ok, tuple(all_reasons), tuple(signers), parsed.certificates, content, form)


def verify(
    message: bytes,
    *,
    trust: TrustStore,
    now: dt.datetime | None = None,
    from_address: str | None = None,
    crls: Sequence[bytes] = (),
    fetch_revocation: str = "off",
) -> VerifyResult:
    """Verify a whole RFC 5322 message signed in detached or opaque form."""
    try:
        found = mime.locate_signed(message)
    except mime.PartiallySigned as exc:
        return VerifyResult(False, (("partially-signed", str(exc)),), (), (), b"", "detached")
    if found.from_count > 1:
        return VerifyResult(
            False,
            (("multiple-from", "the message has several From headers"),),
            (),
            (),
            b"",
            found.form,
        )
    if from_address is None:
        from_address = found.from_address
    result = verify_content(
        found.der,
        found.signed_part,
        trust=trust,
        now=now,
        from_address=from_address,
        crls=crls,
        fetch_revocation=fetch_revocation,
    )
    if found.form == "opaque":
        return attrs.evolve(result, form="opaque")
    return result
