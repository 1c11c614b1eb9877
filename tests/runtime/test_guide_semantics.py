"""Semantics that follow the vendor's guide (issue 15 items 8-12), each through `filterlang test`.

Every case is a filter file and a message as an administrator would write them; the JSON trace
says which filters matched and `-o` gives the message as the gateway would deliver it.
"""

from __future__ import annotations

import base64
import json
from email import message_from_bytes
from pathlib import Path

import pytest

from runtime.commands.cli import main


def _run(tmp_path: Path, filters: str, message: str, *extra: str) -> dict[str, object]:
    (tmp_path / "f.filter").write_text(filters, encoding="utf-8")
    (tmp_path / "m.eml").write_bytes(message.replace("\n", "\r\n").encode("utf-8"))
    argv = ["test", str(tmp_path / "f.filter"), str(tmp_path / "m.eml"), "--json", *extra]
    assert main(argv) == 0
    return dict(json.loads(_captured.readouterr().out))


def _matched(trace: dict[str, object]) -> list[str]:
    return [f["name"] for f in trace["filters"] if f["matched"]]  # type: ignore[attr-defined, index]


_captured: pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str]) -> None:
    global _captured
    _captured = capsys


MIXED = """Subject: minutes
From: alice@example.org
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: multipart/alternative; boundary="b2"

--b2
Content-Type: text/plain

the minutes are attached
--b2
Content-Type: text/html

<p>the minutes are attached</p>
--b2--
--b1
Content-Type: image/png; name="chart.png"
Content-Disposition: inline; filename="chart.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b1
Content-Type: text/plain

-- list footer: UNSUBSCRIBE at lists.example.org
--b1--
"""

BODY_FILTERS = """\
footer_in_body: if only-body-contains('UNSUBSCRIBE') { no-op(); }
footer_in_attachment: if attachment-contains('UNSUBSCRIBE') { no-op(); }
html_in_body: if only-body-contains('<p>the minutes') { no-op(); }
"""


def test_8_body_is_the_first_text_part_and_later_text_parts_are_attachments(tmp_path: Path) -> None:
    # The guide: the body is the first text part, "any additional MIME parts" are attachments;
    # the HTML rendering of the same text (multipart/alternative) is still the body.
    trace = _run(tmp_path, BODY_FILTERS, MIXED)
    assert _matched(trace) == ["footer_in_attachment", "html_in_body"]


NAME_FILTER = "padded_exe: if attachment-filename == '(?i)\\\\.exe\\\\s+$' { no-op(); }\n" \
              "plain_exe: if attachment-filename == '(?i)\\\\.exe$' { no-op(); }\n"


def _with_attachment(disposition: str) -> str:
    data = base64.b64encode(b"MZ\x90\x00").decode()
    return ("Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
            "--b1\nContent-Type: text/plain\n\nsee attached\n"
            f"--b1\nContent-Type: application/octet-stream\nContent-Disposition: {disposition}\n"
            f"Content-Transfer-Encoding: base64\n\n{data}\n--b1--\n")


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="evil.exe "',  # quoted
        "attachment; filename*=utf-8''evil.exe%20",  # RFC 2231
        'attachment; filename="=?utf-8?q?evil.exe_?="',  # RFC 2047
    ],
    ids=["quoted", "rfc2231", "rfc2047"],
)
def test_9_attachment_names_keep_their_whitespace_in_every_encoding(
    tmp_path: Path, disposition: str
) -> None:
    trace = _run(tmp_path, NAME_FILTER, _with_attachment(disposition))
    assert _matched(trace) == ["padded_exe"]


def test_10_attachment_type_is_guessed_from_the_extension_without_a_content_type(
    tmp_path: Path,
) -> None:
    message = ("Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
               "--b1\nContent-Type: text/plain\n\nsee attached\n"
               "--b1\nContent-Disposition: attachment; filename=\"report.pdf\"\n\n%PDF-1.4\n--b1--\n")
    filters = "is_pdf: if attachment-type == 'application/pdf' { no-op(); }\n"
    assert _matched(_run(tmp_path, filters, message)) == ["is_pdf"]


def test_11_non_ascii_header_values_are_q_encoded_words(tmp_path: Path) -> None:
    filters = ("tag: if true { strip-header('Subject'); "
               "insert-header('Subject', '[EXTERNE] $Subject'); "
               "insert-header('X-Note', 'Проверено шлюзом'); }\n")
    _run(tmp_path, filters, "Subject: =?utf-8?q?R=C3=A9union?=\n\nhello\n", "-o", str(tmp_path / "out"))
    written = (tmp_path / "out" / "m.eml").read_bytes()
    head = written.split(b"\r\n\r\n")[0] if b"\r\n\r\n" in written else written.split(b"\n\n")[0]
    assert b"=?utf-8?q?" in head and b"=?utf-8?b?" not in head.lower()
    msg = message_from_bytes(written)
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(msg["Subject"]))) == "[EXTERNE] Réunion"
    assert str(make_header(decode_header(msg["X-Note"]))) == "Проверено шлюзом"


@pytest.mark.parametrize("sender", ["<>", ""])
def test_12_smtp_null_sender_in_filterlang_test(tmp_path: Path, sender: str) -> None:
    filters = "bounce_message: if mail-from == '^$' { no-op(); }\n"
    trace = _run(tmp_path, filters, "Subject: x\n\nhello\n", "--mail-from", sender)
    assert _matched(trace) == ["bounce_message"]


def test_12_smtp_null_sender_in_suites(tmp_path: Path) -> None:
    (tmp_path / "f.filter").write_text("bounce_message: if mail-from == '^$' { no-op(); }\n")
    (tmp_path / "s.toml").write_text(
        'filters = ["f.filter"]\n[[case]]\nname = "null sender"\nmail_from = "<>"\n'
        "raw = '''Subject: x\n\nhello\n'''\n[case.expect]\nmatched = [\"bounce_message\"]\n"
    )
    assert main(["test", "--suite", str(tmp_path / "s.toml")]) == 0
