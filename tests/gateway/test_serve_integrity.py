"""Issue 13 through `filterlang serve`: what a hostile sender sends, what the next hop gets."""

from __future__ import annotations

import base64
import email
import email.policy
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smime import TrustStore, VerifyPolicy, encrypt, sign, verify
from tests.smime.bare_signer import sign_without_attributes
from tests.smime.pki import NOW, key_pem
from tests.smime.wrong_cek import wrong_cek_envelope

from .serve_harness import FILTERLANG, Served, pki, wait_until

PLAIN = (b"To: bob@example.org\r\nSubject: pay\r\nMessage-ID: <m1@outside.example>\r\n"
         b"Content-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n")


UNPARSEABLE_FROM = (b"eve@evil.example)<alice@example.com>", b"a:;b:;", b"a@")


def test_unparseable_from_is_delivered_unverified_never_held(tmp_path: Path) -> None:
    """Signed by eve under a From a client shows as alice (or under one that made the email
    package raise): delivered, never "verified", never parked in hold."""
    eve = pki().user("eve@evil.example")
    with Served(tmp_path / "gw") as gw:
        for from_value in UNPARSEABLE_FROM:
            msg = sign(b"From: " + from_value + b"\r\n" + PLAIN, eve.key, eve.asn1,
                       [pki().inter.asn1], now=NOW)
            assert gw.send(msg)[0] == 250
        delivered = gw.sink.wait(len(UNPARSEABLE_FROM))
        for got in delivered:
            head = got.split(b"\r\n\r\n", 1)[0]
            assert b"X-Filterlang-SMIME: verification=failed" in head, head
            assert b"; verified" not in head
        assert gw.spool_names("hold") == []


UNAUTH_FILTER = """
mark_unauthenticated:
  if smime-gateway-unauthenticated {
      insert-header('X-Unauthenticated', 'yes');
  }
hold_unauthenticated:
  if smime-gateway-unauthenticated and subject == '^quarantine me$' {
      quarantine('held');
  }
"""


def test_unauthenticated_decryption_is_labelled_and_filterable(tmp_path: Path) -> None:
    """CBC content with no signature inside could have been edited in transit (EFAIL): the
    status header says so, filters see it, and an administrator can quarantine it. GCM is
    authenticated encryption and is not flagged."""
    with Served(tmp_path / "gw", filters=UNAUTH_FILTER) as gw:
        org = gw.org.cert
        for cipher, subject in (("aes256-cbc", "cbc"), ("aes128-gcm", "gcm"),
                                ("aes128-cbc", "quarantine me")):
            plain = PLAIN.replace(b"Subject: pay", b"Subject: " + subject.encode())
            assert gw.send(encrypt(b"From: eve@evil.example\r\n" + plain, [org],
                                   cipher=cipher))[0] == 250
        delivered = {m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]: m for m in gw.sink.wait(2)}
        cbc, gcm = delivered[b"cbc"], delivered[b"gcm"]
        assert b"X-Filterlang-SMIME: decrypted; unauthenticated\r\n" in cbc
        assert b"X-Unauthenticated: yes\r\n" in cbc
        assert b"Pay Eve 1000 EUR." in cbc
        assert b"X-Filterlang-SMIME: decrypted\r\n" in gcm
        assert b"X-Unauthenticated" not in gcm
        wait_until("the unauthenticated message in the quarantine", lambda: list((gw.root / "data" / "quarantine" / "held").glob("*")))
        assert b"quarantine me" not in b"".join(gw.sink.wait(2))


def test_wrong_content_key_is_a_decryption_failure_not_random_text(tmp_path: Path) -> None:
    """An envelope whose encrypted key opens to a wrong CEK that CBC padding cannot catch (what
    a corrupted key gives once in 256): the one failure, the message delivered as received."""
    with Served(tmp_path / "gw") as gw:
        der = wrong_cek_envelope(b"Content-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n",
                                 gw.org.cert)
        msg = (b"From: eve@evil.example\r\nTo: bob@example.org\r\nSubject: enc\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
               b"smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(der).replace(b"\n", b"\r\n"))
        assert gw.send(msg)[0] == 250
        (got,) = gw.sink.wait(1)
        assert b"X-Filterlang-SMIME: decryption=failed\r\n" in got
        assert base64.encodebytes(der).replace(b"\n", b"\r\n") in got


def test_signer_without_signed_attributes_is_refused_by_the_gateway(tmp_path: Path) -> None:
    """RFC 5652 allows a signer without signed attributes; the gateway's default policy
    (`[smime] require_signed_attributes = true`) does not verify it, and says why."""
    alice = pki().user("alice@example.com")
    msg = sign_without_attributes(b"From: alice@example.com\r\n" + PLAIN, pki(), alice)
    with Served(tmp_path / "gw") as gw:
        assert gw.send(msg)[0] == 250
        (got,) = gw.sink.wait(1)
        assert b"X-Filterlang-SMIME: verification=failed" in got
        tracking = gw.root / "data" / "tracking.jsonl"
        # The tracking record follows the next hop's reply: wait for it, do not race it.
        wait_until("the reason in the tracking record", lambda: "no-signed-attributes" in tracking.read_text())


FOOTER_FILTER = """
footer_and_sign:
  if true {
      add-footer('footer');
      smime-gateway('sign');
  }
"""
LONG = "Caf\u00e9 au lait = 1 EUR " + "x" * 90  # over 76 characters and not ASCII


def test_footer_then_signature_delivers_readable_text(tmp_path: Path) -> None:
    """add-footer then signing, through filterlang serve: every encoded line within RFC 2045's
    76 characters, and the signed text reads as written (no '=C3=A9' escapes)."""
    signer = pki().user("gateway@example.org")
    root = tmp_path / "gw"
    root.mkdir()
    (root / "signer.crt.pem").write_bytes(signer.pem + pki().inter.pem)
    (root / "signer.key.pem").write_bytes(key_pem(signer.key))
    (root / "footer.txt").write_text("-- " + LONG + "\n", encoding="utf-8")
    extra = ('[certificates.signer]\ncert = "signer.crt.pem"\nkey = "signer.key.pem"\n'
             '[profiles.sign]\nmode = "sign"\nsigning_certificate = "signer"\n'
             '[text_resources]\nfooter = "footer.txt"\n')
    body = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"Hello {LONG}\r\n").encode()
    with Served(root, filters=FOOTER_FILTER, extra=extra) as gw:
        assert gw.send(b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: f\r\n"
                       b"MIME-Version: 1.0\r\n" + body)[0] == 250
        (got,) = gw.sink.wait(1)
    res = verify(got, trust=TrustStore((pki().root.asn1,)), policy=VerifyPolicy(bind_from=False))
    assert res.verified, res.reasons
    parsed = email.message_from_bytes(got, policy=email.policy.default)
    texts = [p for p in parsed.walk() if p.get_content_type() == "text/plain"]
    assert len(texts) == 1
    text = texts[0].get_content()
    assert f"Hello {LONG}" in text and f"-- {LONG}" in text and "=C3" not in text
    for part in parsed.walk():
        if part.get("Content-Transfer-Encoding", "").lower() in ("quoted-printable", "base64"):
            assert max(map(len, part.get_payload().splitlines())) <= 76


HEADER_EDITS = """
edit_headers:
  if true {
      insert-header('X-Checked', 'yes');
      strip-header('X-Remove-Me');
  }
"""
# Fields a header edit used to rewrite: a fold deeper than 78 columns, a field longer than 78
# columns on one line, no space after the colon, a tab after it, and odd capitalisation.
SIGNED_HEAD = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject:no space after the colon\r\n"
    b"X-Long: one two three four five six seven eight nine ten eleven twelve thirteen\r\n"
    b"\t fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two\r\n"
    b"References: <aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com> <bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@example.com>\r\n"
    b"x-mIxEd-CaSe:\tvalue after a tab\r\n"
    b"X-Remove-Me: not signed, removed by the filter\r\n"
    b"Message-ID: <dkim-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
)
SIGNED_BODY = b"\r\nA body   with  odd spacing \r\nand a second line\r\n"


@pytest.mark.parametrize("canon", [b"simple", b"relaxed"])
def test_header_edits_change_only_the_edited_lines(tmp_path: Path, canon: bytes) -> None:
    """A real DKIM signature (dkimpy, c=simple/simple and relaxed/relaxed) still verifies
    after insert-header and strip-header through filterlang serve, and every field the
    filters did not touch arrives byte for byte, in its place."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    message = SIGNED_HEAD + SIGNED_BODY
    signed_fields = [b"from", b"to", b"subject", b"x-long", b"references", b"x-mixed-case",
                     b"message-id", b"content-type", b"mime-version"]
    sig = dkim.sign(message, b"s1", b"example.com", pem, canonicalize=(canon, canon),
                    include_headers=signed_fields)
    with Served(tmp_path / "gw", filters=HEADER_EDITS) as gw:
        assert gw.send(sig + message, mail_from="alice@example.com")[0] == 250
        (got,) = gw.sink.wait(1)
    assert dkim.verify(got, dnsfunc=lambda name, timeout=5: record)
    head, body = got.split(b"\r\n\r\n", 1)
    assert b"\r\n" + body == SIGNED_BODY
    expected = (sig + SIGNED_HEAD).replace(
        b"X-Remove-Me: not signed, removed by the filter\r\n", b"") + b"X-Checked: yes\r\n"
    assert head.endswith(b"\r\n" + expected[:-2]) or head + b"\r\n" == expected


LIMITS = """max_header_bytes = 4096
max_header_fields = 30
max_addresses_per_header = 5
max_mime_parts = 4
max_mime_depth = 3
"""


def _multipart(parts: int) -> bytes:
    kids = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(parts))
    return (b"From: eve@outside.example\r\nTo: bob@example.org\r\nSubject: parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
            + kids + b"--B--\r\n")


def test_structure_limits_are_refused_at_data_naming_the_limit(tmp_path: Path) -> None:
    """Limits of the mail flow policy, checked before the 250: each refusal names its limit,
    nothing of them reaches the next hop, and a message within them is delivered."""
    head = b"From: eve@outside.example\r\nTo: bob@example.org\r\nSubject: s\r\n"
    nested = (head + b"Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\n"
              b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n"
              b"Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n"
              b"--m--\r\n--o--\r\n")
    cases = [
        (head + b"X-Big: y\r\n" + (b" " + b"y" * 70 + b"\r\n") * 71 + b"\r\nx\r\n", 552,
         b"max_header_bytes"),
        (head + b"".join(b"X-%d: v\r\n" % i for i in range(40)) + b"\r\nx\r\n", 554,
         b"max_header_fields"),
        (head.replace(b"To: bob@example.org", b"To: " + b", ".join(
            b"u%d@example.org" % i for i in range(6))) + b"\r\nx\r\n", 554,
         b"max_addresses_per_header"),
        (_multipart(5), 554, b"max_mime_parts"),
        (nested, 554, b"max_mime_depth"),
    ]
    with Served(tmp_path / "gw", policy_extra=LIMITS) as gw:
        for data, code, limit in cases:
            got_code, text = gw.send(data)
            assert (got_code, limit in text) == (code, True), (limit, got_code, text)
        assert gw.send(_multipart(4))[0] == 250
        (got,) = gw.sink.wait(1)
        assert got.endswith(_multipart(4).split(b"\r\n\r\n", 1)[1])
        assert gw.proc is not None and gw.proc.poll() is None


def test_invalid_header_name_in_a_filter_stops_serve_with_its_location(tmp_path: Path) -> None:
    """A header action on 'X Bad:' used to pass lint and skip the whole filter stage at run
    time; now it is F308 and the gateway refuses to start, naming the file, line and column."""
    gw = Served(tmp_path / "gw", filters="tag:\n    if true {\n        insert-header('X Bad:', 'v');\n    }\n")
    proc = subprocess.run([str(FILTERLANG), "serve", "-c", str(gw.root / "gateway.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "message.filter:3:23" in proc.stderr and "F308" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_smime_parameters_the_email_package_cannot_read_are_no_hold(tmp_path: Path) -> None:
    """RFC 2231 sections mixing "name*" and "name*1" made the email package raise
    TypeError in the S/MIME stage (found by the smime_mime fuzz target): any outsider could
    park mail in hold. It is delivered, unverified."""
    with Served(tmp_path / "gw") as gw:
        odd = PLAIN.replace(b"Content-Type: text/plain", b"Content-Type: application/pkcs7-mime;"
                            b" smime-type=enveloped-data; name*=x; name*1=y")
        assert gw.send(b"From: eve@evil.example\r\n" + odd)[0] == 250
        assert b"Pay Eve" in gw.sink.wait(1)[0]
        assert gw.spool_names("hold") == []


def test_a_signer_certificate_of_an_unknown_version_is_no_hold(tmp_path: Path) -> None:
    """A signer certificate whose version field says 7: asn1crypto reads it, cryptography
    raises InvalidVersion (not a ValueError) when the S/MIME stage names the signer, and any
    outsider could park mail in hold (found by fuzz/soak.py). Delivered, unverified."""
    from email import message_from_bytes

    eve = pki().user("eve@evil.example")
    signed = sign(b"From: eve@evil.example\r\n" + PLAIN, eve.key, eve.asn1, [pki().inter.asn1],
                  now=NOW)
    der = message_from_bytes(signed).get_payload()[1].get_payload(decode=True)
    mine = eve.cert.public_bytes(serialization.Encoding.DER)
    v3 = b"\xa0\x03\x02\x01\x02"  # the version field: [0] INTEGER 2 (v3)
    assert mine in der and v3 in mine
    odd = der.replace(mine, mine.replace(v3, b"\xa0\x03\x02\x01\x07", 1))
    b64 = base64.encodebytes(der).replace(b"\n", b"\r\n")
    assert b64 in signed
    message = signed.replace(b64, base64.encodebytes(odd).replace(b"\n", b"\r\n"))
    with Served(tmp_path / "gw") as gw:
        assert gw.send(message)[0] == 250
        [got] = gw.sink.wait(1)
        assert b"Pay Eve" in got and b"; verified" not in got.split(b"\r\n\r\n", 1)[0]
        assert gw.spool_names("hold") == []


def test_decrypted_content_the_mime_parser_cannot_read_is_no_hold(tmp_path: Path) -> None:
    """Encrypted for us (anyone can: our certificate is public), a multipart whose boundary
    mixes RFC 2231 sections: the check for parts hidden in decrypted content (EFAIL) parsed it
    with the email package, which raised TypeError, and the message went to hold (found by the
    smime_mime fuzz target). It is delivered, decrypted, and the reason says the structure
    could not be checked."""
    inner = (b"From: eve@evil.example\r\n" + PLAIN.split(b"Content-Type:")[0]
             + b"Content-Type: multipart/mixed; boundary*=x; boundary*1=y\r\n\r\n"
             b"--x\r\nContent-Type: text/plain\r\n\r\nPay Eve 1000 EUR.\r\n--x--\r\n")
    with Served(tmp_path / "gw") as gw:
        assert gw.send(encrypt(inner, [gw.org.cert], cipher="aes128-gcm"))[0] == 250
        [got] = gw.sink.wait(1)
        assert b"Pay Eve 1000 EUR." in got
        assert b"X-Filterlang-SMIME: decrypted" in got.split(b"\r\n\r\n", 1)[0]
        assert gw.spool_names("hold") == []


AUTHOR_FILTER = """
count_authors:
  if addr-count('From') < 1 {
      insert-header('X-No-Author', 'yes');
  } else {
      insert-header('X-Author', 'yes');
  }
"""


def test_a_from_the_address_parser_cannot_read_never_bypasses_the_filters(tmp_path: Path) -> None:
    """A From of 5,000 nested comments (one field of 5 KB, within every header limit) made the
    email package's address parser recurse past Python's limit: the rule raised, and a filter
    that fails is bypassed. It now names no address, and the filter acts on that."""
    with Served(tmp_path / "gw", filters=AUTHOR_FILTER) as gw:
        deep = b"\r\n ".join([b"(" * 500] * 10)  # folded: SMTP lines stay under 1,000
        assert gw.send(b"From: " + deep + b"eve@evil.example\r\n" + PLAIN)[0] == 250
        assert gw.send(b"From: alice@example.com\r\n" + PLAIN.replace(b"pay", b"fine"))[0] == 250
        delivered = {m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]: m for m in gw.sink.wait(2)}
        assert b"X-No-Author: yes\r\n" in delivered[b"pay"]
        assert b"X-Author: yes\r\n" in delivered[b"fine"]
