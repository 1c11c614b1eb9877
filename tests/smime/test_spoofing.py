"""smime.md 9.2 ("Johnny, You Are Fired!"): every spoofing class is reported as not verified.

CMS attacks (a) eContent confusion, (b) extra signers, (c) no signers and (d) untrusted
self-made certificates are in test_verify_negative.py (test_econtent_confusion,
test_one_bad_of_two_signers, test_no_signers, test_untrusted_self_made) and
test_verify_policy.py (strict/lenient); this file covers MIME wrapping, ID and UI attacks.
"""

from __future__ import annotations

import pytest
from pki import NOW, Issued, Pki, issue, make_pki

from smime import TrustStore, sign, sign_content, verify
from smime.compose import unwrap
from smime.errors import MalformedError
from smime.mime import STATUS_HEADER_PREFIX, build_detached, canonicalise, strip_status_headers

MSG = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
    b"Content-Type: text/plain\r\n\r\nPay Bob 10 EUR.\r\n"
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def alice(pki: Pki) -> Issued:
    return pki.user()


def _signed(pki: Pki, user: Issued, msg: bytes = MSG, **kw: object) -> bytes:
    return sign(msg, user.key, user.asn1, [pki.inter.asn1], now=NOW, **kw)  # type: ignore[arg-type]


def _codes(pki: Pki, message: bytes) -> tuple[bool, list[str]]:
    res = verify(message, trust=TrustStore((pki.root.asn1,)), now=NOW)
    return res.verified, [c for c, _ in res.reasons]


def _body(signed: bytes) -> bytes:
    """The signed message minus its From/To/Subject, to embed it as a MIME part."""
    head, _, body = signed.partition(b"\r\n\r\n")
    kept = [h for h in head.split(b"\r\n") if h.lower().startswith((b"content-", b"mime-"))]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


# --- MIME wrapping: the signed entity must be the whole body ---------------------------------

def _mixed(parts: list[bytes], ctype: bytes = b"multipart/mixed") -> bytes:
    out = b"From: Alice <alice@example.com>\r\nContent-Type: " + ctype + b"; boundary=W\r\n\r\n"
    for p in parts:
        out += b"--W\r\n" + p + b"\r\n"
    return out + b"--W--\r\n"


@pytest.mark.parametrize(
    "shape",
    ["text-before", "text-after", "signed-attachment", "hidden-alternative", "forwarded"],
)
def test_mime_wrapping(pki: Pki, alice: Issued, shape: str) -> None:
    inner = _body(_signed(pki, alice))
    evil = b"Content-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n"
    if shape == "text-before":
        msg = _mixed([evil, inner])
    elif shape == "text-after":
        msg = _mixed([inner, evil])
    elif shape == "signed-attachment":
        msg = _mixed([evil, b"Content-Disposition: attachment\r\n" + inner])
    elif shape == "hidden-alternative":
        msg = _mixed([evil, inner], b"multipart/alternative")
    else:  # a whole signed message forwarded as message/rfc822 under attacker text
        msg = _mixed([evil, b"Content-Type: message/rfc822\r\n\r\n" + _signed(pki, alice)])
    assert _codes(pki, msg) == (False, ["partially-signed"])


# --- ID attacks: identity is the From addr-spec, bound to the certificate --------------------

@pytest.mark.parametrize(
    ("from_header", "code"),
    [
        (b"From: Mallory <mallory@example.com>", "from-mismatch"),
        (b'From: "alice@example.com" <eve@evil.example>', "from-mismatch"),
        (b"From: alice@example.com, eve@evil.example", "multiple-from"),
        (b"From: alice@example.com\r\nFrom: eve@evil.example", "multiple-from"),
    ],
    ids=["other-address", "display-name", "two-mailboxes", "two-headers"],
)
def test_from_identity(pki: Pki, alice: Issued, from_header: bytes, code: str) -> None:
    signed = _signed(pki, alice).replace(b"From: Alice <alice@example.com>", from_header)
    assert _codes(pki, signed) == (False, [code])


UNPARSEABLE_FROM = [
    b"eve@evil.example)<alice@example.com>",  # we would read eve, a client shows alice
    b"Alice <alice@example.com> eve@evil.example",
    b"a:;b:;",  # groups, no mailbox (AttributeError in the email package)
    b"Friends: eve@evil.example;",  # a group is not a mailbox
    b"a@",  # no domain (IndexError in the email package)
    b"@evil.example",
    b"",
]


@pytest.mark.parametrize("from_value", UNPARSEABLE_FROM)
def test_unparseable_from_is_never_verified(pki: Pki, from_value: bytes) -> None:
    """Eve's valid signature under a From we cannot read as one mailbox: never verified,
    never an exception, one reason code (in both forms)."""
    eve = pki.user("eve@evil.example")
    msg = MSG.replace(b"Alice <alice@example.com>", from_value)
    for detached in (True, False):
        res = verify(_signed(pki, eve, msg, detached=detached),
                     trust=TrustStore((pki.root.asn1,)), now=NOW)
        assert (res.verified, [c for c, _ in res.reasons]) == (False, ["from-unparseable"])


def test_unparseable_from_through_unwrap(pki: Pki) -> None:
    eve = pki.user("eve@evil.example")
    msg = MSG.replace(b"Alice <alice@example.com>", b"eve@evil.example)<alice@example.com>")
    res = unwrap(_signed(pki, eve, msg), trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert not res.verified
    assert [c for c, _ in res.errors] == ["from-unparseable"]


def test_display_name_is_never_the_identity(pki: Pki) -> None:
    """Eve's valid signature under a display name that looks like Alice binds to eve."""
    eve = pki.user("eve@evil.example")
    msg = MSG.replace(b"Alice <alice@example.com>", b'"alice@example.com" <eve@evil.example>')
    res = verify(_signed(pki, eve, msg), trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified
    assert res.signers[0].certificate is not None
    assert "alice" not in str(res.signers[0].certificate.subject.native)


def test_missing_from(pki: Pki, alice: Issued) -> None:
    signed = _signed(pki, alice).replace(b"From: Alice <alice@example.com>\r\n", b"")
    assert _codes(pki, signed) == (False, ["from-missing"])


def test_sender_not_in_certificate(pki: Pki, alice: Issued) -> None:
    signed = b"Sender: eve@evil.example\r\n" + _signed(pki, alice)
    assert _codes(pki, signed) == (False, ["sender-mismatch"])


def test_sender_in_certificate_is_fine(pki: Pki, alice: Issued) -> None:
    signed = b"Sender: alice@example.com\r\n" + _signed(pki, alice)
    assert _codes(pki, signed) == (True, [])


def test_reply_to_is_not_identity(pki: Pki, alice: Issued) -> None:
    """Reply-To is unauthenticated routing: it neither breaks nor establishes identity."""
    signed = b"Reply-To: eve@evil.example\r\n" + _signed(pki, alice)
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW)
    assert res.verified
    assert all("eve" not in text for _, text in res.reasons)


def test_signed_rfc822_with_other_inner_from(pki: Pki, alice: Issued) -> None:
    """A signed message/rfc822 whose inner From differs from the outer one."""
    inner = b"From: ceo@example.com\r\nSubject: wire money\r\n\r\nPay Eve.\r\n"
    msg = (b"From: alice@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + inner)
    assert _codes(pki, _signed(pki, alice, msg)) == (False, ["inner-from-mismatch"])


@pytest.mark.parametrize(
    ("inner_from", "expected"),
    [(b"ceo@example.com", (False, ["inner-from-mismatch"])), (b"alice@example.com", (True, []))],
    ids=["mismatch", "agrees"],
)
def test_header_protection_inner_from(
    pki: Pki, alice: Issued, inner_from: bytes, expected: tuple[bool, list[str]]
) -> None:
    """RFC 9788 header protection: a From inside the signed part must agree with the outer."""
    entity = canonicalise(b'Content-Type: text/plain; hp="clear"\r\nFrom: ' + inner_from
                          + b"\r\n\r\nhi\r\n")
    der = sign_content(entity, alice.key, alice.asn1, [pki.inter.asn1], now=NOW)
    signed = build_detached([b"From: alice@example.com"], entity, der, "sha-256")
    assert _codes(pki, signed) == expected


# --- UI attacks: the verdict goes only into headers the gateway controls ---------------------

STATUS = STATUS_HEADER_PREFIX.encode()


def test_forged_status_header_is_stripped(pki: Pki) -> None:
    eve = issue("eve", emails=["alice@example.com"])  # self-made look-alike
    forged = (STATUS + b"Status: verified\r\n" + STATUS.lower() + b"signer: alice@example.com\r\n"
              + sign(MSG, eve.key, eve.asn1, now=NOW))
    ok, codes = _codes(pki, forged)
    assert not ok and codes == ["untrusted"]
    clean = strip_status_headers(forged)
    assert STATUS.lower() not in clean.lower()
    # Stripping keeps the signature intact (only top-level header fields are removed).
    assert _codes(pki, clean) == (False, ["untrusted"])


def test_strip_status_headers_names_and_folding() -> None:
    msg = (b"X-Filterlang-SMIME-Status: verified\r\n  (folded)\r\nX-Other-Verified: yes\r\n"
           b"Subject: s\r\n\r\nX-Filterlang-SMIME-Status: in the body stays\r\n")
    out = strip_status_headers(msg, names=("X-Other-Verified",))
    assert out == b"Subject: s\r\n\r\nX-Filterlang-SMIME-Status: in the body stays\r\n"


def test_unsigned_message_with_banner_is_not_signed() -> None:
    html = (b"From: alice@example.com\r\n" + STATUS + b"Status: verified\r\n"
            b"Content-Type: text/html\r\n\r\n<div style='color:green'>&#10004; Signed by "
            b"alice@example.com (verified)</div>Pay Eve.\r\n")
    with pytest.raises(MalformedError, match="no S/MIME signature"):
        verify(html, trust=TrustStore(), now=NOW)


def test_banner_inside_untrusted_signature(pki: Pki) -> None:
    eve = issue("eve", emails=["alice@example.com"])
    msg = MSG.replace(b"Content-Type: text/plain", b"Content-Type: text/html").replace(
        b"Pay Bob 10 EUR.", b"<b>&#10004; S/MIME signature verified: alice@example.com</b>"
    )
    assert _codes(pki, sign(msg, eve.key, eve.asn1, now=NOW)) == (False, ["untrusted"])
