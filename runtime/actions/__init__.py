"""Every action of reference 7.1 by name: ``run(ctx, plan, name, args)`` applies it for real.

Arguments arrive as literal values (str / int / float). Variables are expanded only where
reference 8.1 says so; the expanded arguments are what the plan and the trace record.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.actions import copies, edits
from runtime.context import MessageContext
from runtime.plan import FINAL, ActionPlan, PlannedAction
from runtime.variables import expand

Value = str | int | float
ActionFn = Callable[[MessageContext, ActionPlan, list[Value]], list[Value]]


def _record_only(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    return args


def _expand_arg(index: int) -> ActionFn:
    def run(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
        out = list(args)
        if len(out) > index and isinstance(out[index], str):
            out[index] = expand(str(out[index]), ctx)
        return out

    return run


def _encrypt(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    out = list(args)
    if len(out) < 2:
        out.append("$Subject")
    out[1] = expand(str(out[1]), ctx)
    return out


def _log_entry(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    text = expand(str(args[0]) if args else "", ctx)
    plan.log.append(f"MID {ctx.mid} Custom Log Entry: {text}")
    return [text]


def _tag(ctx: MessageContext, plan: ActionPlan, args: list[Value]) -> list[Value]:
    plan.tags.append(str(args[0]) if args else "")
    return args


ACTIONS: dict[str, ActionFn] = {
    **dict.fromkeys(sorted(FINAL - {"encrypt"}), _record_only),
    "encrypt": _encrypt,
    "encrypt-deferred": _encrypt,
    "smime-gateway-deferred": _record_only,
    "alt-rcpt-to": _record_only,
    "alt-mailhost": _record_only,
    "alt-src-host": _record_only,
    "bounce-profile": _record_only,
    "quarantine": _record_only,
    "duplicate-quarantine": copies.duplicate_quarantine,
    "bcc": copies.bcc,
    "bcc-scan": copies.bcc,
    "notify": copies.notify,
    "notify-copy": copies.notify,
    "archive": copies.archive,
    "insert-header": edits.insert_header,
    "strip-header": edits.strip_header,
    "edit-header-text": edits.edit_header_text,
    "edit-body-text": edits.edit_body_text,
    "html-convert": _record_only,
    "add-footer": _record_only,
    "add-heading": _record_only,
    **dict.fromkeys(("skip-spamcheck", "skip-viruscheck", "skip-ampcheck", "skip-vofcheck",
                     "skip-marketingcheck", "skip-socialcheck", "skip-bulkcheck",
                     "skip-dkim-signing"), _record_only),
    "drop-attachments-by-name": edits.drop_attachments,
    "drop-attachments-by-type": edits.drop_attachments,
    "drop-attachments-by-filetype": edits.drop_attachments,
    "drop-attachments-by-mimetype": edits.drop_attachments,
    "drop-attachments-by-size": edits.drop_attachments,
    "drop-attachments-where-contains": edits.drop_attachments,
    "drop-attachments-where-dictionary-match": edits.drop_attachments,
    "tag-message": _tag,
    "log-entry": _log_entry,
    "no-op": _record_only,
}
# URL rewriting and image-verdict stripping need an outside service: recorded in the plan for
# the pipeline's provider, never silently dropped.
for _name in ("url-reputation-replace", "url-reputation-defang", "url-reputation-proxy-redirect",
              "url-no-reputation-replace", "url-no-reputation-defang",
              "url-no-reputation-proxy-redirect", "url-category-replace", "url-category-defang",
              "url-category-proxy-redirect", "drop-attachments-where-image-verdict"):
    ACTIONS[_name] = _record_only


class ActionError(Exception):
    """An action that cannot run on this message (reference 4.7)."""


def run(ctx: MessageContext, plan: ActionPlan, name: str, args: list[Value]) -> PlannedAction:
    canon = name.lower().replace("_", "-")
    fn = ACTIONS.get(canon)
    if fn is None:
        raise ActionError(f"unknown action {name!r}")
    plan.pending = canon
    expanded = fn(ctx, plan, args)
    action = PlannedAction(canon, tuple(str(a) for a in expanded), ctx.current_filter)
    plan.record(action)
    return action


def finish(ctx: MessageContext, plan: ActionPlan) -> None:
    """End-of-stage edits: disclaimers (one per message, slot) and the html-convert mark."""
    heading, footer = plan.slots.get("add-heading"), plan.slots.get("add-footer")
    if heading or footer:
        edits.add_disclaimers(ctx, plan, heading.args[0] if heading else None,
                              footer.args[0] if footer else None)
    if "html-convert" in plan.flags:
        edits.html_convert(ctx)
