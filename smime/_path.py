"""RFC 5280 path validation with revocation for a signer certificate (pyhanko-certvalidator),
mapped to the verifier's reason codes (docs/smime-verify.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

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

from smime._pathcache import PATHS, certificate_events, chain_key, crl_events
from smime.policy import DEFAULT_POLICY, VerifyPolicy
from smime.trust import TrustStore

Reason = tuple[str, str]

# pyhanko-certvalidator logs full tracebacks for CRL-issuer path failures that it then turns
# into a normal validation error; without a handler Python prints them to stderr.
logging.getLogger("pyhanko_certvalidator").addHandler(logging.NullHandler())


class _FetchLoop:
    """An event loop of the validator's own, in a daemon thread, for validations that fetch
    CRLs or certificates over the network (pyhanko's fetchers need a running loop).

    Why not a fresh loop per call (asyncio's run): the gateway's queue process calls the
    verifier from inside its own event loop, where that raises (issue 12: every small signed
    inbound message went to `hold`); and running the fetch on the caller's loop would need the
    whole verifier to be async. The caller's thread blocks for the fetch, as it would for any
    other blocking I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # After a fork (the gateway forks its workers) the thread is gone: start another.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="path-validation-fetch",
                                 daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def complete(self, coro: Coroutine[Any, Any, object]) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._running()).result()


_FETCH_LOOP = _FetchLoop()


def _complete(make: Callable[[], Coroutine[Any, Any, object]], fetching: bool) -> object:
    """Run one of pyhanko's validation coroutines to its end from plain synchronous code, in
    any thread, whether or not that thread runs an event loop.

    Without fetching, validation never waits for anything (certificates and CRLs are all in
    memory), so the coroutine is stepped to its end right here: no loop, no thread, no cost.
    Should it ever wait after all, that attempt is dropped and the work done again on the
    fetch loop, as validations that fetch always are."""
    if not fetching:
        coro = make()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value
        coro.close()
    return _FETCH_LOOP.complete(make())


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
    """Why the signer's path is not valid at `now` (nothing: it is), from the cache of
    successful validations (smime/_pathcache.py) when all revocation data is at hand."""
    if fetch_revocation != "off":  # what a fetch would find is not in the cache's key
        return _validate(cert, certs, trust, now, crls, fetch_revocation, policy)
    others = [c for c in certs if c != cert]
    key = chain_key(cert, others, trust.fingerprint(), crls, (policy.legacy, policy.rsa_floor))
    if PATHS.valid(key, now):
        return []
    reasons = _validate(cert, certs, trust, now, crls, fetch_revocation, policy)
    if not reasons:
        PATHS.remember(key, now, [*trust.events(), *certificate_events([cert, *others]),
                                  *crl_events(crls)])
    return reasons


def _validate(
    cert: x509.Certificate,
    certs: Sequence[x509.Certificate],
    trust: TrustStore,
    now: dt.datetime,
    crls: Sequence[bytes],
    fetch_revocation: str,
    policy: VerifyPolicy,
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

        async def validate() -> None:
            try:
                await validator.async_validate_usage(ku_wanted, eku_wanted,
                                                     extended_optional=True)
            finally:
                await ctx.aclose()  # the HTTP session of a fetching validation

        _complete(validate, fetch_revocation != "off")

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
