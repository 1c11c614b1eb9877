"""The scanning verdicts (issue 16 item 5): anti-spam (Rspamd) and anti-virus (clamd).

The scanners run per policy splinter after the message filters (reference 11, steps 11-12), so
only content filters see their answers; in message filters, and where the splinter's policy
does not scan or a filter skipped the scan, the rules are unavailable (false, said in the
trace).
"""

from __future__ import annotations

from filterlang.compile import CRule
from runtime.engine.context import MessageContext
from runtime.engine.rules.common import RuleResult, compare_name, compare_num
from runtime.engine.services import need


def spam_verdict(ctx: MessageContext, t: CRule) -> RuleResult:
    found = need(ctx.services, "spam").spam()  # type: ignore[attr-defined]
    return compare_name(t, str(found.verdict).lower(), "spam verdict")


def spam_score(ctx: MessageContext, t: CRule) -> RuleResult:
    found = need(ctx.services, "spam").spam()  # type: ignore[attr-defined]
    return compare_num(t, float(found.score), "spam score")


def virus_verdict(ctx: MessageContext, t: CRule) -> RuleResult:
    found = need(ctx.services, "virus").virus()  # type: ignore[attr-defined]
    return compare_name(t, str(found.verdict).lower(), "virus verdict"
                        + (f" ({found.name})" if found.name else ""))
