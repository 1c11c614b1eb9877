"""The plain-header shortcut builds exactly what the standard header parser builds."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.engine.headerblock import parse_plain


def _parser(head: bytes) -> EmailMessage:
    msg = BytesHeaderParser(policy=email.policy.compat32, _class=EmailMessage).parsebytes(head)
    assert isinstance(msg, EmailMessage)
    return msg


def _same(head: bytes) -> bool:
    """True when the shortcut took the block; it must then equal the parser in every field."""
    fast = parse_plain(head)
    if fast is None:
        return False
    assert vars(fast) == vars(_parser(head))
    return True


@pytest.mark.parametrize("head", [
    b"From: <a@example.com>\r\nTo: <b@example.org>\r\n",
    b"Received: from vm\r\n\tby gw; Sun, 29 Nov 2026\r\nSubject:  spaced \r\nX-Empty:\r\n",
    b"Subject: unterminated",
    b"Subject: cr-ended\r",  # the block as MessageContext cuts it from a CRLF message
    b"Subject: lf\nTo: x\n \tfolded\n",
    b"Subject: \xc3\xa9t\xc3\xa9\r\nX-8bit: \xff\r\n",
    b"Subject: a\rTo: bare cr\r\n",
])
def test_plain_blocks_match_the_parser(head: bytes) -> None:
    assert _same(head)


@pytest.mark.parametrize("head", [
    b"From sender@example.com Sun Nov 29\r\nSubject: mbox\r\n",
    b" continued first\r\nSubject: x\r\n",
    b": no name\r\n",
    b"Subject x\r\n",
    b"Subject: a\r\n\r\nbody\r\n",
    b"Subject: form\x0cfeed\r\n",
])
def test_other_blocks_go_to_the_parser(head: bytes) -> None:
    assert parse_plain(head) is None


_PIECES = st.sampled_from([
    "Subject", "From", "From ", "To", "X-A", ":", ": ", " ", "\t", "\r\n", "\n", "\r", "value",
    "\x0b", "\x0c", "\x1c", "\x85", "é", "\xff", "a:b", "=?utf-8?q?x?=", "",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=24))
def test_any_block_matches_the_parser_when_taken(pieces: list[str]) -> None:
    _same("".join(pieces).encode("utf-8", "surrogateescape") if pieces else b"X: y")


_LINE = st.tuples(st.sampled_from(["Subject:", "To: ", "X-A:\t", " ", "\t", "From ", ":", "Bad"]),
                  st.text(st.sampled_from("ab :\t\r\né\x0b"), max_size=6),
                  st.sampled_from(["\r\n", "\n", "\r", ""]))


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=8))
def test_line_shaped_blocks_match_the_parser_when_taken(lines: list[tuple[str, str, str]]) -> None:
    _same("".join(a + b + c for a, b, c in lines).encode("utf-8"))


_FIELD = st.tuples(st.sampled_from(["Subject", "X-A", "To"]),
                   st.lists(st.text("ab ", min_size=1, max_size=5), min_size=1, max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(_FIELD, max_size=6), st.sampled_from([b"\r\n", b"\n"]))
def test_raw_fields_keep_every_byte_and_fold(fields: list[tuple[str, list[str]]], sep: bytes) -> None:
    """The raw field split that header edits rebuild from: continuation lines stay with their
    field and the fields join back to the block, byte for byte (it is built by joining each
    field's lines once, so a 5 MB folded field costs what its size says)."""
    from runtime.engine.context import raw_fields
    from smime.mime import _headers

    made = [f"{name}: {lines[0]}".encode() + b"".join(sep + b" " + x.encode() for x in lines[1:])
            for name, lines in fields]
    head = b"".join(f + sep for f in made)
    assert raw_fields(head) == [f + sep for f in made]
    if sep == b"\r\n":
        assert _headers(head) == made
