"""At least one case per action of reference 7.1, and the plan semantics of 4.2-4.7."""

from __future__ import annotations

import base64
import email
import email.policy
from pathlib import Path

import pytest
from rt_helpers import mime, msg, run

from runtime.engine.resources import Resources

EXE = base64.encodebytes(b"MZ\x90\x00" + b"\0" * 60).decode()
WITH_EXE = mime(("Content-Type: text/plain", "body text here"),
                ("Content-Type: application/octet-stream; name=\"a.exe\"\n"
                 "Content-Disposition: attachment; filename=\"a.exe\"\nContent-Transfer-Encoding: base64", EXE))


def parsed(data: bytes) -> email.message.EmailMessage:
    m = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(m, email.message.EmailMessage)
    return m


@pytest.mark.parametrize("action,disposition", [
    ("skip-filters()", "deliver"), ("deliver()", "deliver"), ("drop()", "drop"),
    # Without a gateway configuration there is no encryption profile and no sending profile:
    # the gateway's stages bounce what asks for one, and so does the offline run.
    ("bounce()", "bounce"), ("encrypt('Prof')", "bounce"), ("smime-gateway('sign')", "bounce"),
])
def test_final_actions_end_the_stage(action: str, disposition: str) -> None:
    t = run(f"a: if true {{ {action}; }}\nb: if true {{ insert-header('X-B', '1'); }}\n", msg())
    assert t.message_filters.filters[1].skipped == "after a final action"
    assert t.recipients == {"rcpt@example.com": disposition}


def test_statements_after_a_final_action_never_run() -> None:
    # in one block the checker refuses them (F401), so the runtime never sees such a file ...
    with pytest.raises(AssertionError, match="F401"):
        run("a: if true { drop(); insert-header('X-After', '1'); }", msg())
    # ... across nested blocks the final action still ends the filter at run time
    t = run("a: if true { if true { drop(); } insert-header('X-After', '1'); }", msg())
    assert [a.name for a in t.message_filters.filters[0].actions] == ["drop"]


def test_non_final_actions_accumulate_and_slots_take_the_last() -> None:
    src = ("a: if true { quarantine('Q1'); alt-mailhost('h1'); bcc('x@a'); html-convert(); }\n"
           "b: if true { quarantine('Q2'); alt-mailhost('[10.0.0.1]'); bcc('y@a'); html-convert(); }\n")
    t = run(src, msg())
    plan = t.message_filters.plan
    assert plan.slot("quarantine") == "Q2" and plan.slot("alt-mailhost") == "[10.0.0.1]"
    assert [c.target for c in plan.copies] == ["x@a", "y@a"]
    assert plan.flags == {"html-convert"}
    assert t.recipients == {"rcpt@example.com": "quarantine(Q2)"}


def test_drop_takes_precedence_over_quarantine_and_copies_survive() -> None:
    t = run("a: if true { quarantine('Q'); bcc('x@a'); drop(); }", msg())
    assert t.recipients == {"rcpt@example.com": "drop"}
    assert len(t.message_filters.plan.copies) == 1


def test_smime_gateway_final_without_the_profile_bounces_with_the_gateways_reason() -> None:
    # (with a configured profile the protected message goes to the quarantine first:
    # tests/runtime/test_rt_cli_test.py runs that through `filterlang test -c`)
    t = run("a: if true { quarantine('Q'); smime-gateway('P'); }", msg())
    assert t.recipients == {"rcpt@example.com": "bounce"}
    assert "no sending profile 'P' is configured" in t.bounce_reasons["rcpt@example.com"]


def test_encrypt_without_a_configured_profile_bounces_as_in_the_gateway() -> None:
    t = run("a: if true { encrypt('Prof'); }", msg())
    assert t.recipients == {"rcpt@example.com": "bounce"}
    assert "no encryption profile 'Prof' is configured" in t.bounce_reasons["rcpt@example.com"]


def test_header_edits_are_visible_to_later_rules() -> None:
    src = ("a: if true { insert-header('X-Seen', 'yes'); }\n"
           "b: if header('X-Seen') == 'yes' { strip-header('Subject'); }\n"
           "c: if subject == '^$' { insert-header('X-NoSubject', '1'); }\n")
    t = run(src, msg())
    out = parsed(t.result)
    assert out["X-Seen"] == "yes" and out["Subject"] is None and out["X-NoSubject"] == "1"


def test_edit_header_text_and_edit_body_text() -> None:
    src = ("a: if true { edit-header-text('Subject', '^(.*)$', '[EXT] \\\\1');"
           " edit-body-text('secret', 'XXXX'); }")
    t = run(src, msg(body="a secret word\n"))
    out = parsed(t.result)
    assert out["Subject"] == "[EXT] test"
    assert "XXXX" in out.get_content() and "secret" not in out.get_content()


def test_drop_attachments_with_comment_and_dropped_variables() -> None:
    src = ("a: if attachment-filetype == 'Executable' {"
           " drop-attachments-by-filetype('Executable', 'Removed: $dropped_filenames');"
           " log-entry('dropped $dropped_filename'); }")
    t = run(src, WITH_EXE)
    out = parsed(t.result)
    texts = [p.get_content().strip() for p in out.walk() if p.get_content_type() == "text/plain"]
    assert "Removed: a.exe" in texts
    assert not any(p.get_filename() == "a.exe" for p in out.walk())
    assert t.log == ["MID 1 Custom Log Entry: dropped a.exe"]


@pytest.mark.parametrize("action", [
    "drop-attachments-by-name('\\\\.exe$')", "drop-attachments-by-type('application/*')",
    "drop-attachments-by-mimetype('application/octet-stream')", "drop-attachments-by-size(10)",
    "drop-attachments-where-contains('\\\\x00', 'gone')",
])
def test_every_drop_attachments_variant_removes_the_exe(action: str) -> None:
    t = run(f"a: if true {{ {action}; }}", WITH_EXE)
    out = parsed(t.result)
    assert not any(p.get_filename() == "a.exe" for p in out.walk())


def test_add_footer_and_heading_and_html_convert() -> None:
    res = Resources(texts={"foot": "-- checked for $EnvelopeFrom", "head": "EXTERNAL"})
    raw = mime(("Content-Type: text/html", "<html><body><p>Hi <b>there</b></p></body></html>"))
    t = run("a: if true { add-footer('foot'); add-heading('head'); html-convert(); }", raw,
            resources=res)
    out = parsed(t.result)
    body = next(p for p in out.walk() if p.get_content_maintype() == "text")
    text = body.get_content()
    assert body.get_content_type() == "text/plain"
    assert "<b>" not in text and "Hi there" in text
    assert text.index("EXTERNAL") < text.index("Hi there") < text.index("checked for sender@example.com")


def test_archive_writes_mbox(tmp_path: Path) -> None:
    res = Resources(archive_dir=tmp_path)
    run("a: if true { archive('arch'); archive('arch'); }", msg(body="From here\n"), resources=res)
    data = (tmp_path / "arch.mbox").read_bytes()
    assert data.count(b"\nFrom sender@example.com ") + data.startswith(b"From sender") == 2
    assert b">From here" in data


def test_copies_notify_and_duplicate_quarantine_are_taken_as_the_message_stands() -> None:
    src = ("a: if true { insert-header('X-1', 'a'); duplicate-quarantine('Dup');"
           " notify('$EnvelopeFrom', 'About $Subject'); bcc-scan('s@x'); notify-copy('n@x');"
           " insert-header('X-2', 'b'); }")
    t = run(src, msg())
    copies = {c.kind + ":" + c.target: c for c in t.message_filters.plan.copies}
    dup = parsed(copies["duplicate-quarantine:Dup"].data)
    assert dup["X-1"] == "a" and dup["X-2"] is None
    note = parsed(copies["notify:sender@example.com"].data)
    assert note["Subject"] == "About test" and "Filter a matched" in note.get_content()
    assert "bcc-scan:s@x" in copies and "notify:n@x" in copies and "bcc-scan:n@x" in copies


@pytest.mark.parametrize("action", [
    "alt-rcpt-to('new@example.com')", "alt-mailhost('mx.example')", "alt-src-host('Out1')",
    "bounce-profile('bp')", "encrypt-deferred('P')", "smime-gateway-deferred('S')",
    "skip-spamcheck()", "skip-viruscheck()", "skip-ampcheck()", "skip-vofcheck()",
    "skip-marketingcheck()", "skip-socialcheck()", "skip-bulkcheck()", "tag-message('t1')",
    "no-op()", "insert-header('X-N', 'v')",
])
def test_recorded_actions_appear_in_the_plan_and_trace(action: str) -> None:
    t = run(f"a: if true {{ {action}; }}", msg())
    name = action.split("(")[0]
    assert [a.name for a in t.message_filters.filters[0].actions] == [name]
    if name == "alt-rcpt-to":
        assert list(t.recipients) == ["new@example.com"]


def test_runtime_error_marks_the_filter_and_discards_accumulated_actions() -> None:
    src = ("a: if true { insert-header('X-A', '1'); }\n"
           "b: if remote-ip == '10.0.0.0/8' { drop(); }\n"
           "c: if true { insert-header('X-C', '1'); }\n")
    t = run(src, msg(), remote_ip="not-an-address")  # a fact the rule cannot read (4.7)
    f = t.message_filters.filters
    assert f[1].error is not None and len(f) == 2  # c never ran
    assert t.recipients == {"rcpt@example.com": "deliver"}
    out = parsed(t.result)
    assert out["X-A"] is None and out["Subject"] == "test"  # the message is never lost


def test_nested_if_sees_effects_of_earlier_actions_in_the_block() -> None:
    t = run("a: if true { insert-header('X-Mark', '1'); if header('X-Mark') { tag-message('m'); } }", msg())
    assert t.message_filters.plan.tags == ["m"]


def test_uuencoded_block_in_body_is_an_attachment_and_can_be_dropped() -> None:
    import binascii

    block = "begin 644 evil.exe\n" + binascii.b2a_uu(b"MZ\x90\x00payload").decode() + "`\nend\n"
    raw = msg(body="hello\n" + block + "bye\n")
    t = run("a: if attachment-filename == '\\\\.exe$' { drop-attachments-by-name('\\\\.exe$', 'cut'); }", raw)
    assert t.message_filters.filters[0].matched
    body = parsed(t.result).get_content()
    assert "begin 644" not in body and "cut" in body and "hello" in body and "bye" in body


def test_on_filter_error_tempfail_requeues_the_message() -> None:
    from rt_helpers import compiled

    from runtime.engine.context import Connection, Envelope
    from runtime.pipeline.offline import simulate

    # a connection fact the rule cannot read is a runtime error (reference 4.7)
    t = simulate(msg(), Envelope.simple("a@b", ["c@d"]),
                 filters=compiled("b: if remote-ip == '10.0.0.0/8' { drop(); }"),
                 connection=Connection(remote_ip="not-an-address"), on_error="tempfail")
    assert t.recipients == {"c@d": "tempfail"} and t.result == msg()


CF_MARK = "content-filter cf:\n  direction incoming\n  if true { insert-header('X-CF', 'ran'); }\n"


@pytest.mark.parametrize("action,pipeline_runs", [
    ("skip-filters()", True), ("deliver()", True), ("drop()", False), ("bounce()", False),
    ("encrypt('Prof')", False), ("smime-gateway('sign')", False),
])
def test_final_action_table_of_4_4_decides_whether_the_pipeline_runs(action: str,
                                                                     pipeline_runs: bool) -> None:
    t = run(f"a: if true {{ insert-header('X-A', '1'); {action}; }}\n" + CF_MARK, msg())
    stage = t.splinters[0].stage
    assert (stage is not None) is pipeline_runs
    if pipeline_runs:  # accumulated edits take effect and content filters see them
        assert b"X-A: 1" in next(iter(t.results.values())) and b"X-CF: ran" in next(iter(t.results.values()))


def _encoded_lines(data: bytes) -> list[bytes]:
    """The body lines of every quoted-printable or base64 leaf part of `data`."""
    out: list[bytes] = []
    for p in email.message_from_bytes(data, policy=email.policy.compat32).walk():
        if p.get("Content-Transfer-Encoding", "").lower() in ("quoted-printable", "base64"):
            out += str(p.get_payload()).encode().splitlines()
    return out


@pytest.mark.parametrize("action", [
    "add-footer('foot')", "add-heading('foot')", "edit-body-text('ok', 'fine')",
    "html-convert()", "drop-attachments-by-name('a\\\\.exe', $Long)",
])
def test_every_body_writer_writes_valid_transfer_encoding(action: str) -> None:
    """RFC 2045 6.7: encoded lines of at most 76 characters (add-footer wrote 78), and the
    text decodes back to what the action meant."""
    long = "Caf\u00e9 " + "x" * 120
    res = Resources(texts={"foot": "-- " + long})
    text = mime(("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit",
                 f"<html><body><p>ok {long}</p></body></html>")) if "html" in action else mime(
        ("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit", f"ok {long}"),
        ("Content-Type: application/octet-stream; name=\"a.exe\"\n"
         "Content-Disposition: attachment; filename=\"a.exe\"\nContent-Transfer-Encoding: base64",
         EXE))
    t = run(f"a: if true {{ {action.replace('$Long', repr(long))}; }}", text, resources=res)
    lines = _encoded_lines(t.result)
    assert lines and max(len(line) for line in lines) <= 76, lines
    decoded = "".join(p.get_content() for p in parsed(t.result).walk()
                      if p.get_content_maintype() == "text")
    assert long in decoded


def test_body_edit_keeps_the_received_header_lines() -> None:
    """A body edit re-serialises the MIME tree; the top-level fields it did not change keep
    their bytes (folding, spacing, order), only Content-* come from the edit (issue 13)."""
    head = ("Subject:no space\nX-Long: one two three four five six seven eight nine ten eleven "
            "twelve thirteen fourteen fifteen sixteen\n\tseventeen\nFrom: a@example.com\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n")
    res = Resources(texts={"foot": "-- footer"})
    t = run("a: if true { add-footer('foot'); insert-header('X-After', 'yes'); }",
            (head + "\nhello\n").encode(), resources=res)
    out = t.result.replace(b"\r\n", b"\n")
    kept = head.split("MIME-Version")[0].encode()
    assert out.startswith(kept), out
    assert out.split(b"\n\n", 1)[0].endswith(b"X-After: yes")
    assert b"-- footer" in out
