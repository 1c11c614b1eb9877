"""Action dispatch: every row of the one signature table (filterlang.builtins) to what it does.

There is no list of action names here. An action row is applied by the function of the same
name (``-`` -> ``_``) in ``copies``, ``edits`` or this module. A row without one is recorded in
the plan only: routing slots, scan bypasses, final actions and the service-backed URL/image
actions are carried out by the pipeline (or its providers) from the plan. Arguments arrive as
the compiler typed them; variables are expanded only where reference 8.1 says so, and the
expanded arguments are what the plan and the trace record.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from filterlang import builtins as b
from filterlang.compile import CAction
from runtime.engine import rx
from runtime.engine.actions import copies, edits
from runtime.engine.context import MessageContext
from runtime.engine.plan import ActionPlan, PlannedAction
from runtime.engine.variables import expand

Value = Any
ActionFn = Callable[[MessageContext, ActionPlan, list[Value]], list[Value]]


def encrypt(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    """(profile, the envelope's subject expanded, rule): the plan records all three, so the
    pipeline and the trace see the defaults too (subject $Subject, rule 0: always encrypt)."""
    out = list(args)
    if len(out) < 2 or out[1] is None:
        out[1:2] = ["$Subject"]
    out[1] = expand(str(out[1]), ctx)
    if len(out) < 3 or out[2] is None:
        out[2:3] = [0]
    return out


encrypt_deferred = encrypt


def log_entry(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    text = expand(str(args[0]) if args else "", ctx)
    plan.log.append(f"MID {ctx.mid} Custom Log Entry: {text}")
    return [text]


def tag_message(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    plan.tags.append(str(args[0]) if args else "")
    return args


def _record_only(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    return args


_MODULES: tuple[ModuleType, ...] = (copies, edits, sys.modules[__name__])


def _implementation(sig: b.ActionSig) -> ActionFn:
    fname = sig.name.replace("-", "_")
    for module in _MODULES:
        fn = getattr(module, fname, None)
        if callable(fn):
            return fn
    return _record_only


#: Row name -> implementation, built from the signature table at import.
IMPLEMENTATIONS: dict[str, ActionFn] = {sig.name: _implementation(sig) for sig in b.ACTIONS}


class ActionError(Exception):
    """An action that cannot run on this message (reference 4.7)."""


def _value(a: Value) -> Value:
    # list literals are comma-separated text for the implementations (reference 3.3)
    return ", ".join(str(x) for x in a) if isinstance(a, tuple) else a


def _text(a: Value) -> str:
    return rx.source(a) if isinstance(a, rx.CompiledRegex) else str(a)


def run(ctx: MessageContext, plan: ActionPlan, action: CAction) -> PlannedAction:
    name = action.sig.name
    plan.pending = name
    args = [_value(a) for a in action.args]
    expanded = IMPLEMENTATIONS[name](ctx, plan, args)
    planned = PlannedAction(name, tuple(_text(a) for a in expanded if a is not None),
                            ctx.current_filter)
    plan.record(planned)
    return planned


def finish(ctx: MessageContext, plan: ActionPlan) -> None:
    """End-of-stage edits: disclaimers (one per message, slot) and the html-convert mark."""
    heading, footer = plan.slots.get("add-heading"), plan.slots.get("add-footer")
    if heading or footer:
        edits.add_disclaimers(ctx, plan, heading.args[0] if heading else None,
                              footer.args[0] if footer else None)
    if "html-convert" in plan.flags:
        edits.apply_html_convert(ctx)
