"""Step 7, inbound S/MIME: decrypt with the organisation's keys, verify against the trust
store, harvest signer certificates, publish the outcome to the filters (reference 12.5-12.7).

Nothing is blocked here: every S/MIME message goes on whatever the result, and filters act on
`smime-gateway-message` / `smime-gateway-verified` / `smime-gateway-unauthenticated`. The one
exception is a decryption failure when the config says `on_decrypt_failure = "quarantine"`.
Failures are reported with one uniform text (no oracle) in the trace, a metric event and the
message's status header.
"""

from __future__ import annotations

import logging

from asn1crypto import x509 as ax509
from attrs import define

from runtime.engine.addresses import first_address
from runtime.engine.context import SmimeState
from runtime.pipeline.flow import DELIVER, InFlight
from runtime.pipeline.stages import StageContext
from runtime.pipeline.stages.flow import STATUS_HEADER, add_header
from runtime.pipeline.stages.smime_ops import DECRYPT_FAILED, UnwrapResult, is_smime, unwrap
from smime.harvest import HarvestPolicy, SignedMessageReport, harvest
from smime.keystore.lookup import certificates_for
from smime.policy import VerifyPolicy

log = logging.getLogger("filterlang.smime")


def _header(data: bytes, name: str) -> str:
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else min(len(data), 65536)].decode("utf-8", "replace")
    value = None
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and value is not None:
            value += " " + line.strip()
        elif value is not None:
            break
        elif line.lower().startswith(name.lower() + ":"):
            value = line.split(":", 1)[1].strip()
    return value or ""


def _status(res: UnwrapResult) -> str:
    parts = []
    if res.decrypt_failed:
        parts.append("decryption=failed")
    elif res.encrypted:
        parts.append("decrypted")
        if res.unauthenticated:
            parts.append("unauthenticated")
    if res.signed:
        parts.append("verified" if res.verified else "verification=failed")
    signers = sorted({e for s in res.signers for e in s.email})
    if signers:
        parts.append("signers=" + ",".join(signers))
    return "; ".join(parts)


@define
class SmimeInbound:
    ctx: StageContext
    name: str = "smime_inbound"

    def _ours(self, msg: InFlight) -> bool:
        domains = self.ctx.config.local_domains
        return not domains or any(r.rpartition("@")[2].lower() in domains
                                  for r in msg.recipients(DELIVER))

    def process(self, msg: InFlight) -> None:
        policy = self.ctx.config.policies.get(msg.envelope.policy)
        if policy is None or not policy.smime_decrypt_verify:
            if msg.recording:  # (every message of a policy without S/MIME passes here)
                msg.record(self.name, "inbound S/MIME: off", applied=False, why=f"mail flow "
                           f"policy {msg.envelope.policy!r} has smime_decrypt_verify off")
            return
        if not self._ours(msg):
            msg.record(self.name, "inbound S/MIME: not for us", applied=False,
                       why="no recipient is in local_domains")
            return
        if is_smime(msg.data) == (False, False):
            msg.record(self.name, "inbound S/MIME: not an S/MIME message", applied=False,
                       why="the top-level Content-Type is neither signed nor encrypted")
            return
        cfg = self.ctx.config.smime
        res = unwrap(msg.data, keys=self.ctx.decrypt_keys, trust=self.ctx.trust,
                     policy=VerifyPolicy(require_signed_attributes=cfg.require_signed_attributes,
                                         domain_certificates=cfg.accept_domain_certificates,
                                         legacy=cfg.legacy,
                                         at_signing_time=cfg.at_signing_time),
                     signer_lookup=self._signer_certificates, allow_3des=cfg.decrypt_3des)
        signers = tuple(sorted({e for s in res.signers for e in s.email}))
        issuers = tuple(dict.fromkeys(s.issuer for s in res.signers))
        msg.smime = SmimeState(processed=True, verified=res.verified, signers=signers, issuers=issuers,
                               unauthenticated=res.unauthenticated)
        msg.trace.append(f"smime-inbound: {_status(res) or 'nothing to do'}"
                         + (f" (cipher {res.cipher})" if res.cipher else ""))
        if res.binding:
            # How the signer's certificate named the sender: its own address, or (a partner
            # gateway's organisation certificate) the sender's domain.
            msg.trace.append(f"smime-inbound: binding: {res.binding}")
        if res.encrypted:
            msg.headers_only_dsn = True  # never return decrypted content in a bounce
        if res.decrypt_failed:
            msg.events.append(("smime", "decrypt_failed"))
            log.info("queue %s: %s", msg.envelope.queue_id, DECRYPT_FAILED)
            if cfg.on_decrypt_failure == "quarantine" and cfg.decrypt_failure_quarantine:
                msg.quarantine = cfg.decrypt_failure_quarantine
                msg.trace.append(f"quarantine({cfg.decrypt_failure_quarantine}): {DECRYPT_FAILED}")
        else:
            if res.encrypted:
                msg.events.append(("smime", "decrypted"))
            if res.unauthenticated:
                msg.events.append(("smime", "unauthenticated"))
            if res.signed:
                msg.events.append(("smime", "verified" if res.verified else "verify_failed"))
        for err in res.errors:
            if err != DECRYPT_FAILED:
                msg.trace.append(f"smime-inbound: {err}")
        # Signature retained or removed (reference 12.5): removal only after a successful
        # verification; for triple-wrapped mail `signed_message` is the inner signature.
        if res.decrypt_failed:
            body = msg.data if not res.layers else res.content
        elif res.signed and (policy.smime_signature == "retain" or not res.verified):
            body = res.signed_message or res.content
        else:
            body = res.content
        msg.data = add_header(body, STATUS_HEADER, _status(res) or "not processed")
        if msg.recording:
            msg.record(self.name, f"inbound S/MIME: {_status(res) or 'nothing to do'}",
                       applied=True, layers=list(res.layers),
                       decrypted=res.encrypted and not res.decrypt_failed,
                       decrypt_failed=res.decrypt_failed, signed=res.signed, verified=res.verified,
                       signers=list(signers), issuers=list(issuers), cipher=res.cipher,
                       binding=res.binding,
                       reasons=list(res.errors), quarantine=msg.quarantine,
                       signature="removed" if body is res.content and res.signed else
                       ("retained" if res.signed else None), data=msg.data)
        if policy.harvest and res.signers:
            self._harvest(msg, res, policy.harvest_on_failed_verification, policy.harvest_updated_keys)

    def _signer_certificates(self, sender: str | None) -> list[ax509.Certificate]:
        """The key store's certificates for the From address, asked only when a message
        leaves its signer's certificate out (RFC 5652 5.1; gpgsm does). The verifier still
        checks signature, path and binding. A store that does not answer gives none: the
        signature then fails as no-signer-certificate, as it would without a store."""
        try:
            found = certificates_for(self.ctx.store, sender)
        except Exception as exc:  # noqa: BLE001 - any store failure: nothing found
            log.warning("signer certificate lookup for %s failed: %s", sender, exc)
            return []
        self.ctx.store_up()
        return found

    def _harvest(self, msg: InFlight, res: UnwrapResult, on_failed: bool, updated: bool) -> None:
        sender = first_address(_header(msg.data, "From")) or msg.envelope.mail_from
        hp = HarvestPolicy(harvest=True, harvest_failed_verification=on_failed,
                           harvest_updated_keys=updated, domain_certificates=(
                               self.ctx.config.smime.accept_domain_certificates))
        for s in res.signers:
            report = SignedMessageReport(s.pem, res.verified, s.capabilities,
                                         _header(msg.data, "Message-ID") or None, sender)
            try:
                outcome = harvest(self.ctx.store, report, hp)
            except Exception as exc:  # the key store is down: the message still goes on
                log.error("harvest failed for queue %s: %s", msg.envelope.queue_id, exc)
                msg.events.append(("harvest", "error"))
                continue
            msg.events.append(("harvest", outcome.action))
            msg.trace.append(f"harvest: {outcome.action} ({outcome.reason})")
            msg.record(self.name, f"harvest: {outcome.action}", signer=list(s.email),
                       action=outcome.action, reason=outcome.reason, alerts=list(outcome.alerts))
            for text in outcome.alerts:
                self.ctx.alert("keystore", text)
