"""smime.mime.HEADER_POLICY remembers the header objects of email.policy.default's registry:
what it answers must be what policy.default answers, value for value (issue 12 speed)."""

from __future__ import annotations

import email.policy
import tracemalloc

import pytest

from smime import mime

VALUES = [
    ("From", "Alice <alice@example.com>"),
    ("From", "<sales@partner1.example.net>"),
    ("from", "<sales@partner1.example.net>"),
    ("From", "eve@evil.example)<alice@example.com>"),
    ("From", "a@example.com, b@example.com"),
    ("From", "group: a@example.com;"),
    ("From", "=?utf-8?q?J=C3=B6rg?= <jorg@example.de>"),
    ("From", ""),
    ("Sender", "a@"),
    ("Content-Type", 'multipart/signed; protocol="application/pkcs7-signature"; '
                     'micalg=sha-256; boundary="----=_b1"'),
    ("Content-Type", 'application/pkcs7-signature; name="smime.p7s"'),
    ("Content-Type", "text/plain; charset=us-ascii"),
    ("Content-Type", "text/plain; (comment) charset=\"a;b\"; x*=utf-8''%41"),
    ("Content-Type", "bogus"),
    ("Content-Type", "text/plain; name*0*=\"x\x00''a\"; name*1=b"),  # the registry raised
    ("Subject", "x" * 900),  # longer than what is kept: parsed each time
    ("From", "x " * 40 + "<a@example.com>"),  # more pieces than are kept: parsed each time
]


def _view(header: str) -> tuple[object, ...]:
    return ([c.__name__ for c in type(header).__mro__], header.name,  # type: ignore[attr-defined]
            str(header),
            [(type(d), str(d)) for d in header.defects],  # type: ignore[attr-defined]
            [(g.display_name, [a.addr_spec for a in g.addresses])
             for g in getattr(header, "groups", ())],
            getattr(header, "content_type", None), dict(getattr(header, "params", {})))


@pytest.mark.parametrize(("name", "value"), VALUES)
def test_the_same_answer_as_policy_default(name: str, value: str) -> None:
    try:
        want = _view(email.policy.default.header_fetch_parse(name, value))
    except Exception:  # noqa: BLE001 - the registry raises many kinds (see mailboxes)
        for _ in range(2):  # where the registry raises, the value is read as text
            assert mime.HEADER_POLICY.header_fetch_parse(name, value) == value
        return
    first = mime.HEADER_POLICY.header_fetch_parse(name, value)
    again = mime.HEADER_POLICY.header_fetch_parse(name, value)
    assert _view(first) == want and _view(again) == want
    if len(value) <= mime._ParsedHeaders.MAX_VALUE and len(value.split()) < 30:
        assert again is first  # remembered


COSTLY = [
    ("From", "x " * 600 + "<alice@example.com>"),  # 3.2 MB and 77 ms to parse
    ("From", "a" * 1000 + "@example.com"),  # longer than RFC 5322's line limit
    ("Content-Type", "multipart/signed; " + "a=b; " * 2000),  # 10 MB and a second
]


@pytest.mark.parametrize(("name", "value"), COSTLY, ids=["words", "long", "params"])
def test_a_value_too_costly_to_parse_is_read_as_text(name: str, value: str) -> None:
    tracemalloc.start()
    try:
        got = mime.HEADER_POLICY.header_fetch_parse(name, value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == value and not hasattr(got, "defects")
    assert peak < 100_000


def test_a_from_too_costly_to_parse_is_never_bound() -> None:
    # A mail client shows some address for it; we do not parse it, so nothing is bound.
    msg = (b"From: " + b"x " * 600 + b"<alice@example.com>\r\nTo: b@example.org\r\n"
           b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
           b'micalg=sha-256; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
           b'--b1\r\nContent-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b1--\r\n")
    found = mime.locate_signed(msg)
    assert (found.from_address, found.from_unparseable) == (None, True)


def test_locate_signed_reads_as_before() -> None:
    msg = (b"From: <sales@partner1.example.net>\r\nSender: a@\r\nTo: b@example.org\r\n"
           b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
           b'micalg=sha-256; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
           b'--b1\r\nContent-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b1--\r\n")
    for _ in range(2):
        found = mime.locate_signed(msg)
        assert (found.form, found.der, found.signed_part, found.from_address,
                found.from_count, found.sender_address, found.from_unparseable) == (
            "detached", b"0\x00", b"Content-Type: text/plain\r\n\r\nhi",
            "sales@partner1.example.net", 1, None, False)


HEADS = [
    b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="b"',
    b"Content-Type: application/pkcs7-mime; smime-type=Signed-Data; name=smime.p7m",
    b"Content-Type: text/plain\r\nContent-Type: application/pkcs7-mime",
    b"Subject: no type",
    b"Content-Type: bogus; smime-type",
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nX: "
    + b"y" * 20000,  # larger than what is remembered
]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("param", ["smime-type", "protocol"])
def test_content_type_memo_answers_as_a_fresh_parse(head: bytes, param: str) -> None:
    from smime import compose

    want = compose._parse_content_type(head, param)
    assert [compose._content_type(head, param) for _ in range(3)] == [want] * 3


def test_a_date_past_any_calendar_is_no_date() -> None:
    # Found by the smime_mime fuzz target: email.utils raised OverflowError.
    msg = (b"From: <a@example.com>\r\nDate: Mon, 1 Jan 99999999999999999999 00:00:00 +0000\r\n"
           b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
           b'boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
           b'--b1\r\nContent-Type: application/pkcs7-signature\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b1--\r\n")
    assert mime.locate_signed(msg).from_address == "a@example.com"
