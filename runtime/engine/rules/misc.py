"""Size, time and miscellaneous rules (reference 6.5)."""

from __future__ import annotations

import random as _random
from datetime import datetime

from filterlang.compile import CRule
from runtime.engine.context import MessageContext
from runtime.engine.rules.common import (
    _NUM_OPS,
    RuleError,
    RuleResult,
    arg,
    compare_num,
    operand,
    parts,
)


def body_size(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_num(t, ctx.size, "body-size")


def date(ctx: MessageContext, t: CRule) -> RuleResult:
    when = operand(t)
    if not isinstance(when, datetime):
        raise RuleError(f"date literal {when!r} is not a date")
    now = datetime.now()
    return RuleResult(_NUM_OPS[t.comparator or "=="](now, when), f"now {now:%m/%d/%Y %H:%M:%S}")


def random(ctx: MessageContext, t: CRule) -> RuleResult:
    n = int(arg(t, 0, 1))
    draw = _random.randrange(max(n, 1))
    return compare_num(t, draw, f"random({n}) drew") if t.comparator else RuleResult(draw != 0, f"drew {draw}")


def true(ctx: MessageContext, t: CRule) -> RuleResult:
    return RuleResult(True, "always")


def valid(ctx: MessageContext, t: CRule) -> RuleResult:
    msg = ctx.message
    defects = [d for p in msg.walk() for d in p.defects]
    parts(ctx)
    problems = [str(type(d).__name__) for d in defects] + [d for d in ctx.defects if "MIME" in d]
    return RuleResult(not problems, "MIME parsed cleanly" if not problems else f"defects: {', '.join(problems[:3])}")
