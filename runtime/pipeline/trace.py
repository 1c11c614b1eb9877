"""The trace of one message: a view of what the pipeline stages recorded as they ran
(`StageRecord`), and of the outcome the queue runner would carry out (`settle`). Text for
people, JSON for tools. Nothing here decides anything: the stages do.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import define, field

from runtime.engine.plan import ActionPlan
from runtime.engine.run import FilterTrace, StageResult
from runtime.pipeline.flow import InFlight, StageRecord
from runtime.pipeline.outcome import Leaving, Outcome


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
    result: bytes = b""  # the message after the message filters
    results: dict[str, bytes] = field(factory=dict)  # policy -> message after its content filters
    records: list[StageRecord] = field(factory=list)  # every stage's record, in order
    leaving: tuple[Leaving, ...] = ()  # what is delivered or parked, as the gateway does it
    bounce_reasons: dict[str, str] = field(factory=dict)
    tempfail: str = ""  # on_filter_error = "tempfail": why the message waits in the queue
    headers_only_dsn: bool = False
    # Filled by the caller that knows the mail server (`filterlang test -c`): where each
    # recipient's message goes, and the S/MIME outline of each message in `leaving`.
    next_hops: dict[str, str] = field(factory=dict)
    structure: list[str] = field(factory=list)

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


def build_trace(name: str, original: bytes, msg: InFlight, outcome: Outcome | None,
                tempfail: str = "") -> MessageTrace:
    """The view of one recorded run (`outcome` None when the message waits: tempfail)."""
    records = list(msg.records or [])
    mf = next((r for r in records if r.stage == "message_filters"), None)
    mresult = (mf.result if mf is not None and mf.result is not None
               else StageResult(ActionPlan(), []))
    t = MessageTrace(name, mresult, records=records, tempfail=tempfail)
    t.result = mf.data if mf is not None and mf.data is not None else _before_filters(records, original)
    splinters: dict[str, list[str]] = {}
    for r in records:
        if r.stage in ("message_filters", "content_filters"):
            t.header_changes += r.facts.get("header_changes", [])
            t.log += r.facts.get("log", [])
            t.defects += [d for d in r.facts.get("defects", []) if d not in t.defects]
        if r.stage == "mail_policies":
            splinters = r.facts.get("splinters", {})
    if outcome is None:
        t.recipients = dict.fromkeys(msg.envelope.rcpt_tos, "tempfail")
        return t
    t.recipients = dict(outcome.recipients)
    t.leaving = outcome.leaving
    t.bounce_reasons = dict(outcome.bounce_reasons)
    t.headers_only_dsn = outcome.headers_only_dsn
    cf = {r.facts.get("policy", ""): r for r in records if r.stage == "content_filters"}
    if not splinters:  # the message filters ended the message before mail policies split it
        disp = ", ".join(dict.fromkeys(t.recipients.values())) or "deliver"
        t.splinters.append(SplinterTrace("(message filters)", list(t.recipients), None, disp))
    for policy, rcpts in splinters.items():
        rec = cf.get(policy)
        if rec is not None and rec.result is not None and rec.result.error is None:
            t.results[policy] = rec.data if rec.data is not None else t.result
        disp = ", ".join(dict.fromkeys(t.recipients.get(x, "?") for x in rcpts))
        t.splinters.append(SplinterTrace(policy, list(rcpts), rec.result if rec else None, disp))
    return t


def _before_filters(records: list[StageRecord], original: bytes) -> bytes:
    """No message filter ran: the message as the stages before them left it."""
    for r in reversed(records):
        if r.data is not None:
            return r.data
    return original


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"({len(value)} bytes)"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not isinstance(v, bytes)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _facts_line(r: StageRecord) -> list[str]:
    skip = {"header_changes", "log", "defects", "errors", "copies", "groups", "keys", "data"}
    shown = [f"{k}={_jsonable(v)}" for k, v in r.facts.items()
             if k not in skip and v not in (None, "", [], {}, False)]
    return [f"    {', '.join(shown)}"] if shown else []


def _stage_lines(r: StageRecord) -> list[str]:
    lines = [f"  {r.title}:"]
    if r.stage == "smime_outbound":
        for k in r.facts.get("keys", []):
            lines.append(f"    key for {k['recipient']}: {k['key'] or '(none)'} — {k['why']}")
        for g in r.facts.get("groups", []):
            lines.append(f"    {g['note']}")
        if r.facts.get("bounced") or r.facts.get("dropped"):
            what = "bounced" if r.facts.get("bounced") else "dropped"
            who: list[str] = r.facts.get("bounced") or r.facts.get("dropped") or []
            lines.append(f"    {what}: {', '.join(who)} {r.facts.get('reason', '')}".rstrip())
        return lines
    return lines + _facts_line(r)


def to_text(t: MessageTrace, *, stages: bool | None = None) -> str:
    """The trace for people. `stages`: also the records of the stages around the filters
    (listener, mail flow policy, inbound S/MIME); by default when a gateway configuration
    ran (the listener's record is there)."""
    if stages is None:
        stages = any(r.stage == "listener" for r in t.records)
    lines = [f"message {t.message}"]
    if stages:
        for r in t.records:
            if r.stage in ("listener", "mail_flow_policy", "smime_inbound"):
                lines += _stage_lines(r)
    lines.append("  message filters:")
    lines += [x for f in t.message_filters.filters for x in _filter_lines(f, "    ")] or ["    (none)"]
    lines.append(f"  final: {t.final or '(none)'}")
    for r in t.records:
        if r.stage in ("anti_spam", "anti_virus"):
            lines += _stage_lines(r)
    for s in t.splinters:
        if s.stage is not None:
            lines.append(f"  content filters, policy {s.policy} ({', '.join(s.recipients)}):")
            lines += [x for f in s.stage.filters for x in _filter_lines(f, "    ")]
    for r in t.records:
        if r.stage == "smime_outbound":
            lines += _stage_lines(r)
    if t.tempfail:
        lines.append(f"  tempfail: {t.tempfail} (the message waits in the queue; its filters run again)")
    lines.append("  recipients:")
    for rcpt, d in t.recipients.items():
        why = f" ({t.bounce_reasons[rcpt]})" if rcpt in t.bounce_reasons and stages else ""
        hop = f" via {t.next_hops[rcpt]}" if rcpt in t.next_hops and d == "deliver" else ""
        lines.append(f"    {rcpt}: {d}{why}{hop}")
    if not t.recipients:
        lines.append("    (none)")
    if stages and t.leaving:
        lines.append("  messages leaving:")
        for i, m in enumerate(t.leaving):
            what = m.note or "the message"
            shape = f" [{t.structure[i]}]" if i < len(t.structure) and t.structure[i] else ""
            lines.append(f"    {what}: {m.disposition} for {', '.join(m.rcpts)}, "
                         f"{len(m.data)} bytes{shape}")
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


def _record_json(r: StageRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": r.stage, "title": r.title}
    out |= _jsonable(r.facts)
    if r.recipients:
        out["recipients"] = list(r.recipients)
    if r.result is not None:
        out["filters"] = [_filter_json(f, r.stage) for f in r.result.filters]
    return out


def to_json(t: MessageTrace) -> dict[str, Any]:
    filters = [_filter_json(f, "message") for f in t.message_filters.filters]
    for s in t.splinters:
        if s.stage is not None:
            filters += [_filter_json(f, f"content:{s.policy}") for f in s.stage.filters]
    leaving = [{"recipients": list(m.rcpts), "disposition": m.disposition, "note": m.note,
                "mail_from": m.mail_from, "size": len(m.data),
                "structure": t.structure[i] if i < len(t.structure) else None}
               for i, m in enumerate(t.leaving)]
    return {"message": t.message, "filters": filters, "final": t.final, "recipients": t.recipients,
            "header_changes": t.header_changes, "log": t.log, "defects": t.defects,
            "stages": [_record_json(r) for r in t.records], "leaving": leaving,
            "bounce_reasons": t.bounce_reasons, "next_hops": t.next_hops,
            "tempfail": t.tempfail or None}


def dumps(t: MessageTrace) -> str:
    return json.dumps(to_json(t), ensure_ascii=False)
