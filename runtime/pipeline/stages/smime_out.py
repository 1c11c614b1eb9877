"""Sending profiles (reference 12.3-12.4): sign, encrypt, sign-encrypt or triple, with the
profile's action when a recipient has no usable key (bounce, drop or split).

Used twice: at once by the final `smime-gateway("p")` in the filter stages, and at step 19 by
`SmimeOutbound` for `smime-gateway-deferred("p")` (of the whole message or of one splinter).
Encryption profiles (`encrypt`, `encrypt-deferred`) are carried out by their sending profile
here too: rule 0 at once (final) or at step 19 (deferred, after any smime-gateway-deferred, as
reference 7.10 orders them); rule 1 ("TLS first") is decided by the queue at delivery, which
calls `SmimeOutbound.encrypt_for_delivery` when the next hop's TLS does not meet the policy.
Fail safe: a profile that encrypts never lets a recipient get plain text except through the
split branch the administrator chose; a signing failure bounces. A key-store outage is
temporary: the message waits in the deferred queue (RetryLater), unprocessed, and is tried
again on the retry schedule, with one alert for the outage; it is never bounced for it, nor
sent without the lookup it needs.
"""

from __future__ import annotations

import contextlib
import email.header
import logging
from typing import Any

import attrs
from attrs import define, frozen
from cryptography import x509

from runtime.config.config import TlsPolicy
from runtime.engine.fieldline import clean
from runtime.pipeline.flow import (
    BOUNCE,
    COPIED,
    DELIVER,
    DROP,
    Copy,
    EncryptRequest,
    InFlight,
    RetryLater,
)
from runtime.pipeline.stages import StageContext
from runtime.pipeline.stages.smime_ops import protect
from smime.envelope import choose_cipher
from smime.errors import SMIMEError
from smime.keystore import KeyStoreUnavailableError
from smime.keystore.lookup import find_encryption_key

log = logging.getLogger("filterlang.smime")

Group = tuple[tuple[str, ...], bytes, str]  # recipients, message bytes, trace note


@frozen
class ProfileOutcome:
    groups: tuple[Group, ...] = ()
    bounced: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    reason: str = ""  # the DSN diagnostic for bounced recipients
    events: tuple[str, ...] = ()
    profile: str = ""
    mode: str = ""
    # Per recipient looked up: (recipient, chosen key name or "", why), for `filterlang test`.
    keys: tuple[tuple[str, str, str], ...] = ()
    encryption: str = ""  # the encryption profile that used this sending profile, if one did
    # Rule 1 of an encryption profile: nothing encrypted yet, the queue decides at delivery.
    tls_first: EncryptRequest | None = None

    @property
    def title(self) -> str:
        if self.encryption and self.tls_first is not None:
            return f"encryption profile {self.encryption} (rule 1: TLS first)"
        if self.encryption:
            return f"encryption profile {self.encryption} (rule 0: always encrypt), " \
                   f"sending profile {self.profile}"
        return f"sending profile {self.profile}"


def with_subject(data: bytes, subject: str) -> bytes:
    """`data` with its (outer) Subject replaced by `subject`, the encrypted message's subject
    of `encrypt(p, subject)`; unchanged when that is the subject it already has."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    old: list[bytes] = []
    at = -1  # where the (first) Subject was: the new one takes its place
    in_subject = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and in_subject:
            old.append(line)
            continue
        in_subject = line[:8].lower() == b"subject:"
        if in_subject and at < 0:
            at = len(kept)
        (old if in_subject else kept).append(line)
    current = b"".join(old)[8:].strip().decode("utf-8", "replace")
    with contextlib.suppress(ValueError, LookupError):
        current = str(email.header.make_header(email.header.decode_header(current)))
    text = clean(subject)
    if old and current == text:
        return data
    value = text if text.isascii() else \
        email.header.Header(text, "utf-8").encode().replace("\n", "\r\n")
    body = [ln for ln in kept if ln]
    body.insert(at if 0 <= at <= len(body) else len(body), b"Subject: " + value.encode("ascii"))
    return b"\r\n".join(body) + b"\r\n" + rest


def _no_key_reason(profile: str, missing: list[str]) -> str:
    return (f"550 5.7.1 no usable S/MIME encryption key for {', '.join(missing)}; sending "
            f"profile {profile!r} requires encryption")


def apply_profile(ctx: StageContext, data: bytes, rcpts: tuple[str, ...], name: str, *,
                  subject: str | None = None) -> ProfileOutcome:
    """Protect `data` for `rcpts` as profile `name` says; `subject`: the Subject the encrypted
    copy takes (an encryption profile's), not the copies left unencrypted."""
    profile = ctx.config.profiles.get(name)
    if profile is None:
        return ProfileOutcome(bounced=rcpts, reason=f"550 5.7.1 no sending profile {name!r} "
                              "is configured", events=("out_no_profile",), profile=name)
    signer = ctx.signers.get(profile.signing_certificate or "")
    if profile.mode != "encrypt" and signer is None:
        return ProfileOutcome(bounced=rcpts, reason=f"550 5.7.1 signing certificate of profile "
                              f"{name!r} is not available", events=("out_sign_failed",),
                              profile=name, mode=profile.mode)
    form = profile.sign_mode

    def sign_only(who: tuple[str, ...], note: str) -> Group:
        return who, protect(data, mode="sign", signer=signer, form=form), note

    keys: list[tuple[str, str, str]] = []
    try:
        if profile.mode == "sign":
            return ProfileOutcome(groups=(sign_only(rcpts, f"profile {name}: signed"),),
                                  events=("out_sign",), profile=name, mode=profile.mode)
        certs: dict[str, x509.Certificate] = {}
        caps: list[tuple[str, ...]] = []
        keyed: list[str] = []
        missing: list[str] = []
        for r in rcpts:
            found = find_encryption_key(ctx.store, r)
            keys.append((r, found.chosen.name if found.chosen else "", found.reason))
            if found.chosen is None:
                missing.append(r)
                continue
            keyed.append(r)
            if found.chosen.fingerprint not in certs:
                certs[found.chosen.fingerprint] = x509.load_pem_x509_certificate(
                    found.chosen.pem.encode("ascii"))
                if found.chosen.capabilities:
                    caps.append(tuple(found.chosen.capabilities))
                ctx.store.record_use(found.chosen.id)
        ctx.store_up()
        action = profile.missing_key_action
        done: dict[str, Any] = {"profile": name, "mode": profile.mode, "keys": tuple(keys)}
        if missing and action == "bounce":
            return ProfileOutcome(bounced=rcpts, reason=_no_key_reason(name, missing),
                                  events=("out_missing_key_bounce",), **done)
        if missing and action == "drop":
            return ProfileOutcome(dropped=rcpts, events=("out_missing_key_drop",), **done)
        groups: list[Group] = []
        events = [f"out_{profile.mode}"]
        if keyed:
            sealed = protect(data, mode=profile.mode, signer=signer, recipients=list(certs.values()),
                             form=form, cipher=profile.cipher, capabilities=caps or None)
            if subject is not None:
                sealed = with_subject(sealed, subject)
            cipher = choose_cipher(caps or None, profile.cipher)  # what protect() chose
            groups.append((tuple(keyed), sealed, f"profile {name}: {profile.mode} for "
                           f"{', '.join(keyed)} (cipher {cipher})"))
        if missing:  # split: the others get a copy that is not encrypted
            events.append("out_missing_key_split")
            if profile.mode == "encrypt":
                groups.append((tuple(missing), data, f"profile {name}: split, plain (no key) for "
                               f"{', '.join(missing)}"))
            else:
                groups.append(sign_only(tuple(missing), f"profile {name}: split, signed only "
                                        f"(no key) for {', '.join(missing)}"))
        return ProfileOutcome(groups=tuple(groups), events=tuple(events), **done)
    except KeyStoreUnavailableError as exc:
        # Caught before SMIMEError, of which it is one: an outage must not bounce the mail.
        ctx.store_down(str(exc))
        raise RetryLater(f"key store unavailable: {exc}") from None
    except (SMIMEError, ValueError) as exc:
        log.error("sending profile %s failed: %s", name, exc)
        return ProfileOutcome(bounced=rcpts, reason=f"554 5.7.1 S/MIME processing with profile "
                              f"{name!r} failed", events=("out_failed",), profile=name,
                              mode=profile.mode, keys=tuple(keys))


def apply_encryption(ctx: StageContext, data: bytes, rcpts: tuple[str, ...],
                     req: EncryptRequest) -> ProfileOutcome:
    """`encrypt(p, subject, rule)` for `rcpts`: rule 0 encrypts now with the encryption
    profile's sending profile (its mode and missing-key action); rule 1 leaves the message as it
    is, marked for the queue, which encrypts at delivery unless the next hop's TLS meets the
    policy (`SmimeOutbound.encrypt_for_delivery`)."""
    enc = ctx.config.encryption_profiles.get(req.profile)
    if enc is None:  # (lint --config and serve --check refuse such a filter first)
        return ProfileOutcome(bounced=rcpts, reason=f"550 5.7.1 no encryption profile "
                              f"{req.profile!r} is configured", events=("out_no_profile",),
                              encryption=req.profile)
    if req.tls_first:
        need = " with a certificate that verifies" if enc.tls_verify else ""
        sending = ctx.config.profiles.get(enc.sending_profile)
        action = f", missing_key_action {sending.missing_key_action}" if sending else ""
        note = (f"encryption profile {enc.name}: TLS first, decided at delivery: in clear if "
                f"the next hop takes STARTTLS{need}, else encrypted by sending profile "
                f"{enc.sending_profile} (mode {sending.mode if sending else '?'}{action})")
        return ProfileOutcome(groups=((rcpts, data, note),), events=("out_tls_first",),
                              profile=enc.sending_profile, encryption=enc.name, tls_first=req)
    out = apply_profile(ctx, data, rcpts, enc.sending_profile, subject=req.subject)
    return attrs.evolve(out, encryption=enc.name)


def then_encrypt(ctx: StageContext, first: ProfileOutcome, req: EncryptRequest) -> ProfileOutcome:
    """smime-gateway(-deferred) and encrypt-deferred both apply: S/MIME first, then envelope
    encryption of what it made, group by group (reference 7.10)."""
    groups: list[Group] = []
    bounced, dropped = list(first.bounced), list(first.dropped)
    reason, events, keys = first.reason, list(first.events), list(first.keys)
    tls_first: EncryptRequest | None = None
    for who, data, note in first.groups:
        out = apply_encryption(ctx, data, who, req)
        groups += [(w, d, f"{note}; {n}") for w, d, n in out.groups]
        bounced += out.bounced
        dropped += out.dropped
        reason = reason or out.reason
        events += out.events
        keys += out.keys
        tls_first = tls_first or out.tls_first
    return attrs.evolve(first, groups=tuple(groups), bounced=tuple(bounced),
                        dropped=tuple(dropped), reason=reason, events=tuple(events),
                        keys=tuple(keys), encryption=req.profile, tls_first=tls_first)


def apply_outcome(msg: InFlight, rcpts: tuple[str, ...], out: ProfileOutcome, *,
                  alt_mailhost: str = "", in_place: bool = True, quarantine: str | None = None) -> None:
    """Record a profile's outcome on the message: in place when one group covers every
    deliverable recipient, else as copies."""
    msg.events += [("smime", e) for e in out.events]
    if msg.recording:
        msg.record("smime_outbound", out.title, recipients=rcpts,
                   profile=out.profile, mode=out.mode, encryption=out.encryption,
                   rule=None if not out.encryption else (1 if out.tls_first else 0),
                   keys=[{"recipient": r, "key": k or None, "why": why} for r, k, why in out.keys],
                   bounced=list(out.bounced), dropped=list(out.dropped), reason=out.reason,
                   groups=[{"recipients": list(who), "note": note, "data": data}
                           for who, data, note in out.groups])
    for r in out.bounced:
        msg.dispositions[r] = BOUNCE
        msg.bounce_reasons[r] = out.reason
        msg.headers_only_dsn = True  # the content was meant to leave protected
    for r in out.dropped:
        msg.dispositions[r] = DROP
    if out.bounced or out.dropped:
        msg.trace.append(f"{'bounced' if out.bounced else 'dropped'}: {out.reason or 'no key'}")
    deliverable = set(msg.recipients(DELIVER))
    if in_place and len(out.groups) == 1 and set(out.groups[0][0]) == deliverable:
        msg.data = out.groups[0][1]
        msg.trace.append(out.groups[0][2])
        if out.tls_first is not None:
            msg.tls_first = out.tls_first
        return
    for who, data, note in out.groups:
        # A quarantined message's copies wait in the same quarantine (already protected, so a
        # release never sends what the profile meant to encrypt in clear).
        msg.copies.append(Copy(who, data, alt_mailhost=alt_mailhost, note=note,
                               quarantine=quarantine or msg.quarantine or "",
                               tls_first=out.tls_first))
        for r in who:
            msg.dispositions[r] = COPIED


def protect_deferred(ctx: StageContext, data: bytes, rcpts: tuple[str, ...], profile: str,
                     encrypt: EncryptRequest | None) -> ProfileOutcome:
    """The deferred operations of step 19: the sending profile, then the encryption profile."""
    if profile and encrypt is not None:
        return then_encrypt(ctx, apply_profile(ctx, data, rcpts, profile), encrypt)
    if encrypt is not None:
        return apply_encryption(ctx, data, rcpts, encrypt)
    return apply_profile(ctx, data, rcpts, profile)


@define
class SmimeOutbound:
    """Step 19: deferred S/MIME and encryption of the message and of every splinter copy that
    asked for them; and, for the queue, rule 1's encryption at delivery."""

    ctx: StageContext
    name: str = "smime_outbound"

    def finish(self, msg: InFlight) -> None:
        """DKIM signing of outgoing mail, after S/MIME so the signature covers what is
        delivered: the message and each copy that leaves (not one parked in a quarantine)."""
        signer = self.ctx.dkim
        if signer is None or msg.direction != "outgoing":
            return
        if msg.skip_dkim_signing:
            msg.trace.append("DKIM signing skipped (skip-dkim-signing)")
            return
        signed = signer.sign(msg.data)
        if signed is not None:
            msg.data = signed
            msg.trace.append("DKIM-signed")
        for i, c in enumerate(msg.copies):
            if not c.quarantine:
                done = signer.sign(c.data)
                if done is not None:
                    msg.copies[i] = attrs.evolve(c, data=done)

    def process(self, msg: InFlight) -> None:
        pending = [c for c in msg.copies if c.profile or c.encrypt]
        if pending:
            msg.copies = [c for c in msg.copies if c not in pending]
            for c in pending:
                out = protect_deferred(self.ctx, c.data, c.rcpts, c.profile, c.encrypt)
                for r in c.rcpts:  # the copy's recipients are re-decided by the profile
                    msg.dispositions[r] = DELIVER
                apply_outcome(msg, c.rcpts, out, alt_mailhost=c.alt_mailhost, in_place=False,
                              quarantine=c.quarantine or None)
        rcpts = msg.recipients(DELIVER)
        if (msg.deferred_profile or msg.deferred_encrypt) and rcpts:
            out = protect_deferred(self.ctx, msg.data, rcpts, msg.deferred_profile,
                                   msg.deferred_encrypt)
            apply_outcome(msg, rcpts, out, alt_mailhost=msg.alt_mailhost)

    def tls_policy(self, encryption_profile: str, destination: TlsPolicy) -> TlsPolicy:
        """What rule 1 asks of the next hop's TLS: the destination's [tls.outbound] policy,
        raised to `encrypt`, or to `verify` (against the profile's tls_ca_file) when the
        profile says tls_verify; a stronger destination policy stays as it is."""
        enc = self.ctx.config.encryption_profiles.get(encryption_profile)
        if enc is not None and enc.tls_verify:
            return destination.at_least("verify", enc.tls_ca_file)
        return destination.at_least("encrypt")

    def encrypt_for_delivery(self, data: bytes, rcpts: tuple[str, ...], encryption_profile: str,
                             subject: str) -> ProfileOutcome:
        """Rule 1 when the next hop's TLS did not meet the policy: encrypt now, as rule 0
        would have (RetryLater when the key store is down: the recipients wait).

        The message was DKIM-signed when it left the pipeline (finish); encrypting changes
        its body, so that signature comes off first and the encrypted message is signed
        again: the signature covers what is delivered."""
        signer = self.ctx.dkim
        bare = signer.unsign(data) if signer is not None else None
        out = apply_encryption(self.ctx, bare if bare is not None else data, rcpts,
                               EncryptRequest(encryption_profile, subject, rule=0))
        if bare is None or signer is None:
            return out
        groups = tuple((r, signer.sign(d) or d, note) for r, d, note in out.groups)
        return attrs.evolve(out, groups=groups)
