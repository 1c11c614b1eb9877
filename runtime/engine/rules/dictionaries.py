"""Dictionary rules (reference 6.6): terms with weights scored against text."""

from __future__ import annotations

import re

from filterlang.compile import CRule
from runtime.engine import rx, smartid
from runtime.engine.context import MessageContext
from runtime.engine.resources import Dictionary
from runtime.engine.rules.common import RuleResult, arg, parts
from runtime.engine.rules.content import scan_set, score_parts


def _dict(ctx: MessageContext, name: str) -> Dictionary | None:
    res = ctx.resources
    return None if res is None else res.dictionaries.get(name)


def _term_pattern(d: Dictionary, term: str) -> str:
    if term.startswith("*"):
        return term
    pat = term
    if d.whole_words:
        pat = r"\b" + re.escape(term) + r"\b"
    return pat if d.case_sensitive else "(?i)" + pat


def dict_score(d: Dictionary, text: str | bytes) -> tuple[int, list[str]]:
    score = 0
    found: list[str] = []
    for term, weight in d.terms:
        try:
            n, hits = smartid.count(_term_pattern(d, term), text)
        except rx.PatternError:
            n, hits = 0, []
        score += n * weight
        found += hits
    return score, found


def _address_term(term: str) -> str:
    # address dictionaries: '.' need not be escaped; '@example.com' matches the domain
    return "(?i)" + term.replace(".", r"\.").replace(r"\.*", ".*")


def _scan(ctx: MessageContext, t: CRule, body: bool, attachments: bool) -> RuleResult:
    name = str(arg(t, 0, ""))
    d = _dict(ctx, name)
    if d is None:
        return RuleResult(False, f"dictionary {name!r} does not exist")
    threshold = int(arg(t, 1, 1) or 1)
    scanned = scan_set(ctx, body=body, attachments=attachments)
    score, found = score_parts(scanned, lambda text: dict_score(d, text))
    ok = score >= threshold
    if ok:
        ctx.matched_content = list(dict.fromkeys(found))
    return RuleResult(ok, f"dictionary {name}: score {score}, threshold {threshold}", tuple(found[:5]))


def dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, True, True)


def body_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, True, False)


def attachment_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, False, True)


def _threshold(t: CRule, index: int) -> int:
    # The optional count threshold (reference 5.8): at least this score; 1 when left out.
    return int(arg(t, index, 1) or 1)


def _text_rule(
    ctx: MessageContext, name: str, values: list[str], what: str, threshold: int
) -> RuleResult:
    d = _dict(ctx, name)
    if d is None:
        return RuleResult(False, f"dictionary {name!r} does not exist")
    score = sum(dict_score(d, v)[0] for v in values)
    return RuleResult(
        score >= threshold, f"{what} scores {score} in dictionary {name}, threshold {threshold}"
    )


def subject_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    values = ctx.header_values("Subject")
    return _text_rule(ctx, str(arg(t, 0, "")), values, "subject", _threshold(t, 1))


def header_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    header = str(arg(t, 1, ""))
    values = ctx.header_values(header)
    return _text_rule(ctx, str(arg(t, 0, "")), values, f"header {header}", _threshold(t, 2))


def _addr_rule(
    ctx: MessageContext, name: str, addrs: tuple[str, ...], what: str, threshold: int
) -> RuleResult:
    # One address is scored on its own (the weights of the terms it matches): recipients do
    # not add up, so a threshold of 2 never holds because two recipients matched once each.
    d = _dict(ctx, name)
    if d is None:
        return RuleResult(False, f"dictionary {name!r} does not exist")
    for a in addrs:
        hits = [(term, weight) for term, weight in d.terms if rx.search(_address_term(term), a)]
        score = sum(weight for _, weight in hits)
        if hits and score >= threshold:
            return RuleResult(True, f"{what} {a} matches {hits[0][0]!r} (score {score})")
    return RuleResult(False, f"no {what} in dictionary {name} (threshold {threshold})")


def mail_from_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    addrs = (ctx.envelope.mail_from,)
    return _addr_rule(ctx, str(arg(t, 0, "")), addrs, "sender", _threshold(t, 1))


def rcpt_to_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    addrs = ctx.envelope.rcpt_addresses
    return _addr_rule(ctx, str(arg(t, 0, "")), addrs, "recipient", _threshold(t, 1))


def attachment_filename_dictionary_match(ctx: MessageContext, t: CRule) -> RuleResult:
    names = [p.filename for p in parts(ctx) if not p.is_body and p.filename]
    return _text_rule(ctx, str(arg(t, 0, "")), names, "attachment names", _threshold(t, 1))
