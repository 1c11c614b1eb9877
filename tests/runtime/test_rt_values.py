"""Untraced evaluation (the gateway's stages) gives what the traced engine gives.

Every rule of a varied filter set, and the bench and example filter files, run over a set of
messages and connections both ways: each rule's value, error and $MatchedContent, and each
stage's matches, actions, errors, plan and resulting message must be equal.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rt_helpers import compiled, mime, msg

from filterlang.compile import CBool, CCondition, CFilter, CNot, CRule
from runtime.engine import rules
from runtime.engine.context import Connection, Envelope, MessageContext
from runtime.engine.rules.values import count_addresses, predicate
from runtime.engine.run import StageResult, run_filters
from runtime.engine.services import Unavailable

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))
from evaluate import BODY_ATTACH, ENVELOPE_HEADER, filter_source  # noqa: E402

# each specialised rule in every comparator form, plus neighbours that use the full rules
RULES = [
    "mail-from == '(?i)^A@'", "mail-from != 'example\\\\.com$'", "mail-from == '^$'",
    "rcpt-to == '^r2@'", "rcpt-to != '@example\\\\.org$'", "rcpt-to != '^nobody@'",
    "sendergroup == 'BLOCK'", "sendergroup != '^$'",
    "subject == '(?i)spam|lottery'", "subject != '.'", "subject == '^$'", "subject == 'Grüße'",
    "header('X-Spam-Flag')", "header('X-Spam-Flag') == 'YES'", "header('X-Spam-Flag') != 'YES'",
    "header('Received') == 'unknown'", "header('To') != 'example'", "header('Subject') == '=\\\\?'",
    "rcpt-count > 1", "rcpt-count == 1", "rcpt-count != 2", "rcpt-count <= 0",
    "recv-listener == 'Inbound'", "recv-listener != 'Inbound'", "recv-int == 'Mgmt'",
    "recv-int != 'Mgmt'",
    "remote-ip == '10.0.0.0/8'", "remote-ip != '10.0.0.0/8'", "remote-ip == '192.0.2.'",
    "remote-ip == '10.1.2.1-9'", "remote-ip == '2001:db8::/32, 10.0.0.1'",
    "body-contains('(?i)company confidential', 2)", "body-contains('(?i)confidential')",
    "only-body-contains('*ssn')", "only-body-contains('*credit')", "body-contains('Grüße')",
    "only-body-contains('(?i)password\\\\s*:')", "attachment-contains('(?i)macro')",
    "attachment-contains('MZ')", "body-contains('\\\\s\\\\s+X')", "body-contains('a', 3)",
    "body-contains('(?i)kelvin')", "only-body-contains('(?i)Wallet Address|BITCOIN')",
    "body-contains('wallet address|Bitcoin', 2)", "body-contains('(?i)company confidential', 3)",
    "smtp-auth-id-matches('*None')", "smtp-auth-id-matches('*Any')", "addr-count('To', 'Cc') > 1",
    "addr-count('To') == 1", "attachment-filename == 'exe$'", "attachment-filename != 'exe$'",
    "attachment-filetype == 'Executable'", "attachment-filetype != 'Executable'",
    "attachment-size > 10", "attachment-size < 10", "attachment-mimetype == 'application/octet-stream'",
    "attachment-mimetype != 'text/plain'", "attachment-type == 'application/*'",
    "attachment-type != 'video/*'", "attachment-protected", "attachment-unprotected",
    "attachment-corrupt", "attachment-binary-contains('MZ')", "every-attachment-contains('x')",
    "not subject == 'x'", "(subject == 'a') or (mail-from == 'b')",
    "(rcpt-count > 0) and not (body-contains('secret'))",
]

BENCH_BODY = b"".join(b"%dX" % i + b"X" * (77 - len(str(i))) + b"\r\n" for i in range(1, 52))
MESSAGES: dict[str, bytes] = {
    "bench": (b"Received: from vm ([127.0.0.1])\r\n\tby gw (filterlang) with ESMTP id 1;\r\n"
              b"\tSun, 29 Nov 2026 08:43:12 +0000\r\nFrom: <a@example.com>\r\nTo: <b@example.org>\r\n"
              b"Message-Id: <1@vm>\r\n\r\n" + BENCH_BODY),
    "plain": msg(),
    "spam": msg("Subject: You won the LOTTERY\nX-Spam-Flag: YES\nTo: a@x.example, b@y.example\n"
                "Received: from unknown by mx\n",
                "Company Confidential\nwire\ncompany confidential\nSSN 123-45-6789\n"
                "card 4111 1111 1111 1111\nPassword : x\naaa  X\n"),
    "no-subject": msg("From: a@example.com\n", "body\n"),
    "folds": msg("Subject: x\nContent-Type: text/plain; charset=utf-8\n"
                 "Content-Transfer-Encoding: base64\n",
                 base64.b64encode("5 \u212aelvin, send Bitcoin to the wallet address\n"
                                  .encode()).decode() + "\n"),
    "words": msg("Subject: y\n", "BITCOIN bitcoin Bitcoin, wallet address\nCOMPANY confidential\n"),
    "encoded": msg("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nTo: =?bad?q?x?=\n", "Grüße aus Köln\n"),
    "attachment": mime(("Content-Type: text/plain", "see attached, company confidential"),
                       ("Content-Type: application/octet-stream\nContent-Disposition: attachment;"
                        " filename=\"a.exe\"\nContent-Transfer-Encoding: base64",
                        "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=")),
    "alternative": mime(("Content-Type: multipart/alternative; boundary=\"ALT\"",
                         "--ALT\nContent-Type: text/plain\n\ncompany confidential\n--ALT\n"
                         "Content-Type: text/html\n\n<p>company confidential</p>\n--ALT--")),
}
MESSAGES.update({p.stem: p.read_bytes()
                 for p in sorted((Path(__file__).parent / "conformance").glob("*.eml"))})

CONNECTIONS = [
    Connection(remote_ip="10.1.2.3", listener="Inbound", sender_group="BLOCKED"),
    Connection(remote_ip="192.0.2.7", remote_host="mx.example.com", interface="Mgmt"),
    Connection(remote_ip="not-an-ip", auth_user="a@example.com"),
]
ENVELOPES = [Envelope.simple("a@example.com", ["r1@example.org", "r2@example.org"]),
             Envelope.simple("", ["b@example.org"])]

FILTER_SETS: dict[str, str] = {
    "rules": filter_source(RULES),
    "bench": filter_source(ENVELOPE_HEADER + BODY_ATTACH),
    **{p.stem: p.read_text() for p in sorted((ROOT / "examples" / "filters").glob("*.filter"))},
    "conformance": (Path(__file__).parent / "conformance" / "filters.flt").read_text(),
}


def _filters(name: str) -> tuple[CFilter, ...]:
    return compiled(FILTER_SETS[name])


def _conditions(c: CCondition) -> Iterator[CRule]:
    if isinstance(c, CBool):
        for o in c.operands:
            yield from _conditions(o)
    elif isinstance(c, CNot):
        yield from _conditions(c.operand)
    else:
        yield c


def _cases() -> Iterator[tuple[bytes, Envelope, Connection]]:
    for raw in MESSAGES.values():
        for env in ENVELOPES:
            for conn in CONNECTIONS:
                yield raw, env, conn


def _outcome(fn: Any) -> tuple[Any, ...]:
    try:
        return ("value", fn())
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


def _traced_value(ctx: MessageContext, t: CRule) -> Any:
    try:
        return rules.evaluate(ctx, t).value
    except Unavailable:
        return False


def test_rules_are_all_present() -> None:
    assert len(list(_conditions_of(_filters("rules")))) >= len(RULES)


def _conditions_of(filters: tuple[CFilter, ...]) -> Iterator[CRule]:
    for f in filters:
        yield from _conditions(f.body.condition)


@pytest.mark.parametrize("name", FILTER_SETS)
def test_each_rule_same_value(name: str) -> None:
    tests = list(_conditions_of(_filters(name)))
    for raw, env, conn in _cases():
        for t in tests:
            traced = MessageContext(raw, env, conn)
            untraced = MessageContext(raw, env, conn)
            want = _outcome(lambda: _traced_value(traced, t))  # noqa: B023
            got = _outcome(lambda: predicate(t)(untraced))  # noqa: B023
            assert got == want, (t.sig.name, t.span)
            assert untraced.matched_content == traced.matched_content, (t.sig.name, t.span)
            assert untraced.defects == traced.defects


def _summary(res: StageResult, ctx: MessageContext) -> tuple[Any, ...]:
    # an untraced run lists only the filters that matched, acted or failed
    filters = [(f.name, f.matched, f.error, [a.render() for a in f.actions])
               for f in res.filters if f.matched or f.actions or f.error]
    return filters, res.plan, res.error, res.tempfail, ctx.as_bytes()


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time variables ($GMTimeStamp ...) fixed, so two runs a second apart write the same."""
    from runtime.engine import variables

    for name in ("date", "gmtimestamp", "time", "timestamp"):
        monkeypatch.setitem(variables._TABLE, name, lambda c: "Sun, 29 Nov 2026 09:00:00 +0000")


@pytest.mark.parametrize("name", FILTER_SETS)
@pytest.mark.parametrize("content", [False, True])
@pytest.mark.usefixtures("frozen_clock")
def test_stage_same_outcome(name: str, content: bool) -> None:
    filters = _filters(name)
    for raw, env, conn in _cases():
        traced = MessageContext(raw, env, conn)
        untraced = MessageContext(raw, env, conn)
        want = _summary(run_filters(filters, traced, content=content), traced)
        res = run_filters(filters, untraced, content=content, trace=False)
        assert _summary(res, untraced) == want
        assert all(not f.rules for f in res.filters)


_ADDRESS_TEXT = st.lists(st.sampled_from(list("ab.-_+@<> ,;:\"()[]\\\t") + ["x@y", "<a@b.c>", "é"]),
                         max_size=10).map("".join)


_ADDRESS_LIKE = st.tuples(st.sampled_from(["", "<", " <"]), st.text("ab.-_+", max_size=5),
                          st.sampled_from(["@", "@@", ""]), st.text("ab.-_", max_size=5),
                          st.sampled_from(["", ">", "> "])).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ADDRESS_TEXT | _ADDRESS_LIKE, max_size=3))
def test_address_count_matches_getaddresses(values: list[str]) -> None:
    assert count_addresses(values) == len([a for _, a in getaddresses(values) if a])


@pytest.mark.parametrize("values", [[], ["<b@example.org>"], ["a@x", "<b.c@d-e.f>"], ["a@x, b@y"],
                                    ["Name <a@x>"], ["<a@x"], ["a..b@x"], [".a@x"], ["a@x."]])
def test_address_count_examples(values: list[str]) -> None:
    assert count_addresses(values) == len([a for _, a in getaddresses(values) if a])


def test_a_part_said_to_hold_no_match_holds_none() -> None:
    # both engines use may_match, so it is checked against counting itself
    from runtime.engine import smartid
    from runtime.engine.rules.content import may_match, scan_set

    scans = [t for name in ("rules", "bench") for t in _conditions_of(_filters(name))
             if t.sig.name in ("body-contains", "only-body-contains", "attachment-contains")]
    said_no = 0
    for raw in MESSAGES.values():
        ctx = MessageContext(raw, ENVELOPES[0], CONNECTIONS[0])
        try:
            scanned = scan_set(ctx, body=True, attachments=True)
        except UnicodeError:
            continue
        for t in scans:
            candidate = may_match(t.args[0])
            assert candidate is not None
            for p in scanned:
                for small in (True, False):  # with and without the lower-cased copy
                    if not candidate(p, small):
                        said_no += 1
                        assert smartid.count(t.args[0], p.utf8)[0] == 0, (t.span, p.declared_type)
    assert said_no > 100
