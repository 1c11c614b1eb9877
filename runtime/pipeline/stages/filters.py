"""Steps 8, 10 and 15: message filters over the whole message, mail-policy splintering, and
each splinter's content filters (reference 4, 9, 10).

The filters were compiled once per worker (`runtime.pipeline.stages.load_context`); here each message
gets a `MessageContext` built from its envelope and the connection facts recorded at receipt,
the engine returns an `ActionPlan`, and `Outcome` turns that plan into what the work queue
understands: recipient dispositions, copies, a quarantine, an alt-mailhost, a sending profile.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

import attrs
from attrs import define, field

from filterlang.compile import CFilter
from runtime.engine.context import Connection, MessageContext, Recipient
from runtime.engine.context import Envelope as CtxEnvelope
from runtime.engine.plan import ActionPlan, PlannedAction
from runtime.engine.run import OnError, StageResult, run_filters
from runtime.engine.services import Services, TemporaryFailure
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
from runtime.pipeline.stages.scanning import view
from runtime.pipeline.stages.smime_out import (
    ProfileOutcome,
    apply_encryption,
    apply_outcome,
    apply_profile,
    then_encrypt,
)


def encrypt_request(action: PlannedAction | None) -> EncryptRequest | None:
    """The (profile, subject, rule) an executed encrypt / encrypt-deferred recorded."""
    if action is None or not action.args:
        return None
    args = list(action.args) + [None, None]
    rule = args[2]
    return EncryptRequest(str(args[0]), "" if args[1] is None else str(args[1]),
                          1 if str(rule) == "1" else 0)


def _params(options: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for o in options:
        k, _, v = o.partition("=")
        out.append((k.upper(), v))
    return tuple(out)


# Most mail comes from a few peers: parsing the same address text for every message cost more
# than the group look-up itself.
_address = functools.lru_cache(maxsize=1024)(ipaddress.ip_address)


def sender_group(ctx: StageContext, ip: str) -> str:
    try:
        addr = _address(ip)
    except ValueError:
        return ""
    for g in ctx.config.sender_groups:
        if any(addr in net for net in g.networks):
            return g.name
    return ""


def build_context(ctx: StageContext, msg: InFlight, data: bytes, rcpts: Sequence[str], *,
                  services: Services | None = None) -> MessageContext:
    """`services`: the splinter's own (its scan verdicts), else the message's."""
    env = msg.envelope
    opts = dict(zip(env.rcpt_tos, env.rcpt_options, strict=False))
    envelope = CtxEnvelope(env.mail_from, tuple(Recipient(r, _params(opts.get(r, ()))) for r in rcpts),
                           _params(env.mail_options))
    conn = Connection(remote_ip=env.peer or "127.0.0.1", remote_host=env.helo, listener=env.listener,
                      sender_group=sender_group(ctx, env.peer), flow_policy=env.policy,
                      auth_user=env.auth_user, interface=env.interface,
                      direction=msg.direction, tls_client_subject=env.tls_client_subject,
                      gateway_hostname=ctx.config.hostname)
    return MessageContext(data, envelope, conn, msg.smime, mid=env.queue_id or 1,
                          resources=ctx.resources,
                          services=services if services is not None
                          else msg.services if msg.services is not None else ctx.services)


@define
class Outcome:
    """What one filter stage decided for a set of recipients."""

    data: bytes
    disposition: str = DELIVER  # DELIVER, DROP or BOUNCE
    reason: str = ""
    quarantine: str = ""
    deferred_profile: str = ""
    final_profile: str = ""  # smime-gateway(p): protect now, skip the rest
    final_encrypt: EncryptRequest | None = None  # encrypt(p, ...): encrypt now, skip the rest
    deferred_encrypt: EncryptRequest | None = None  # encrypt-deferred(p, ...): at step 19
    alt_mailhost: str = ""
    alt_rcpt: str = ""
    copies: list[Copy] = field(factory=list)
    trace: list[str] = field(factory=list)
    events: list[tuple[str, str]] = field(factory=list)
    result: StageResult | None = None  # the engine's own trace, for the stage record
    skip_dkim_signing: bool = False
    flags: frozenset[str] = frozenset()  # the plan's flag actions (skip-spamcheck ...)


def run_stage(filters: list[CFilter], mctx: MessageContext, *, content: bool, label: str,
              on_error: OnError = "bypass", explain: bool = False) -> Outcome:
    """`explain`: keep every rule's note for `filterlang test` (the gateway reports which
    filters matched and what they did, never the rule notes: they cost time per message)."""
    original = mctx.raw
    res: StageResult = run_filters(filters, mctx, content=content, trace=explain, on_error=on_error)
    if res.tempfail:
        raise RetryLater(f"{label} error: {res.error}", result=res,  # on_filter_error = "tempfail"
                         stage="content_filters" if content else "message_filters")
    out = Outcome(original, result=res)
    for tr in res.filters:
        if tr.matched:
            out.events.append(("filter_hit", tr.name))
            out.trace.append(f"{label} {tr.name}: matched"
                             + (f" -> {', '.join(a.render() for a in tr.actions)}" if tr.actions else ""))
    if res.error is not None:  # reference 4.7, bypass: actions so far are discarded
        out.trace.append(f"{label} error, remaining filters bypassed: {res.error}")
        return out
    plan: ActionPlan = res.plan
    out.data = mctx.as_bytes()
    out.trace += plan.log + [f"{label} error: {e}" for e in plan.errors]
    out.alt_mailhost = plan.slot("alt-mailhost") or ""
    out.alt_rcpt = plan.slot("alt-rcpt-to") or ""
    out.deferred_profile = plan.slot("smime-gateway-deferred") or ""
    out.quarantine = plan.slot("quarantine") or ""
    out.skip_dkim_signing = "skip-dkim-signing" in plan.flags
    out.flags = frozenset(plan.flags)
    rcpts = mctx.envelope.rcpt_addresses
    for c in plan.copies:
        targets = tuple(t.strip() for t in c.target.split(",") if t.strip())
        if c.kind in ("bcc", "bcc-scan"):
            out.copies.append(Copy(targets, c.data, note=f"{c.kind} copy", mail_from=c.return_path))
        elif c.kind == "notify":
            out.copies.append(Copy(targets, c.data, note="notification", mail_from=c.return_path))
        elif c.kind == "duplicate-quarantine":
            out.copies.append(Copy(rcpts, c.data, note="duplicate", quarantine=c.target))
    final = plan.final
    if final is not None:
        if final.name in ("drop", "bounce"):
            out.disposition = DROP if final.name == "drop" else BOUNCE
            out.quarantine = ""
        elif final.name == "smime-gateway":
            out.final_profile = final.args[0] if final.args else ""
        elif final.name == "encrypt":
            out.final_encrypt = encrypt_request(final)
    if out.disposition == DELIVER and out.final_encrypt is None:
        # (encrypt(p) replaces a pending encrypt-deferred: the message is encrypted once.)
        out.deferred_encrypt = encrypt_request(plan.slots.get("encrypt-deferred"))
    return out


def final_protection(ctx: StageContext, data: bytes, rcpts: tuple[str, ...], out: Outcome,
                     deferred_encrypt: EncryptRequest | None) -> ProfileOutcome:
    """smime-gateway(p) or encrypt(p) now; with smime-gateway, a pending encrypt-deferred
    still applies after it (reference 4.4: accumulated deferred operations take effect)."""
    if out.final_encrypt is not None:
        return apply_encryption(ctx, data, rcpts, out.final_encrypt)
    result = apply_profile(ctx, data, rcpts, out.final_profile)
    return result if deferred_encrypt is None else then_encrypt(ctx, result, deferred_encrypt)


def _record(msg: InFlight, stage: str, title: str, mctx: MessageContext, out: Outcome,
            rcpts: tuple[str, ...], policy: str = "") -> None:
    """The stage record `filterlang test` shows: the filters with their rules and actions,
    and what the stage decided for `rcpts`."""
    if not msg.recording:
        return
    res = out.result
    plan = res.plan if res is not None else ActionPlan()
    final = plan.final.render() if plan.final is not None else None
    msg.record(stage, title, result=res, recipients=rcpts, policy=policy, final=final,
               disposition=out.disposition, reason=out.reason, quarantine=out.quarantine,
               deferred_profile=out.deferred_profile, final_profile=out.final_profile,
               final_encrypt=out.final_encrypt.profile if out.final_encrypt else "",
               deferred_encrypt=out.deferred_encrypt.profile if out.deferred_encrypt else "",
               alt_mailhost=out.alt_mailhost, alt_rcpt=out.alt_rcpt,
               copies=[{"rcpts": list(c.rcpts), "note": c.note, "quarantine": c.quarantine}
                       for c in out.copies],
               header_changes=list(plan.header_changes), log=list(plan.log),
               errors=list(plan.errors), error=res.error if res is not None else None,
               defects=list(mctx.defects), data=out.data)


def _merge(msg: InFlight, out: Outcome, rcpts: tuple[str, ...]) -> bool:
    """Record a stage outcome's trace, events and copies on `msg`; give `rcpts` the outcome's
    disposition when it is not DELIVER. True when they are still to be delivered."""
    msg.trace += out.trace
    msg.events += out.events
    msg.copies += out.copies
    if out.skip_dkim_signing:
        msg.skip_dkim_signing = True
    msg.flags |= out.flags
    if out.disposition == DELIVER:
        return True
    for r in rcpts:
        msg.dispositions[r] = out.disposition
        if out.reason:
            msg.bounce_reasons[r] = out.reason
    return False


def apply_in_place(ctx: StageContext, msg: InFlight, out: Outcome, rcpts: tuple[str, ...]) -> None:
    """The outcome of a stage that saw every deliverable recipient at once."""
    if not _merge(msg, out, rcpts):
        return
    msg.data = out.data
    if out.alt_rcpt:
        # alt-rcpt-to: every recipient of the message is replaced by this one address.
        for r in rcpts:
            del msg.dispositions[r]
        msg.dispositions[out.alt_rcpt] = DELIVER
        keep = [r for r in msg.envelope.rcpt_tos if r not in rcpts]
        msg.envelope = attrs.evolve(msg.envelope, rcpt_tos=(*keep, out.alt_rcpt), rcpt_options=())
        rcpts = (out.alt_rcpt,)
    if out.alt_mailhost:
        msg.alt_mailhost = out.alt_mailhost
    if out.deferred_profile:
        msg.deferred_profile = out.deferred_profile
    if out.deferred_encrypt is not None:
        msg.deferred_encrypt = out.deferred_encrypt
    if out.quarantine:
        msg.quarantine = out.quarantine
    if out.final_profile or out.final_encrypt is not None:
        result = final_protection(ctx, msg.data, rcpts, out, msg.deferred_encrypt)
        apply_outcome(msg, rcpts, result, alt_mailhost=msg.alt_mailhost)
        msg.final = True


@define
class MessageFilters:
    ctx: StageContext
    name: str = "message_filters"

    def process(self, msg: InFlight) -> None:
        if not self.ctx.message_filters:
            return
        rcpts = msg.recipients(DELIVER)
        mctx = build_context(self.ctx, msg, msg.data, rcpts)
        out = run_stage(self.ctx.message_filters, mctx, content=False, label="message filter",
                        on_error=self.ctx.config.on_filter_error, explain=msg.recording)
        _record(msg, self.name, "message filters", mctx, out, rcpts)
        apply_in_place(self.ctx, msg, out, rcpts)


@define
class MailPolicies:
    ctx: StageContext
    name: str = "mail_policies"

    def process(self, msg: InFlight) -> None:
        table = self.ctx.tables[msg.direction]
        services = msg.services if msg.services is not None else self.ctx.services
        directory = getattr(services, "ldap", None)
        check = getattr(directory, "policy_check", None)  # `NAME.ldapgroup: GROUP` entries
        try:
            groups = table.splinter(msg.envelope.mail_from, msg.recipients(DELIVER), check)
        except TemporaryFailure as exc:
            # The directory did not answer: which policy a recipient belongs to is not known
            # yet, so the message waits (never "not in the group").
            raise RetryLater(f"mail policies: {exc}", stage=self.name) from None
        msg.splinters = [(name, tuple(rcpts)) for name, rcpts in groups.items()]
        if msg.recording:  # (the arguments alone cost time per message in the gateway)
            msg.record(self.name, f"mail policies ({msg.direction})", direction=msg.direction,
                       splinters={name: list(rcpts) for name, rcpts in msg.splinters})
        if len(msg.splinters) > 1:
            msg.trace.append("splinters: " + "; ".join(f"{n}: {', '.join(r)}" for n, r in msg.splinters))


@define
class ContentFilters:
    ctx: StageContext
    name: str = "content_filters"

    def _filters(self, msg: InFlight, policy: str) -> list[CFilter]:
        found = self.ctx.content_filters.get(f"{msg.direction}:{policy}", [])
        return [f for f in found if f.content is not None and f.content.direction == msg.direction]

    def process(self, msg: InFlight) -> None:
        work = [(p, r, self._filters(msg, p)) for p, r in msg.splinters]
        if not any(fs for _, _, fs in work) and msg.scans is None:
            return
        if len(work) == 1:
            policy, rcpts, filters = work[0]
            mctx = build_context(self.ctx, msg, msg.data, rcpts)
            out = run_stage(filters, mctx, content=True, label=f"content filter ({policy})",
                            on_error=self.ctx.config.on_filter_error, explain=msg.recording)
            _record(msg, self.name, f"content filters, policy {policy}", mctx, out, rcpts, policy)
            apply_in_place(self.ctx, msg, out, rcpts)
            return
        # Several splinters: each leaves as its own copy with its own content-filter result.
        base = msg.data
        for policy, rcpts, filters in work:
            # The splinter's scan verdicts, Subject tag and quarantine (its policy's scans).
            scanned = view(msg, policy, base, None)
            if filters:
                mctx = build_context(self.ctx, msg, scanned.data, rcpts, services=scanned.services)
                out = run_stage(filters, mctx, content=True, label=f"content filter ({policy})",
                                on_error=self.ctx.config.on_filter_error, explain=msg.recording)
                _record(msg, self.name, f"content filters, policy {policy}", mctx, out, rcpts,
                        policy)
            else:
                out = Outcome(scanned.data)
            if not _merge(msg, out, rcpts):
                continue
            encrypt = out.deferred_encrypt or msg.deferred_encrypt
            if out.final_profile or out.final_encrypt is not None:
                result = final_protection(self.ctx, out.data, rcpts, out, encrypt)
                apply_outcome(msg, rcpts, result, alt_mailhost=out.alt_mailhost or msg.alt_mailhost,
                              in_place=False)
                continue
            profile = out.deferred_profile or msg.deferred_profile
            target = (out.alt_rcpt,) if out.alt_rcpt else rcpts
            msg.copies.append(Copy(target, out.data, alt_mailhost=out.alt_mailhost or msg.alt_mailhost,
                                   note=f"splinter {policy}", profile=profile, encrypt=encrypt,
                                   quarantine=out.quarantine or scanned.quarantine
                                   or (msg.quarantine or "")))
            for r in rcpts:
                msg.dispositions[r] = COPIED
        msg.quarantine = None  # carried by each splinter's copy now
