"""Header rules (reference 6.4)."""

from __future__ import annotations

import re
from typing import Any

from filterlang.compile import CRule
from runtime.engine.addresses import address_list
from runtime.engine.context import MessageContext
from runtime.engine.rules.common import RuleResult, arg, compare_regex

_FIELD_NAME = re.compile(rb"^[!-9;-~]+$")


def subject(ctx: MessageContext, t: CRule) -> RuleResult:
    # a missing Subject tests as the empty string (reference 6.4)
    values = ctx.header_values("Subject") or [""]
    return compare_regex(t, values, "subject")


def header(ctx: MessageContext, t: CRule) -> RuleResult:
    name = str(arg(t, 0, ""))
    values = ctx.header_values(name)
    if t.comparator is None:
        return RuleResult(bool(values), f"{name} {'present' if values else 'absent'}")
    return compare_regex(t, values, f"header {name}")


def addr_count(ctx: MessageContext, t: CRule) -> RuleResult:
    from runtime.engine.rules.common import compare_num

    names = [str(a) for a in t.args if a]
    values = [v for n in names for v in ctx.header_values(n)]
    count = len([a for _, a in address_list(values) if a])
    return compare_num(t, count, "addr-count")


def header_repeats(ctx: MessageContext, t: CRule) -> RuleResult:
    from runtime.engine.rules.common import compare_num
    from runtime.engine.services import need

    counters: Any = need(ctx.services, "counters")
    target = str(arg(t, 0, "subject")).lower()
    threshold = int(arg(t, 1, 1))
    direction = arg(t, 2)
    if direction and direction != ctx.connection.direction:
        return RuleResult(False, f"direction {ctx.connection.direction} not counted")
    value = (ctx.header_values("Subject") or [""])[0] if target == "subject" else ctx.envelope.mail_from
    if not value:
        return RuleResult(False, "empty value is not counted")
    key = f"{target}\0{value}"
    counters[key] = counters.get(key, 0) + 1
    del compare_num
    seen = counters[key]
    return RuleResult(seen >= threshold, f"{target} seen {seen} times (threshold {threshold})")


def malformed_header(ctx: MessageContext, t: CRule) -> RuleResult:
    head = ctx.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if not line or line[:1] in (b" ", b"\t"):
            continue
        field_name, colon, _ = line.partition(b":")
        if not colon or not _FIELD_NAME.match(field_name):
            return RuleResult(True, f"malformed header line {line[:40]!r}")
    for name, value in ctx.headers.items():
        defects = getattr(value, "defects", None)
        if defects:
            return RuleResult(True, f"{name}: {defects[0]}")
    return RuleResult(False, "headers well formed")


def duplicate_boundaries(ctx: MessageContext, t: CRule) -> RuleResult:
    seen: set[str] = set()
    for part in ctx.message.walk():
        if part.is_multipart():
            b = part.get_boundary()
            if b in seen:
                return RuleResult(True, f"boundary {b!r} reused")
            if b:
                seen.add(b)
    return RuleResult(False, "no boundary reused")
