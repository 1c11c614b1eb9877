"""The evaluation loop of reference 4.2 and the content-filter stage of 9.1.

Conditions short-circuit in the static cost order of reference 3.4 (cheaper operand first,
``header-repeats`` last); every rule evaluated is recorded for the trace. A rule whose service is
missing counts as false and says so. Any other failure marks the filter (reference 4.7): with
``bypass`` the remaining filters of the stage are abandoned and the actions accumulated so far
are discarded; the message itself is never lost.

Untraced runs (the gateway's stages) evaluate each condition through predicates composed once per
compiled condition (`runtime.engine.rules.values`): the same values and actions, no rule notes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Literal

from attrs import define, field

from filterlang.compile import CBool, CCondition, CFilter, CIf, CNot, CRule, CStatement
from runtime.engine import actions, rules, rx
from runtime.engine.context import MessageContext
from runtime.engine.plan import FINAL, ActionPlan, PlannedAction
from runtime.engine.rules.common import show
from runtime.engine.rules.values import Predicate, predicate
from runtime.engine.services import TemporaryFailure, Unavailable

OnError = Literal["bypass", "tempfail"]


@define
class RuleTrace:
    """One evaluated rule; its text is rendered only when a trace is shown (speed)."""

    test: CRule
    value: bool
    note: str

    @property
    def rule(self) -> str:
        return rule_text(self.test)


@define
class FilterTrace:
    name: str
    matched: bool | None = None  # None: not evaluated (inactive, or after a final action)
    rules: list[RuleTrace] = field(factory=list)
    actions: list[PlannedAction] = field(factory=list)
    error: str | None = None
    skipped: str | None = None
    # The failure was a configured provider that could not answer now (TemporaryFailure):
    # the stage is retried later whatever on_filter_error says.
    temporary: bool = False


@define
class StageResult:
    plan: ActionPlan
    filters: list[FilterTrace]
    error: str | None = None
    tempfail: bool = False


class _Final(Exception):
    pass


def rule_text(t: CRule) -> str:
    """A rule as written (canonical name, typed values shown as literals) for the trace."""
    text = t.sig.name
    if t.args:
        text += "(" + ", ".join(show(a) for a in t.args) + ")"
    if t.comparator:
        text += f" {t.comparator} {show(t.operand)}"
    return text


def _eval(c: CCondition, ctx: MessageContext, tr: FilterTrace) -> bool:
    # `and`/`or` operands arrive in the static cost order of reference 3.4 (the compiler sorts)
    if isinstance(c, CBool):
        want = c.op == "or"
        for operand in c.operands:
            if _eval(operand, ctx, tr) is want:
                return want
        return not want
    if isinstance(c, CNot):
        return not _eval(c.operand, ctx, tr)
    try:
        res = rules.evaluate(ctx, c)
    except Unavailable as exc:
        tr.rules.append(RuleTrace(c, False, f"{exc} — evaluates false"))
        return False
    tr.rules.append(RuleTrace(c, res.value, res.note))
    return res.value


def _compose(c: CCondition) -> Predicate:
    """``_eval`` without the trace, as one function built once per compiled condition."""
    if isinstance(c, CBool):
        want = c.op == "or"
        operands = tuple(_compose(o) for o in c.operands)

        def either(ctx: MessageContext) -> bool:
            for operand in operands:
                if operand(ctx) is want:  # `is`, as in _eval: a non-bool value is not `want`
                    return want
            return not want

        return either
    if isinstance(c, CNot):
        inner = _compose(c.operand)
        return lambda ctx: not inner(ctx)
    return predicate(c)


# Compiled conditions are frozen and live as long as their filters; hashing one by value per
# message would cost more than the lookup saves, so they are keyed by identity (the entry keeps
# the object alive, so its id cannot be reused while cached).
_PREDICATES: dict[int, tuple[CCondition, Predicate]] = {}
_MAX_PREDICATES = 16_384  # reloaded filter sets leave old entries (kept alive) behind: start afresh


def _predicate_of(c: CCondition) -> Predicate:
    hit = _PREDICATES.get(id(c))
    if hit is not None and hit[0] is c:
        return hit[1]
    fn = _compose(c)
    if len(_PREDICATES) >= _MAX_PREDICATES:
        _PREDICATES.clear()
    _PREDICATES[id(c)] = (c, fn)
    return fn


# A stage's active filters with their conditions' predicates, for the filter list a worker
# keeps (one look-up per message instead of one per filter). An entry is used only while the
# list holds the same filters, so a list changed in place is compiled again.
# Each filter with its name, condition predicate and branches unpacked once per list: the
# loop over 50 filters read four attributes of each per message.
_Active = tuple[tuple[CFilter, str, Predicate, tuple[CStatement, ...], tuple[CStatement, ...]],
                ...]
_STAGES: dict[int, tuple[Sequence[CFilter], tuple[CFilter, ...], _Active]] = {}
_MAX_STAGES = 64  # lists built per message (a splinter's content filters) come and go


def _active(filters: Sequence[CFilter]) -> _Active:
    hit = _STAGES.get(id(filters))
    if hit is not None and hit[0] is filters and len(hit[1]) == len(filters) \
            and all(map(operator.is_, hit[1], filters)):
        return hit[2]
    active = tuple((f, f.name, _predicate_of(f.body.condition), f.body.then, f.body.else_)
                   for f in filters if f.active)
    if len(_STAGES) >= _MAX_STAGES:
        _STAGES.clear()
    _STAGES[id(filters)] = (filters, tuple(filters), active)
    return active


_RunIf = Callable[[CIf, MessageContext, ActionPlan, FilterTrace], bool]


def _run_block(stmts: Sequence[CStatement], ctx: MessageContext, plan: ActionPlan,
               tr: FilterTrace, run_if: _RunIf) -> None:
    for st in stmts:
        if isinstance(st, CIf):
            run_if(st, ctx, plan, tr)
            continue
        action = actions.run(ctx, plan, st)
        tr.actions.append(action)
        if action.name in FINAL:
            raise _Final


def _run_if(node: CIf, ctx: MessageContext, plan: ActionPlan, tr: FilterTrace) -> bool:
    value = _eval(node.condition, ctx, tr)
    if tr.matched is None:
        tr.matched = value
    branch = node.then if value else node.else_
    _run_block(branch, ctx, plan, tr, _run_if)
    return value


def _run_if_untraced(node: CIf, ctx: MessageContext, plan: ActionPlan, tr: FilterTrace) -> bool:
    value = _predicate_of(node.condition)(ctx)
    if tr.matched is None:
        tr.matched = value
    branch = node.then if value else node.else_
    if branch:
        _run_block(branch, ctx, plan, tr, _run_if_untraced)
    return value


def run_filters(filters: Sequence[CFilter], ctx: MessageContext, *, content: bool = False,
                on_error: OnError = "bypass", trace: bool = True) -> StageResult:
    """Run one stage (message filters, or one splinter's content filters) on ``ctx``.

    ``filters`` are compiled filters (``runtime.engine.loader.load_program``).
    Patterns of files that opted in to the backtracking engine share one time budget per stage.

    ``trace=False`` is for callers that only act on the outcome (the gateway): the plan, the
    errors and every filter's match and actions are the same, but ``StageResult.filters`` lists
    only the filters that matched, ran actions or failed, and without their rules.
    """
    with rx.budget():
        plan = ActionPlan()
        traces: list[FilterTrace] = []
        failed = (_run_all if trace else _run_untraced)(filters, ctx, plan, traces)
        if failed is not None:  # reference 4.7: mark the filter, never lose the message
            return StageResult(ActionPlan(errors=[f"filter {failed.name}: {failed.error}"]), traces,
                               error=failed.error,
                               tempfail=on_error == "tempfail" or failed.temporary)
        if not content or plan.final is None or plan.final.name not in ("drop", "bounce"):
            try:
                actions.finish(ctx, plan)
            except Exception as exc:
                plan.errors.append(f"end-of-stage edit failed: {type(exc).__name__}: {exc}")
        return StageResult(plan, traces)


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _run_all(filters: Sequence[CFilter], ctx: MessageContext, plan: ActionPlan,
             traces: list[FilterTrace]) -> FilterTrace | None:
    """Every filter traced with its rules; the trace of the filter that failed, if one did."""
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
        except Exception as exc:
            tr.error = _failure(exc)
            tr.temporary = isinstance(exc, TemporaryFailure)
            return tr
    return None


def _run_untraced(filters: Sequence[CFilter], ctx: MessageContext, plan: ActionPlan,
                  traces: list[FilterTrace]) -> FilterTrace | None:
    """`_run_all` without rule notes; a filter that neither matched, acted nor failed leaves
    no trace (most filters, most messages: their trace objects were a cost of their own)."""
    for f, name, condition, then, else_ in _active(filters):
        ctx.current_filter = name
        # Rules assign a new list, never fill this one: an empty one stays (one list less per
        # filter per message; with the unpacking above, run_filters over the bench's 50
        # filters 101.2 -> 99.3 us in process).
        if ctx.matched_content:
            ctx.matched_content = []
        tr: FilterTrace | None = None
        try:
            value = condition(ctx)
            branch = then if value else else_
            if not value and not branch:
                continue
            tr = FilterTrace(name, value)
            traces.append(tr)
            _run_block(branch, ctx, plan, tr, _run_if_untraced)
        except _Final:
            return None  # the remaining filters are skipped (reference 4.4)
        except Exception as exc:
            if tr is None:
                tr = FilterTrace(f.name)
                traces.append(tr)
            tr.error = _failure(exc)
            tr.temporary = isinstance(exc, TemporaryFailure)
            return tr
    return None
