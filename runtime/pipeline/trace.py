"""Offline run of one message through message filters, splintering and content filters,
and the trace that explains it (issue 3 item 8): text for people, JSON for tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from attrs import define, evolve, field

from filterlang.compile import CFilter
from runtime.engine.context import Connection, Envelope, MessageContext, SmimeState
from runtime.engine.resources import Resources
from runtime.engine.run import FilterTrace, OnError, StageResult, run_filters
from runtime.engine.services import Services
from runtime.pipeline.policies import Policies


@define
class SplinterTrace:
    policy: str
    recipients: list[str]
    stage: StageResult | None  # None when content filters did not run
    disposition: str


@define
class MessageTrace:
    message: str
    message_filters: StageResult
    splinters: list[SplinterTrace] = field(factory=list)
    recipients: dict[str, str] = field(factory=dict)
    header_changes: list[str] = field(factory=list)
    defects: list[str] = field(factory=list)
    log: list[str] = field(factory=list)
    result: bytes = b""
    results: dict[str, bytes] = field(factory=dict)  # policy -> message bytes per splinter

    @property
    def final(self) -> str | None:
        f = self.message_filters.plan.final
        return f.render() if f is not None else None

    def matched(self) -> list[str]:
        out = [t.name for t in self.message_filters.filters if t.matched]
        for s in self.splinters:
            if s.stage is not None:
                out += [t.name for t in s.stage.filters if t.matched and t.name not in out]
        return out

    def headers_after(self, policy: str | None = None) -> bytes:
        return self.results.get(policy, self.result) if policy else self.result


def _disposition(mf: StageResult, cf: StageResult | None) -> str:
    """Per recipient: message-filter finals first (4.4), then the splinter's content filters."""
    mplan = mf.plan
    if mplan.final is not None and mplan.final.name in ("drop", "bounce", "encrypt", "smime-gateway"):
        return mplan.disposition()
    if cf is not None:
        cplan = cf.plan
        if cplan.final is not None and cplan.final.name in ("drop", "bounce", "encrypt", "smime-gateway"):
            return cplan.disposition()
        q = cplan.slot("quarantine") or mplan.slot("quarantine")
        if q:
            return f"quarantine({q})"
    elif mplan.slot("quarantine"):
        return f"quarantine({mplan.slot('quarantine')})"
    deferred = (cf.plan.slot("smime-gateway-deferred") if cf else None) or mplan.slot("smime-gateway-deferred")
    if deferred:
        return f"smime-gateway-deferred({deferred})"
    enc = (cf.plan.slot("encrypt-deferred") if cf else None) or mplan.slot("encrypt-deferred")
    if enc:
        return f"encrypt-deferred({enc})"
    return "deliver"


def simulate(raw: bytes, envelope: Envelope, *, filters: Sequence[CFilter],
             connection: Connection | None = None, smime: SmimeState | None = None,
             policies: Policies | None = None, resources: Resources | None = None,
             services: Services | None = None, name: str = "<message>", mid: int = 1,
             on_error: OnError = "bypass") -> MessageTrace:
    """Run the message-filter stage, splinter by policy, run each splinter's content filters."""
    policies = policies or Policies()
    connection = connection or Connection()
    smime = smime or SmimeState()
    message_filters = [f for f in filters if f.content is None]
    content_filters = [f for f in filters if f.content is not None]
    ctx = MessageContext(raw, envelope, connection, smime, mid=mid, services=services,
                         resources=resources)
    mf = run_filters(message_filters, ctx, on_error=on_error)
    if mf.tempfail:  # on_filter_error = tempfail: the message is requeued, nothing else happens
        trace = MessageTrace(name, mf, defects=ctx.defects)
        trace.recipients = dict.fromkeys(envelope.rcpt_addresses, "tempfail")
        trace.result = raw
        return trace
    if mf.error is not None:
        ctx = MessageContext(raw, envelope, connection, smime, mid=mid, services=services,
                             resources=resources)  # 4.7 bypass: accumulated edits discarded
    trace = MessageTrace(name, mf, defects=ctx.defects, log=list(mf.plan.log))
    trace.header_changes = list(mf.plan.header_changes)
    after_mf = ctx.as_bytes()
    trace.result = after_mf
    rcpts = list(envelope.rcpt_addresses)
    alt = mf.plan.slot("alt-rcpt-to")
    if alt:
        rcpts = [alt]
    if mf.plan.final is not None and mf.plan.final.name != "skip-filters" and mf.plan.final.name != "deliver":
        # drop / bounce / encrypt / smime-gateway skip the rest of the pipeline (4.4)
        disp = _disposition(mf, None)
        trace.splinters.append(SplinterTrace("(message filters)", rcpts, None, disp))
        trace.recipients = dict.fromkeys(rcpts, disp)
        return trace
    table = policies.table(connection.direction)
    for policy_name, group in table.splinter(envelope.mail_from, rcpts).items():
        policy = table.get(policy_name)
        # a policy without its own choice inherits the default policy's (reference 9.1)
        enabled = policy.content_filters
        if enabled is None:
            enabled = table.default.content_filters
        wanted = [f for f in content_filters if f.content and f.content.direction == connection.direction
                  and (enabled is None or f.name in enabled)]
        sctx = MessageContext(after_mf, evolve(envelope, recipients=tuple(
            r for r in _recips(envelope, group))), connection, smime, mid=mid, services=services,
            resources=resources)
        cf = run_filters(wanted, sctx, content=True, on_error=on_error) if wanted else None
        if cf is not None and cf.error is None:
            trace.results[policy_name] = sctx.as_bytes()
            trace.header_changes += cf.plan.header_changes
            trace.log += cf.plan.log
            trace.defects += [d for d in sctx.defects if d not in trace.defects]
        disp = _disposition(mf, cf)
        trace.splinters.append(SplinterTrace(policy_name, group, cf, disp))
        for r in group:
            trace.recipients[r] = disp
    return trace


def _recips(envelope: Envelope, group: list[str]) -> list[Any]:
    from runtime.engine.context import Recipient

    by_addr = {r.address: r for r in envelope.recipients}
    return [by_addr.get(a, Recipient(a)) for a in group]


# --- output --------------------------------------------------------------------------------


def _filter_lines(tr: FilterTrace, indent: str) -> list[str]:
    if tr.skipped:
        return [f"{indent}{tr.name}: skipped ({tr.skipped})"]
    head = "error" if tr.error else ("matched" if tr.matched else "not matched")
    lines = [f"{indent}{tr.name}: {head}"]
    for r in tr.rules:
        lines.append(f"{indent}    {'✓' if r.value else '✗'} {r.rule}  — {r.note}")
    for a in tr.actions:
        lines.append(f"{indent}    → {a.render()}")
    if tr.error:
        lines.append(f"{indent}    ! {tr.error} (remaining filters bypassed, actions discarded)")
    return lines


def to_text(t: MessageTrace) -> str:
    lines = [f"message {t.message}", "  message filters:"]
    lines += [x for f in t.message_filters.filters for x in _filter_lines(f, "    ")] or ["    (none)"]
    lines.append(f"  final: {t.final or '(none)'}")
    for s in t.splinters:
        if s.stage is not None:
            lines.append(f"  content filters, policy {s.policy} ({', '.join(s.recipients)}):")
            lines += [x for f in s.stage.filters for x in _filter_lines(f, "    ")]
    lines.append("  recipients:")
    lines += [f"    {r}: {d}" for r, d in t.recipients.items()] or ["    (none)"]
    if t.header_changes:
        lines.append("  header changes:")
        lines += [f"    {h}" for h in t.header_changes]
    for entry in t.log:
        lines.append(f"  log: {entry}")
    for d in t.defects:
        lines.append(f"  defect: {d}")
    return "\n".join(lines)


def _filter_json(tr: FilterTrace, stage: str) -> dict[str, Any]:
    return {"name": tr.name, "stage": stage, "matched": bool(tr.matched), "skipped": tr.skipped,
            "error": tr.error, "rules": [{"rule": r.rule, "value": r.value, "note": r.note} for r in tr.rules],
            "actions": [a.render() for a in tr.actions]}


def to_json(t: MessageTrace) -> dict[str, Any]:
    filters = [_filter_json(f, "message") for f in t.message_filters.filters]
    for s in t.splinters:
        if s.stage is not None:
            filters += [_filter_json(f, f"content:{s.policy}") for f in s.stage.filters]
    return {"message": t.message, "filters": filters, "final": t.final, "recipients": t.recipients,
            "header_changes": t.header_changes, "log": t.log, "defects": t.defects}


def dumps(t: MessageTrace) -> str:
    return json.dumps(to_json(t), ensure_ascii=False)
