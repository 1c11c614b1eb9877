"""Issue 13 through `filterlang serve`: what a hostile sender sends, what the next hop gets."""

from __future__ import annotations

from pathlib import Path

from smime import sign
from tests.smime.pki import NOW

from .serve_harness import Served, pki

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
