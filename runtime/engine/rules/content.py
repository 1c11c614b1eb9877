"""Body and attachment content rules (reference 6.6) with thresholds and $MatchedContent (5.8)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from filterlang.compile import CRule
from runtime.engine import rx, smartid
from runtime.engine.context import MessageContext
from runtime.engine.mimewalk import Part, archive_members
from runtime.engine.rules.common import RuleResult, arg, parts


def score_parts(scanned: list[Part], counter: object) -> tuple[int, list[str]]:
    """Sum per-part counts; alternatives of one multipart/alternative count their maximum."""
    total = 0
    found: list[str] = []
    alt_best: dict[int, tuple[int, list[str]]] = {}
    for p in scanned:
        n, hits = counter(p.utf8)  # type: ignore[operator]
        if p.alt_group is not None:
            best = alt_best.get(p.alt_group)
            if best is None or n > best[0]:
                alt_best[p.alt_group] = (n, hits)
            continue
        total += n
        found += hits
    for n, hits in alt_best.values():
        total += n
        found += hits
    return total, found


def scan_set(ctx: MessageContext, *, body: bool, attachments: bool) -> list[Part]:
    """The parts a content scan reads: body and/or attachments, archives expanded (5.9)."""
    cached: list[Part] | None = ctx.scan_sets.get((body, attachments))
    if cached is not None:
        return cached
    out: list[Part] = []
    ctx.scan_sets[(body, attachments)] = out
    for p in parts(ctx):
        if p.is_body and body and p.scannable:
            out.append(p)
        elif not p.is_body and attachments:
            if p.scannable:
                out.append(p)
            out.extend(m for m in archive_members(p) if m.scannable)
    return out


#: A message up to this size may keep a lower-cased copy of its text parts for word checks
#: (Part.ascii_lower); a larger one asks RE2 instead, within issue 3's memory bound (4x).
LOWER_COPY_LIMIT = 64 * 1024

#: may_match's answer: whether a part may hold a match; the flag allows a lower-cased copy.
Candidate = Callable[[Part, bool], bool]


@functools.lru_cache(maxsize=4096)
def _may_match(pattern: rx.Pattern) -> Candidate | None:
    test = rx.utf8_test(pattern)
    if test is None:
        return None
    plain = rx.plain_words(pattern)
    if plain is None:
        return lambda p, small: test(p.utf8)
    fold, words = plain
    if not fold:
        def exact(p: Part, small: bool) -> bool:
            return any(map(p.utf8.__contains__, words))  # map: no generator frame per call

        return exact

    def folded(p: Part, small: bool) -> bool:
        lower = p.ascii_lower if small else None
        if lower is None:
            return test(p.utf8)
        return any(map(lower.__contains__, words))

    return folded


def may_match(pattern: rx.Pattern) -> Candidate | None:
    """Whether a part may hold a match of ``pattern`` (None: no quick answer, count instead).

    It may say yes wrongly, never no wrongly, so a no is 0 matches without counting: one RE2
    pass without match objects, or for a pattern of plain words a byte search, in the
    lower-cased text when case-insensitive (exact for ASCII text; other text, and the parts
    of messages over ``LOWER_COPY_LIMIT``, go to RE2). Call it with
    ``small=len(ctx.raw) <= LOWER_COPY_LIMIT``.
    """
    try:
        return _may_match(pattern)
    except Exception:  # e.g. a plain-string pattern RE2 refuses: counting raises it, as before
        return None


def _scan(ctx: MessageContext, t: CRule, *, body: bool, attachments: bool, what: str) -> RuleResult:
    pattern = arg(t, 0, "")
    threshold = int(arg(t, 1, 1) or 1)
    scanned = scan_set(ctx, body=body, attachments=attachments)
    candidate = may_match(pattern)
    found: list[str]
    small = len(ctx.raw) <= LOWER_COPY_LIMIT
    if candidate is not None and not any(candidate(p, small) for p in scanned):
        total, found = 0, []  # nothing can match anywhere: no need to count
    else:
        total, found = score_parts(scanned, lambda text: smartid.count(pattern, text))
    ok = total >= threshold
    if ok:
        ctx.matched_content = list(dict.fromkeys(found))
    return RuleResult(ok, f"{what}: {total} match(es) of {rx.source(pattern)!r} in {len(scanned)} part(s), "
                          f"threshold {threshold}", tuple(found[:5]))


def body_contains(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, body=True, attachments=True, what="body and attachments")


def only_body_contains(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, body=True, attachments=False, what="body")


def attachment_contains(ctx: MessageContext, t: CRule) -> RuleResult:
    return _scan(ctx, t, body=False, attachments=True, what="attachments")


def every_attachment_contains(ctx: MessageContext, t: CRule) -> RuleResult:
    pattern = arg(t, 0, "")
    threshold = int(arg(t, 1, 1) or 1)
    atts = [p for p in parts(ctx) if not p.is_body]
    if not atts:
        return RuleResult(False, "no attachments")
    counts = [smartid.count(pattern, p.utf8)[0] if p.scannable else 0 for p in atts]
    ok = all(c >= threshold for c in counts)
    return RuleResult(ok, f"per-attachment matches {counts}, threshold {threshold}")


def attachment_binary_contains(ctx: MessageContext, t: CRule) -> RuleResult:
    pattern = arg(t, 0, "")
    for p in parts(ctx):
        if not p.is_body and p.encoded_size <= 2 * 5 * 1024 * 1024 \
                and rx.search_bytes(pattern, p.payload):
            return RuleResult(True, f"bytes match in {p.filename or p.declared_type}")
    return RuleResult(False, "no attachment bytes match")
