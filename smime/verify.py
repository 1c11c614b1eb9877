"""Verify S/MIME signatures (smime.md section 6): signature, digest, path, usage, From.

Verification failures are reported, never raised: `VerifyResult.reasons` carries stable codes.
Only input that cannot be parsed at all raises `MalformedError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import attrs
from asn1crypto import cms, x509

from smime import _cms_check as ck
from smime import _cms_signed as cs
from smime import mime
from smime._path import path_reasons
from smime.binding import sender_binding
from smime.errors import MalformedError
from smime.policy import DEFAULT_POLICY, VerifyPolicy
from smime.trust import TrustStore

Reason = tuple[str, str]
# Flags that describe a verified signature without failing it (legacy policy only).
WARNINGS = frozenset({"legacy-sha1", "legacy-algorithm", "date-mismatch"})
# A Date header further than this from the signer's signingTime gets the `date-mismatch`
# warning: both are written by the sending client within seconds of each other, so hours
# apart mean a header edited after signing (or a badly wrong clock). Not a failure: the
# signature covers neither the Date header nor, reliably, the sender's clock.
DATE_SLACK = dt.timedelta(hours=1)
# A signer whose only failure is the From binding still counts as cryptographically sound for
# the strict multi-signer rule (a co-signer need not be the From address).
_IDENTITY = frozenset({"from-mismatch", "certificate-without-address"})


@attrs.frozen
class SignerResult:
    certificate: x509.Certificate | None
    verified: bool
    reasons: tuple[Reason, ...]
    signing_time: dt.datetime | None
    digest_algorithm: str
    capabilities: tuple[str, ...]
    # How the certificate names the From address: "address" (its own rfc822Name) or "domain"
    # (a gateway certificate's SAN domain, when the policy accepts those); None: not bound.
    binding: str | None = None


@attrs.frozen
class VerifyResult:
    verified: bool
    reasons: tuple[Reason, ...]
    signers: tuple[SignerResult, ...]
    certificates: tuple[x509.Certificate, ...]
    content: bytes
    form: str  # "detached" | "opaque"

    @property
    def binding(self) -> str | None:
        """How the sender was bound to the signature that verified ("address" | "domain")."""
        return next((s.binding for s in self.signers if s.verified and s.binding), None)


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


def _domains(cert: x509.Certificate) -> tuple[str, ...]:
    # SAN dNSName, and an rfc822Name without a local part (RFC 5280 4.2.1.10 uses that form
    # for "every mailbox at this host"): both name a domain, never an address.
    return tuple(
        str(n.native).lower().lstrip(".") if n.name == "rfc822_name" else str(n.native).lower()
        for n in (cert.subject_alt_name_value or ())
        if n.name == "dns_name" or (n.name == "rfc822_name" and "@" not in str(n.native))
    )


def binding_of(cert: x509.Certificate, address: str, policy: VerifyPolicy) -> str | None:
    """How `cert` names `address`: "address", "domain" (only when the policy accepts domain
    certificates) or None."""
    return sender_binding((e for e in _emails(cert) if "@" in e), _domains(cert), address,
                          domain_certificates=policy.domain_certificates)


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
    signed_attrs: bytes | None,
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
    binding: str | None = None
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
    bare: Reason | None = None
    if policy.require_signed_attributes and not cs.has_signed_attrs(si):
        bare = ("no-signed-attributes",
                "the signer has no signed attributes (content type, message digest, signing "
                "certificate): refused by the require_signed_attributes policy")
    if cert is None:
        sr.append(("no-signer-certificate", "the signer's certificate is not in the message"))
        if bare:
            sr.append(bare)
    else:
        # A refused signer is refused before any signature or certificate work is done.
        bad = bare or ck.key_reason(cert, policy) or (
            None if cs.ess_matches(si, cert) else
            ("signing-certificate-mismatch",
             "the ESS signingCertificate attribute names a different certificate")
        ) or ck.check_signature(si, cert, content, policy, signed_attrs=signed_attrs)
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
            sr += path_reasons(cert, pool, trust, moment, crls, fetch_revocation, policy)
        binding = None if from_address is None else binding_of(cert, from_address, policy)
        if from_address is None or binding is not None:
            pass
        elif not any("@" in e for e in _emails(cert)) and not (
            policy.domain_certificates and _domains(cert)
        ):
            # RFC 8550 3: acceptable as a certificate, but nothing binds it to From.
            sr.append(("certificate-without-address",
                       f"the certificate names no e-mail address, so From {from_address} "
                       "cannot be bound to it" + (
                           " (it names a domain: domain certificates are not accepted here)"
                           if _domains(cert) else "")))
        else:
            sr.append(("from-mismatch", f"From {from_address} is not in the certificate"
                       + (" (domain certificates are not accepted here)"
                          if not policy.domain_certificates and _domains(cert) else "")))
    fatal = [r for r in sr if r[0] not in WARNINGS]
    return SignerResult(cert, not fatal, tuple(sr), st, str(digest_name), caps, binding)


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
    more_certs: Callable[[], Sequence[x509.Certificate]] | None = None,
) -> VerifyResult:
    """Verify a DER SignedData; `detached_content` is the signed bytes for detached form.

    `extra_certs` supplies certificates the message lacks (a local store, smime.md 6 4.1).
    `more_certs` is asked only when a signer's certificate is in neither (RFC 5652 5.1 lets
    a sender leave it out; gpgsm does): a key store lookup that costs nothing otherwise.
    """
    parsed = cs.parse_signed(der, policy)
    _cap_count("CRLs", len(crls), policy.max_crls)
    pool: tuple[x509.Certificate, ...] = (*parsed.certificates, *extra_certs)
    if more_certs is not None and any(
        cs.find_signer_cert(si, pool) is None for si in parsed.signed_data["signer_infos"]
    ):
        pool = (*pool, *more_certs())
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
        _signer(si, attrs_der, pool, content, declared, trust=trust, when=when,
                from_address=from_address, crls=[*parsed.crls, *crls],
                fetch_revocation=fetch_revocation, policy=policy)
        for si, attrs_der in zip(parsed.signed_data["signer_infos"], parsed.signed_attrs,
                                 strict=True)
    ]
    if not signers:
        reasons = [r for r in reasons if r[0] != "no-content"]
        reasons.append(("certs-only", "no signers: a certificate bundle is not a signature")
                       if parsed.certificates else
                       ("no-signers", "the signature has no signers"))
    all_reasons = [*reasons, *(r for s in signers for r in s.reasons)]
    ok = not reasons and _aggregate(signers, policy)
    return VerifyResult(ok, tuple(all_reasons), tuple(signers), parsed.certificates, content, form)


def _date_warnings(result: VerifyResult, date: dt.datetime) -> VerifyResult:
    """Add `date-mismatch` (a warning) to each verified signer whose signingTime is far from
    Date. Like the legacy flags it qualifies a signature that holds; on one that fails anyway
    it would only add noise to the reasons that matter."""
    signers = []
    for s in result.signers:
        if s.verified and s.signing_time is not None and abs(s.signing_time - date) > DATE_SLACK:
            hours = abs(s.signing_time - date).total_seconds() / 3600
            why = ("date-mismatch", f"the Date header ({date.isoformat()}) is {hours:.1f} h "
                   f"from the signing time ({s.signing_time.isoformat()})")
            s = attrs.evolve(s, reasons=(*s.reasons, why))
        signers.append(s)
    added = tuple(r for s in signers for r in s.reasons if r[0] == "date-mismatch")
    if not added:
        return result
    return attrs.evolve(result, signers=tuple(signers), reasons=(*result.reasons, *added))


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
    extra_certs: Sequence[x509.Certificate] = (),
    signer_lookup: Callable[[str | None], Sequence[x509.Certificate]] | None = None,
) -> VerifyResult:
    """Verify a whole RFC 5322 message signed in detached or opaque form.

    `extra_certs`: certificates to look for the signer among when the message lacks it;
    `signer_lookup(from_address)` is asked for more only then (a key store's certificates
    for the sender).

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
        if found.from_unparseable:
            # smime.md 9.2: what we would bind and what a client shows may differ
            # (`eve@evil.example)<alice@example.com>`), so nothing is bound at all.
            return _failed("from-unparseable",
                           "the From header does not parse to exactly one mailbox",
                           found.form)
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
        extra_certs=extra_certs,
        more_certs=None if signer_lookup is None else (lambda: signer_lookup(from_address)),
    )
    if found.date is not None:
        result = _date_warnings(result, found.date)
    extra: list[Reason] = []
    if not policy.bind_from:
        pass
    elif from_address is None:
        extra.append(("from-missing", "the message has no From address to bind the signer to"))
    else:
        sender = found.sender_address
        if sender is not None and result.signers and not any(
            s.certificate is not None and binding_of(s.certificate, sender, policy)
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
