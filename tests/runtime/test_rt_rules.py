"""At least one case per rule of reference 6.2 that needs no outside service (message in, value out)."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from rt_helpers import matched, mime, msg

from runtime.engine.resources import Dictionary, Resources

PLAIN = msg("Subject: Re: quarterly report\nFrom: Boss <boss@example.com>\nTo: a@x.example, b@y.example\n"
            "Cc: c@z.example\nX-Prio: high\n", "Company Confidential\nline two\ncompany confidential\n")


def _zip(encrypted: bool) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner/tool.exe", b"MZ" + b"\0" * 40)
    data = bytearray(buf.getvalue())
    if encrypted:
        data[6] |= 1
        data[data.find(b"PK\x01\x02") + 8] |= 1
    return base64.encodebytes(bytes(data)).decode()


EXE = base64.encodebytes(b"MZ\x90\x00" + b"\0" * 60).decode()
ATTACHED = mime(
    ("Content-Type: text/plain", "Please see the report. Card 4111 1111 1111 1111 and SSN 123-45-6789."),
    ("Content-Type: application/octet-stream; name=\"run.exe\"\nContent-Disposition: attachment; "
     "filename=\"run.exe\"\nContent-Transfer-Encoding: base64", EXE),
    ("Content-Type: application/zip; name=\"s.zip\"\nContent-Disposition: attachment; filename=\"s.zip\"\n"
     "Content-Transfer-Encoding: base64", _zip(True)),
    ("Content-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment; filename=\"notes.txt\"",
     "secret plan\nsecret again"),
)
RES = Resources(dictionaries={
    "Words": Dictionary("Words", (("confidential", 1), ("report", 2))),
    "Addrs": Dictionary("Addrs", (("@example.com", 1),)),
    "Names": Dictionary("Names", (("run.exe", 1),)),
})

CASES: list[tuple[str, bytes, dict[str, object], bool]] = [
    ("mail-from == '^SENDER@'", PLAIN, {}, True),  # case-insensitive
    ("mail-from == '^$'", PLAIN, {"mail_from": ""}, True),
    ("rcpt-to == '@y\\\\.example$'", PLAIN, {"rcpt": ("a@x.example", "b@y.example")}, True),
    ("rcpt-to != '@x\\\\.example$'", PLAIN, {"rcpt": ("a@x.example", "b@y.example")}, True),
    ("rcpt-count > 1", PLAIN, {"rcpt": ("a@x", "b@y")}, True),
    ("remote-ip == '10.1.1.0/24'", PLAIN, {"remote_ip": "10.1.1.7"}, True),
    ("remote-ip == '10.1.1.50-55'", PLAIN, {"remote_ip": "10.1.1.56"}, False),
    ("remote-ip == '10.2.3.'", PLAIN, {"remote_ip": "10.2.3.9"}, True),
    ("remote-ip == '2001:db8::/32, 10.0.0.1'", PLAIN, {"remote_ip": "2001:db8::5"}, True),
    ("recv-listener == 'Inbound'", PLAIN, {"listener": "Inbound"}, True),
    ("recv-listener == 'inbound'", PLAIN, {"listener": "Inbound"}, False),  # names case-sensitive
    ("recv-int == 'Data1'", PLAIN, {"interface": "Data1"}, True),
    ("sendergroup == '^TRUST'", PLAIN, {"sender_group": "TRUSTED"}, True),
    ("smtp-auth-id-matches('*EnvelopeFrom')", PLAIN, {"auth_user": "sender"}, True),
    ("smtp-auth-id-matches('*EnvelopeFrom')", PLAIN,
     {"auth_user": "joe", "mail_from": "joe+folder@example.com"}, False),
    ("smtp-auth-id-matches('*EnvelopeFrom', '+')", PLAIN,
     {"auth_user": "joe", "mail_from": "joe+folder@example.com"}, True),
    ("smtp-auth-id-matches('*FromAddress')", PLAIN, {"auth_user": "boss@example.com"}, True),
    ("smtp-auth-id-matches('*None')", PLAIN, {}, True),
    ("smtp-auth-id-matches('*Any')", PLAIN, {"auth_user": "x"}, True),
    ("subject == '^Re:'", PLAIN, {}, True),
    ("subject == '^re:'", PLAIN, {}, False),  # case-sensitive
    ("subject == '^$'", msg("From: a@b\n"), {}, True),  # missing subject is ""
    ("header('X-Prio')", PLAIN, {}, True),
    ("header('x-prio') == 'high'", PLAIN, {}, True),
    ("header('X-Missing') != '.'", PLAIN, {}, True),
    ("header('X-Missing') == '.'", PLAIN, {}, False),
    ("addr-count('To', 'Cc') >= 3", PLAIN, {}, True),
    ("malformed-header", b"Subject: x\r\nBad Line Here\r\n\r\nbody\r\n", {}, True),
    ("malformed-header", PLAIN, {}, False),
    ("body-size > 100", PLAIN, {}, True),
    ("body-size < 1k", PLAIN, {}, True),
    ("date > '01/01/2000 00:00:00'", PLAIN, {}, True),
    ("random(1) == 0", PLAIN, {}, True),
    ("true", PLAIN, {}, True),
    ("valid", PLAIN, {}, True),
    ("body-contains('(?i)company confidential', 2)", PLAIN, {}, True),
    ("body-contains('(?i)company confidential', 3)", PLAIN, {}, False),
    ("body-contains('line.two')", PLAIN, {}, True),
    ("body-contains('confidential\\\\sline')", PLAIN, {}, False),  # no multi-line matches
    ("body-contains('secret')", ATTACHED, {}, True),  # body + attachments
    ("only-body-contains('secret')", ATTACHED, {}, False),
    ("only-body-contains('*credit')", ATTACHED, {}, True),
    ("only-body-contains('*ssn')", ATTACHED, {}, True),
    ("attachment-contains('secret', 2)", ATTACHED, {}, True),
    ("every-attachment-contains('secret')", ATTACHED, {}, False),
    ("attachment-binary-contains('\\\\x4d\\\\x5a')", ATTACHED, {}, True),
    ("attachment-filename == '\\\\.exe$'", ATTACHED, {}, True),
    ("attachment-filename == 'tool\\\\.exe$'", ATTACHED, {}, True),  # member names of an encrypted zip are readable
    ("attachment-filename == '\\\\.EXE$'", ATTACHED, {}, False),
    ("attachment-type == 'application/*'", ATTACHED, {}, True),
    ("attachment-mimetype == 'application/zip'", ATTACHED, {}, True),
    ("attachment-filetype == 'Executable'", ATTACHED, {}, True),
    ("attachment-filetype == 'pdf'", ATTACHED, {}, False),
    ("attachment-size > 10", ATTACHED, {}, True),
    ("attachment-size > 1M", ATTACHED, {}, False),
    ("attachment-protected", ATTACHED, {}, True),
    ("attachment-unprotected", ATTACHED, {}, True),
    ("attachment-corrupt", ATTACHED, {}, False),
    ("encrypted", msg("Subject: x\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\n"), {}, True),
    ("encrypted", ATTACHED, {}, False),
    ("signed", PLAIN, {}, False),
    ("signed-certificate('signer')", PLAIN, {}, False),
    ("dictionary-match('Words', 2)", PLAIN, {"resources": RES}, True),
    ("dictionary-match('Words', 3)", PLAIN, {"resources": RES}, False),  # headers not scanned
    ("body-dictionary-match('Words')", PLAIN, {"resources": RES}, True),
    ("attachment-dictionary-match('Words')", PLAIN, {"resources": RES}, False),
    ("dictionary-match('Nope')", PLAIN, {"resources": RES}, False),  # missing dictionary: false
    ("subject-dictionary-match('Words')", PLAIN, {"resources": RES}, True),
    ("header-dictionary-match('Words', 'subject')", PLAIN, {"resources": RES}, True),
    ("mail-from-dictionary-match('Addrs')", PLAIN, {"resources": RES}, True),
    # The optional count threshold of every dictionary rule (issue 15): the score must reach it.
    ("subject-dictionary-match('Words', 2)", PLAIN, {"resources": RES}, True),
    ("subject-dictionary-match('Words', 3)", PLAIN, {"resources": RES}, False),
    ("header-dictionary-match('Words', 'subject', 2)", PLAIN, {"resources": RES}, True),
    ("header-dictionary-match('Words', 'subject', 3)", PLAIN, {"resources": RES}, False),
    ("mail-from-dictionary-match('Addrs', 1)", PLAIN, {"resources": RES}, True),
    ("mail-from-dictionary-match('Addrs', 2)", PLAIN, {"resources": RES}, False),
    ("rcpt-to-dictionary-match('Addrs', 2)", PLAIN, {"resources": RES, "rcpt": ("x@example.com",)}, False),
    ("attachment-filename-dictionary-match('Names', 2)", ATTACHED, {"resources": RES}, False),
    ("rcpt-to-dictionary-match('Addrs')", PLAIN, {"resources": RES, "rcpt": ("x@other.example",)}, False),
    ("duplicate_boundaries", PLAIN, {}, False),
    ("attachment-filename-dictionary-match('Names')", ATTACHED, {"resources": RES}, True),
    ("attachment-filename-dictionary-match('Words')", ATTACHED, {"resources": RES}, False),
    ("attachment-filename-dictionary-match('Names')", PLAIN, {"resources": RES}, False),
]


@pytest.mark.parametrize(("cond", "raw", "kw", "expected"), CASES,
                         ids=[f"{i}:{c[0][:40]}" for i, c in enumerate(CASES)])
def test_rule(cond: str, raw: bytes, kw: dict[str, object], expected: bool) -> None:
    src = f"f: if {cond} {{ no-op(); }}\n"
    assert matched(src, raw, **kw) is expected


@pytest.mark.parametrize("state,message,verified", [
    ("none", False, False), ("failed", True, False), ("verified:a@x.example", True, True)])
def test_smime_gateway_rules(state: str, message: bool, verified: bool) -> None:
    from runtime.engine.context import SmimeState

    s = SmimeState.parse(state)
    assert matched("f: if smime-gateway-message { no-op(); }", PLAIN, smime=s) is message
    assert matched("f: if smime-gateway-verified { no-op(); }", PLAIN, smime=s) is verified
    # the gateway removed the signature: signed-certificate falls back to its signer list
    assert matched("f: if signed-certificate('signer') == '@x\\\\.example$' { no-op(); }", PLAIN,
                   smime=s) is verified


@pytest.mark.parametrize("cond", ["reputation < 0", "no-reputation", "dnslist('zone.example')",
                                  "spf-passed", "spf-status == 'Pass'", "dkim-authentication == 'pass'",
                                  "mail-from-group == 'G'", "rcpt-to-group == 'G'",
                                  "url-category(['Malware'], '')", "image-verdict == 'suspect'",
                                  "message-language == 'English'", "forged-email-detection('D', 90)",
                                  "workqueue-count > 5", "header-repeats('subject', 2)"])
def test_service_rules_without_provider_are_false_and_say_so(cond: str) -> None:
    from rt_helpers import run

    t = run(f"f: if {cond} {{ no-op(); }}", PLAIN)
    tr = t.message_filters.filters[0]
    assert tr.matched is False and tr.error is None
    assert "unavailable" in tr.rules[0].note


def test_service_rules_use_their_provider() -> None:
    from runtime.engine.services import Services

    class Rep:
        def score(self, ip: str) -> float | None:
            return -8.0

    counters: dict[str, int] = {}
    s = Services(reputation=Rep(), counters=counters)
    assert matched("f: if reputation < -7.5 { no-op(); }", PLAIN, services=s)
    assert not matched("f: if no-reputation { no-op(); }", PLAIN, services=s)
    assert not matched("f: if header-repeats('subject', 2) { no-op(); }", PLAIN, services=s)
    assert matched("f: if header-repeats('subject', 2) { no-op(); }", PLAIN, services=s)


def test_header_repeats_is_evaluated_last_and_not_counted_when_skipped() -> None:
    from runtime.engine.services import Services

    counters: dict[str, int] = {}
    s = Services(counters=counters)
    matched("f: if header-repeats('subject', 1) and subject == 'nomatch' { no-op(); }", PLAIN, services=s)
    assert counters == {}


def test_content_scans_open_archives_recursively() -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep.txt", "the launch code is hidden here")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
    raw = mime(("Content-Type: text/plain", "see attachment"),
               ("Content-Type: application/zip; name=\"o.zip\"\nContent-Disposition: attachment; "
                "filename=\"o.zip\"\nContent-Transfer-Encoding: base64",
                base64.encodebytes(outer.getvalue()).decode()))
    assert matched("f: if attachment-contains('launch code') { no-op(); }", raw)
    assert matched("f: if body-contains('launch code') { no-op(); }", raw)
    assert not matched("f: if only-body-contains('launch code') { no-op(); }", raw)


def test_smime_gateway_unauthenticated_offline() -> None:
    """The offline runner's --smime-state form reaches the rule (issue 13 item 4)."""
    from runtime.engine.context import SmimeState

    state = SmimeState.parse("unauthenticated")
    assert (state.processed, state.verified, state.unauthenticated) == (True, False, True)
    assert not SmimeState.parse("failed").unauthenticated
