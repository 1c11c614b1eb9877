"""The evaluation loop of reference 4.2 and the content-filter stage of 9.1.

Conditions short-circuit in the static cost order of reference 3.4 (cheaper operand first,
``header-repeats`` last); every rule evaluated is recorded for the trace. A rule whose service is
missing counts as false and says so. Any other failure marks the filter (reference 4.7): with
``bypass`` the remaining filters of the stage are abandoned and the actions accumulated so far
are discarded; the message itself is never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from attrs import define, field

from filterlang.ast import (
    ActionCall,
    BoolOp,
    Condition,
    Filter,
    Group,
    If,
    ListLit,
    Not,
    RuleTest,
    Statement,
)
from runtime import actions, rules
from runtime.context import MessageContext
from runtime.plan import FINAL, ActionPlan, PlannedAction
from runtime.services import Unavailable

OnError = Literal["bypass", "tempfail"]


@define
class RuleTrace:
    rule: str
    value: bool
    note: str


@define
class FilterTrace:
    name: str
    matched: bool | None = None  # None: not evaluated (inactive, or after a final action)
    rules: list[RuleTrace] = field(factory=list)
    actions: list[PlannedAction] = field(factory=list)
    error: str | None = None
    skipped: str | None = None


@define
class StageResult:
    plan: ActionPlan
    filters: list[FilterTrace]
    error: str | None = None
    tempfail: bool = False


class _Final(Exception):
    pass


def _rule_text(t: RuleTest) -> str:
    def lit(a: object) -> str:
        if isinstance(a, ListLit):
            return "[" + ", ".join(repr(s.value) for s in a.items) + "]"
        raw = getattr(a, "raw", None)
        v = getattr(a, "value", a)
        return repr(v) if isinstance(v, str) else str(raw or v)

    text = t.name
    if t.args is not None:
        text += "(" + ", ".join(lit(a) for a in t.args) + ")"
    if t.comparator:
        text += f" {t.comparator} {lit(t.operand)}"
    return text


def _cost(c: Condition) -> int:
    if isinstance(c, RuleTest):
        return rules.COST.get(rules.canonical(c.name), 4)
    if isinstance(c, Not | Group):
        return _cost(c.operand if isinstance(c, Not) else c.inner)
    return max(_cost(c.left), _cost(c.right))


def _eval(c: Condition, ctx: MessageContext, tr: FilterTrace) -> bool:
    if isinstance(c, Group):
        return _eval(c.inner, ctx, tr)
    if isinstance(c, Not):
        return not _eval(c.operand, ctx, tr)
    if isinstance(c, BoolOp):
        first, second = (c.left, c.right) if _cost(c.left) <= _cost(c.right) else (c.right, c.left)
        v = _eval(first, ctx, tr)
        if (c.op == "and" and not v) or (c.op == "or" and v):
            return v
        return _eval(second, ctx, tr)
    try:
        res = rules.evaluate(ctx, c)
    except Unavailable as exc:
        tr.rules.append(RuleTrace(_rule_text(c), False, f"{exc} — evaluates false"))
        return False
    tr.rules.append(RuleTrace(_rule_text(c), res.value, res.note))
    return res.value


def _args(call: ActionCall) -> list[str | int | float]:
    out: list[str | int | float] = []
    for a in call.args:
        if isinstance(a, ListLit):
            out.append(", ".join(s.value for s in a.items))
        else:
            out.append(a.value)
    return out


def _run_block(stmts: Sequence[Statement], ctx: MessageContext, plan: ActionPlan, tr: FilterTrace) -> None:
    for st in stmts:
        if isinstance(st, If):
            _run_if(st, ctx, plan, tr)
            continue
        action = actions.run(ctx, plan, st.name, _args(st))
        tr.actions.append(action)
        if action.name in FINAL:
            raise _Final


def _run_if(node: If, ctx: MessageContext, plan: ActionPlan, tr: FilterTrace) -> bool:
    value = _eval(node.condition, ctx, tr)
    if tr.matched is None:
        tr.matched = value
    branch = node.then if value else (node.else_ or ())
    _run_block(branch, ctx, plan, tr)
    return value


def run_filters(filters: Sequence[Filter], ctx: MessageContext, *, content: bool = False,
                on_error: OnError = "bypass") -> StageResult:
    """Run one stage (message filters, or one splinter's content filters) on ``ctx``."""
    plan = ActionPlan()
    traces: list[FilterTrace] = []
    final_seen = False
    for f in filters:
        tr = FilterTrace(f.name)
        traces.append(tr)
        if not f.active:
            tr.skipped = "inactive"
            continue
        if final_seen:
            tr.skipped = "after a final action"
            continue
        ctx.current_filter = f.name
        ctx.matched_content = []
        try:
            _run_if(f.body, ctx, plan, tr)
        except _Final:
            final_seen = True
        except Exception as exc:  # reference 4.7: mark the filter, never lose the message
            tr.error = f"{type(exc).__name__}: {exc}"
            return StageResult(ActionPlan(errors=[f"filter {f.name}: {tr.error}"]), traces,
                               error=tr.error, tempfail=on_error == "tempfail")
    if not content or plan.final is None or plan.final.name not in ("drop", "bounce"):
        try:
            actions.finish(ctx, plan)
        except Exception as exc:
            plan.errors.append(f"end-of-stage edit failed: {type(exc).__name__}: {exc}")
    return StageResult(plan, traces)
