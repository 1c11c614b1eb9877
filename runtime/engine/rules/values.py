"""A rule's value without its note, for stages whose rule trace nobody reads (issue 6 "Speed").

The gateway's filter stages use which filters matched and what they did, never the per-rule
notes; formatting those notes (and the general argument handling around them) cost more than
most rules themselves. `predicate` turns one compiled rule into a function of the message that
returns exactly what ``evaluate(ctx, t).value`` returns, with the same changes to the context
and the same errors; a rule missing its service is false, as in the traced engine. Whatever
does not depend on the message (the operand's matcher, a threshold, a header name) is worked out
once, when the predicate is built.

Only the rules that real filter sets test on every message have a form of their own here; every
other rule runs its full implementation and drops the note. tests/runtime/test_rt_values.py
checks that both forms agree on the rules of the test corpora.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from filterlang.compile import CRule
from runtime.engine import rx
from runtime.engine.addresses import address_list
from runtime.engine.context import MessageContext
from runtime.engine.rules import IMPLEMENTATIONS, content
from runtime.engine.rules.common import _NUM_OPS, RuleResult, arg, operand, parts
from runtime.engine.rules.envelope import ip_specs, remote_ip_in
from runtime.engine.services import Unavailable

#: The value of one rule for a message (a bool, or whatever the full implementation returns).
Predicate = Callable[[MessageContext], Any]
_Builder = Callable[[CRule], "Predicate | None"]


def predicate(t: CRule) -> Predicate:
    """The value-only form of ``t``: a specialised one when there is one, else the full rule."""
    build = _BUILDERS.get(t.sig.name)
    if build is not None:
        try:
            fn = build(t)
        except Exception:  # let the full rule raise it, at evaluation time, as it always did
            fn = None
        if fn is not None:
            return fn
    return _full(t)


def _full(t: CRule) -> Predicate:
    impl: Callable[[MessageContext, CRule], RuleResult] = IMPLEMENTATIONS[t.sig.name]

    def full(ctx: MessageContext) -> Any:
        try:
            return impl(ctx, t).value
        except Unavailable:
            return False

    return full


# --- regex comparisons (rules.common.compare_regex) -------------------------------------------
# `==`: some value matches; `!=`: some value does not; no value at all: `!=` is true unless the
# rule says a missing value is no mismatch. Only RE2 patterns: the backtracking engine's time
# budget makes the order and number of matches observable.


def _regex_test(t: CRule) -> Callable[[str], bool] | None:
    return rx.text_test(operand(t))


def _one_value(t: CRule, value_of: Callable[[MessageContext], str]) -> Predicate | None:
    test = _regex_test(t)
    if test is None:
        return None
    if t.comparator == "!=":
        return lambda ctx: not test(value_of(ctx))
    return lambda ctx: test(value_of(ctx))


def _values(t: CRule, values_of: Callable[[MessageContext], Any],
            missing_ne: bool = True) -> Predicate | None:
    test = _regex_test(t)
    if test is None:
        return None
    if t.comparator == "!=":
        def some_miss(ctx: MessageContext) -> bool:
            vals = values_of(ctx)
            if not vals:
                return missing_ne
            return not all(map(test, vals))  # map: no generator frame per evaluation

        return some_miss

    def some_hit(ctx: MessageContext) -> bool:
        return any(map(test, values_of(ctx)))

    return some_hit


def _mail_from(t: CRule) -> Predicate | None:
    return _one_value(t, lambda ctx: ctx.envelope.mail_from)


def _sendergroup(t: CRule) -> Predicate | None:
    return _one_value(t, lambda ctx: ctx.connection.sender_group)


def _rcpt_to(t: CRule) -> Predicate | None:
    return _values(t, lambda ctx: ctx.envelope.rcpt_addresses)


def _subject(t: CRule) -> Predicate | None:
    # a missing Subject tests as the empty string (rules.headers.subject)
    return _values(t, lambda ctx: ctx.header_values("Subject") or [""])


def _header(t: CRule) -> Predicate | None:
    name = str(arg(t, 0, ""))
    if t.comparator is None:
        return lambda ctx: bool(ctx.header_values(name))
    return _values(t, lambda ctx: ctx.header_values(name))


# --- numbers, names, addresses ------------------------------------------------------------------


def _rcpt_count(t: CRule) -> Predicate | None:
    # rules.common.compare_num; the count is never None
    if t.comparator is None:
        return lambda ctx: bool(len(ctx.envelope.recipients))
    op, want = _NUM_OPS.get(t.comparator), operand(t)
    if op is None:
        return None
    return lambda ctx: op(len(ctx.envelope.recipients), want)


def _name(value_of: Callable[[MessageContext], str]) -> _Builder:
    def build(t: CRule) -> Predicate | None:  # rules.common.compare_name
        want = str(operand(t))
        if t.comparator != "!=":
            return lambda ctx: value_of(ctx) == want
        return lambda ctx: value_of(ctx) != want

    return build


def _remote_ip(t: CRule) -> Predicate | None:
    specs = ip_specs(t)
    if t.comparator != "!=":
        return lambda ctx: remote_ip_in(ctx, specs)
    return lambda ctx: not remote_ip_in(ctx, specs)


# One plain address, bare or in angle brackets: getaddresses finds exactly it (and the
# strict parser of Python 3.11.4+ costs several microseconds per header).
_ATOMS = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
_PLAIN_ADDRESS = re.compile(rf"<{_ATOMS}@{_ATOMS}>|{_ATOMS}@{_ATOMS}")


def count_addresses(values: list[str]) -> int:
    """``len([a for _, a in address_list(values) if a])``, the count addr-count compares."""
    if all(_PLAIN_ADDRESS.fullmatch(v) for v in values):
        return len(values)
    return len([a for _, a in address_list(values) if a])


def _addr_count(t: CRule) -> Predicate | None:
    # rules.headers.addr_count through rules.common.compare_num; the count is never None
    names = [str(a) for a in t.args if a]

    def count(ctx: MessageContext) -> int:
        return count_addresses([v for n in names for v in ctx.header_values(n)])

    if t.comparator is None:
        return lambda ctx: bool(count(ctx))
    op, want = _NUM_OPS.get(t.comparator), operand(t)
    if op is None:
        return None
    return lambda ctx: op(count(ctx), want)


def _smtp_auth_id_matches(t: CRule) -> Predicate | None:
    if str(arg(t, 0, "")).lower() != "*none":
        return None
    return lambda ctx: not ctx.connection.auth_user.lower()


# --- attachments --------------------------------------------------------------------------------


def _false_without_attachments(t: CRule) -> Predicate | None:
    """These rules are false for a message without attachments, whatever their arguments (an
    empty list of names, types or sizes matches nothing, and `!=` needs a value that differs);
    most messages have none, and the check is one look at the parts every rule here reads."""
    full = _full(t)

    def unless_none(ctx: MessageContext) -> Any:
        for p in parts(ctx):
            if not p.is_body:
                return full(ctx)
        return False

    return unless_none


# --- content scans (rules.content._scan) ------------------------------------------------------


def _scan(*, body: bool, attachments: bool) -> _Builder:
    key = (body, attachments)
    full_rule = {(True, True): content.body_contains, (True, False): content.only_body_contains,
                 (False, True): content.attachment_contains}[key]

    def build(t: CRule) -> Predicate | None:
        threshold = int(arg(t, 1, 1) or 1)
        candidate = content.may_match(arg(t, 0, ""))
        if candidate is None:
            return None

        def scan(ctx: MessageContext) -> Any:
            scanned = ctx.scan_sets.get(key)  # built by the first scan of the message
            if scanned is None:
                scanned = content.scan_set(ctx, body=body, attachments=attachments)
            small = len(ctx.raw) <= content.LOWER_COPY_LIMIT
            for p in scanned:
                if candidate(p, small):  # a match somewhere: count (and validate) as the rule does
                    return full_rule(ctx, t).value
            # nothing matches anywhere: 0 matches, and no matched content
            ok = threshold <= 0
            if ok:
                ctx.matched_content = []
            return ok

        return scan

    return build


_BUILDERS: dict[str, _Builder] = {
    "mail-from": _mail_from,
    "rcpt-to": _rcpt_to,
    "sendergroup": _sendergroup,
    "subject": _subject,
    "header": _header,
    "rcpt-count": _rcpt_count,
    "recv-listener": _name(lambda ctx: ctx.connection.listener),
    "recv-int": _name(lambda ctx: ctx.connection.interface),
    "remote-ip": _remote_ip,
    "body-contains": _scan(body=True, attachments=True),
    "only-body-contains": _scan(body=True, attachments=False),
    "attachment-contains": _scan(body=False, attachments=True),
    "addr-count": _addr_count,
    "smtp-auth-id-matches": _smtp_auth_id_matches,
    **dict.fromkeys(("attachment-filename", "attachment-filetype", "attachment-size",
                     "attachment-mimetype", "attachment-type", "attachment-protected",
                     "attachment-unprotected", "attachment-corrupt", "attachment-binary-contains"),
                    _false_without_attachments),
}
