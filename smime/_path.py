"""RFC 5280 path validation with revocation for a signer certificate (pyhanko-certvalidator),
mapped to the verifier's reason codes (docs/smime-verify.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence

from asn1crypto import crl as asn1_crl
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
from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

from smime.policy import DEFAULT_POLICY, VerifyPolicy
from smime.trust import TrustStore

Reason = tuple[str, str]

# pyhanko-certvalidator logs full tracebacks for CRL-issuer path failures that it then turns
# into a normal validation error; without a handler Python prints them to stderr.
logging.getLogger("pyhanko_certvalidator").addHandler(logging.NullHandler())


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


def path_reasons(
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
