"""What every rule module shares: the result type, argument access, comparisons, parts cache."""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from attrs import frozen

from filterlang.compile import CompiledRegex, CRule
from runtime.engine import mimewalk, rx
from runtime.engine.context import MessageContext


@frozen
class RuleResult:
    """The value of one rule plus why: shown in the trace next to the rule."""

    value: bool
    note: str = ""
    matched: tuple[str, ...] = ()


RuleFn = Callable[[MessageContext, CRule], RuleResult]

_NUM_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class RuleError(Exception):
    """A rule could not be evaluated for this message (reference 4.7 marks the filter)."""


def arg(test: CRule, i: int, default: Any = None) -> Any:
    """The i-th argument as the compiler typed it (CompiledRegex, int, str, tuple ...)."""
    args = test.args
    if i >= len(args) or args[i] is None:
        return default
    return args[i]


def operand(test: CRule) -> Any:
    return test.operand


def show(value: Any) -> str:
    """A typed value as the filter author wrote it (for notes and the trace)."""
    if isinstance(value, CompiledRegex):
        return repr(value.source)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, datetime):
        return repr(value.strftime("%m/%d/%Y %H:%M:%S"))
    if isinstance(value, tuple):
        return repr(", ".join(_net(v) for v in value))
    return str(value)


def _net(v: Any) -> str:
    if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(v.network_address) if v.prefixlen == v.max_prefixlen else v.with_prefixlen
    return str(v)


def compare_num(test: CRule, value: float | int | None, what: str) -> RuleResult:
    if value is None:
        return RuleResult(False, f"{what}: no value")
    if test.comparator is None:
        return RuleResult(bool(value), f"{what} = {value}")
    ok = _NUM_OPS[test.comparator](value, operand(test))
    return RuleResult(ok, f"{what} = {value} {test.comparator} {operand(test)}")


def compare_regex(test: CRule, values: Iterable[str], what: str, *,
                  missing_ne: bool = True, pattern: rx.Pattern | None = None) -> RuleResult:
    """``==``: some value matches; ``!=``: some value does not match (reference 3.5)."""
    vals = list(values)
    pat = pattern if pattern is not None else operand(test)
    src = rx.source(pat)
    if not vals:
        # a missing header: == is false, != is true (reference 6.4)
        ok = test.comparator == "!=" and missing_ne
        return RuleResult(ok, f"{what}: absent")
    hits = [v for v in vals if rx.search(pat, v)]
    if test.comparator == "!=":
        misses = [v for v in vals if v not in hits]
        return RuleResult(bool(misses), f"{what} {'does not match' if misses else 'matches'} {src!r}",
                          tuple(misses[:1]))
    return RuleResult(bool(hits), f"{what} {'matches' if hits else 'does not match'} {src!r}",
                      tuple(hits[:1]))


def compare_name(test: CRule, value: str, what: str) -> RuleResult:
    want = str(operand(test))
    ok = (value == want) if test.comparator != "!=" else (value != want)
    return RuleResult(ok, f"{what} is {value!r}")


def parts(ctx: MessageContext) -> list[mimewalk.Part]:
    if ctx._parts_cache is None:
        msg = ctx.message
        ctx._parts_cache = mimewalk.walk(msg, ctx.defects, ctx.elided)
    result: list[mimewalk.Part] = ctx._parts_cache
    return result
