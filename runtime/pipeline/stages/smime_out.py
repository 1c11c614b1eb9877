"""Sending profiles (reference 12.3-12.4): sign, encrypt, sign-encrypt or triple, with the
profile's action when a recipient has no usable key (bounce, drop or split).

Used twice: at once by the final `smime-gateway("p")` in the filter stages, and at step 19 by
`SmimeOutbound` for `smime-gateway-deferred("p")` (of the whole message or of one splinter).
Fail safe: a profile that encrypts never lets a recipient get plain text except through the
split branch the administrator chose; a signing failure bounces. A key-store outage is
temporary: the message waits in the deferred queue (RetryLater), unprocessed, and is tried
again on the retry schedule, with one alert for the outage; it is never bounced for it, nor
sent without the lookup it needs.
"""

from __future__ import annotations

import logging
from typing import Any

from attrs import define, frozen
from cryptography import x509

from runtime.pipeline.flow import BOUNCE, COPIED, DELIVER, DROP, Copy, InFlight, RetryLater
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


def _no_key_reason(profile: str, missing: list[str]) -> str:
    return (f"550 5.7.1 no usable S/MIME encryption key for {', '.join(missing)}; sending "
            f"profile {profile!r} requires encryption")


def apply_profile(ctx: StageContext, data: bytes, rcpts: tuple[str, ...], name: str) -> ProfileOutcome:
    """Protect `data` for `rcpts` as profile `name` says."""
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


def apply_outcome(msg: InFlight, rcpts: tuple[str, ...], out: ProfileOutcome, *,
                  alt_mailhost: str = "", in_place: bool = True, quarantine: str | None = None) -> None:
    """Record a profile's outcome on the message: in place when one group covers every
    deliverable recipient, else as copies."""
    msg.events += [("smime", e) for e in out.events]
    if msg.recording:
        msg.record("smime_outbound", f"sending profile {out.profile}", recipients=rcpts,
                   profile=out.profile, mode=out.mode,
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
        return
    for who, data, note in out.groups:
        # A quarantined message's copies wait in the same quarantine (already protected, so a
        # release never sends what the profile meant to encrypt in clear).
        msg.copies.append(Copy(who, data, alt_mailhost=alt_mailhost, note=note,
                               quarantine=quarantine or msg.quarantine or ""))
        for r in who:
            msg.dispositions[r] = COPIED


@define
class SmimeOutbound:
    """Step 19: deferred S/MIME of the message and of every splinter copy that asked for it."""

    ctx: StageContext
    name: str = "smime_outbound"

    def process(self, msg: InFlight) -> None:
        pending = [c for c in msg.copies if c.profile]
        if pending:
            msg.copies = [c for c in msg.copies if c not in pending]
            for c in pending:
                out = apply_profile(self.ctx, c.data, c.rcpts, c.profile)
                for r in c.rcpts:  # the copy's recipients are re-decided by the profile
                    msg.dispositions[r] = DELIVER
                apply_outcome(msg, c.rcpts, out, alt_mailhost=c.alt_mailhost, in_place=False,
                              quarantine=c.quarantine or None)
        rcpts = msg.recipients(DELIVER)
        if msg.deferred_profile and rcpts:
            out = apply_profile(self.ctx, msg.data, rcpts, msg.deferred_profile)
            apply_outcome(msg, rcpts, out, alt_mailhost=msg.alt_mailhost)
