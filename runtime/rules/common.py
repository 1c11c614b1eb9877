"""What every rule module shares: the result type, argument access, comparisons, parts cache."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

from attrs import frozen

from filterlang.ast import ListLit, Number, RuleTest, Size, String
from runtime import mimewalk, rx
from runtime.context import MessageContext


@frozen
class RuleResult:
    """The value of one rule plus why: shown in the trace next to the rule."""

    value: bool
    note: str = ""
    matched: tuple[str, ...] = ()


RuleFn = Callable[[MessageContext, RuleTest], RuleResult]

_NUM_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class RuleError(Exception):
    """A rule could not be evaluated for this message (reference 4.7 marks the filter)."""


def arg(test: RuleTest, i: int, default: Any = None) -> Any:
    args = test.args or ()
    if i >= len(args):
        return default
    a = args[i]
    if isinstance(a, String | Number | Size):
        return a.value
    if isinstance(a, ListLit):
        return [s.value for s in a.items]
    return default


def operand(test: RuleTest) -> Any:
    return None if test.operand is None else test.operand.value


def compare_num(test: RuleTest, value: float | int | None, what: str) -> RuleResult:
    if value is None:
        return RuleResult(False, f"{what}: no value")
    if test.comparator is None:
        return RuleResult(bool(value), f"{what} = {value}")
    ok = _NUM_OPS[test.comparator](value, operand(test))
    return RuleResult(ok, f"{what} = {value} {test.comparator} {operand(test)}")


def compare_regex(test: RuleTest, values: Iterable[str], what: str, *,
                  ignore_case: bool = False, missing_ne: bool = True) -> RuleResult:
    """``==``: some value matches; ``!=``: some value does not match (reference 3.5)."""
    vals = list(values)
    pattern = str(operand(test))
    if not vals:
        # a missing header: == is false, != is true (reference 6.4)
        ok = test.comparator == "!=" and missing_ne
        return RuleResult(ok, f"{what}: absent")
    hits = [v for v in vals if rx.search(pattern, v, ignore_case=ignore_case)]
    if test.comparator == "!=":
        misses = [v for v in vals if v not in hits]
        return RuleResult(bool(misses), f"{what} {'does not match' if misses else 'matches'} {pattern!r}",
                          tuple(misses[:1]))
    return RuleResult(bool(hits), f"{what} {'matches' if hits else 'does not match'} {pattern!r}",
                      tuple(hits[:1]))


def compare_name(test: RuleTest, value: str, what: str) -> RuleResult:
    want = str(operand(test))
    ok = (value == want) if test.comparator != "!=" else (value != want)
    return RuleResult(ok, f"{what} is {value!r}")


def parts(ctx: MessageContext) -> list[mimewalk.Part]:
    if ctx._parts_cache is None:
        msg = ctx.message
        ctx._parts_cache = mimewalk.walk(msg, ctx.defects, ctx.elided)
    result: list[mimewalk.Part] = ctx._parts_cache
    return result
