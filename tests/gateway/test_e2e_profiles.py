"""A sending profile when one recipient key is missing: bounce, drop or split, end to end.

Four recipients at a partner, keys stored for two: bounce returns the whole message with a
well-formed DSN (headers only), drop delivers nothing, split sends one encrypted copy to the
two keyed recipients and one signed-only (or, for encrypt-only profiles, plain) copy to the
others.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

import smime
from runtime.pipeline.stages.smime_ops import is_smime
from tests.smime.pki import Issued, issue

from .conftest import free_port
from .e2e_support import Capture, Org, message, pump

KEYED = ("k1@p.example", "k2@p.example")
UNKEYED = ("n1@p.example", "n2@p.example")


class Partner:
    def __init__(self) -> None:
        self.ca = issue("partner CA", ca=True)
        self.users: dict[str, Issued] = {a: issue(a, self.ca, emails=[a], key_usage=None) for a in KEYED}
        self.inbox = Capture()
        self.port = free_port()
        self.ctl = Controller(self.inbox, hostname="127.0.0.1", port=self.port)


@pytest.fixture
def partner() -> Iterator[Partner]:
    p = Partner()
    p.ctl.start()
    yield p
    p.ctl.stop()


def start(tmp_path: Path, partner: Partner, mode: str, missing: str) -> Org:
    org = Org(tmp_path / "a", "a.example", ("alice",), mode=mode, missing=missing)
    org.route("p.example", partner.port)
    for addr, user in partner.users.items():
        org.store.add_public(addr, user.pem.decode("ascii"))
    org.start()
    org.submit("alice@a.example", [*KEYED, *UNKEYED],
               message("alice@a.example", "team@p.example", "numbers", "Quarterly numbers inside.\r\n"))
    return org


def test_bounce_returns_everything_with_a_well_formed_dsn(tmp_path: Path, partner: Partner) -> None:
    org = start(tmp_path, partner, "sign-encrypt", "bounce")
    try:
        pump(org, until=lambda: bool(org.mailbox.messages))
        assert partner.inbox.messages == []
        [(dsn_from, dsn_rcpts, dsn)] = org.mailbox.messages
        assert dsn_from in ("", "<>") and dsn_rcpts == ["alice@a.example"]
        report = email.message_from_bytes(dsn, policy=email.policy.default)
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        parts = list(report.iter_parts())
        assert [p.get_content_type() for p in parts] == [
            "text/plain", "message/delivery-status", "text/rfc822-headers"]
        status = " ".join(parts[1].as_string().split())
        for r in (*KEYED, *UNKEYED):
            assert f"Final-Recipient: rfc822; {r} Action: failed Status: 5.7.1" in status
        assert status.count("Action: failed") == 4
        assert "no usable S/MIME encryption key for n1@p.example, n2@p.example" in status
        assert b"Quarterly numbers" not in dsn  # headers only: it was meant to leave encrypted
    finally:
        org.stop()


def test_drop_delivers_nothing(tmp_path: Path, partner: Partner) -> None:
    org = start(tmp_path, partner, "sign-encrypt", "drop")
    try:
        pump(org, rounds=5)
        assert partner.inbox.messages == [] and org.mailbox.messages == []
        assert org.tracking().count('"event":"drop"') == 4
    finally:
        org.stop()


@pytest.mark.parametrize(("mode", "others_signed"), [("sign-encrypt", True), ("encrypt", False),
                                                     ("triple", True)])
def test_split_encrypts_for_keyed_and_not_for_the_others(tmp_path: Path, partner: Partner, mode: str,
                                                         others_signed: bool) -> None:
    org = start(tmp_path, partner, mode, "split")
    try:
        pump(org, until=lambda: len(partner.inbox.messages) >= 2)
        by_rcpts = {tuple(sorted(r)): m for _, r, m in partner.inbox.messages}
        assert sorted(by_rcpts) == [KEYED, UNKEYED]
        sealed, other = by_rcpts[KEYED], by_rcpts[UNKEYED]
        if mode == "triple":
            assert is_smime(sealed) == (True, False)  # outer signature over the envelope
        else:
            assert is_smime(sealed) == (False, True)
            assert b"Quarterly numbers" not in sealed
            user = partner.users["k1@p.example"]
            inner = smime.decrypt(sealed, [(user.key, user.cert)]).content
            assert b"Quarterly numbers" in inner or is_smime(inner)[0]
        assert is_smime(other) == (others_signed, False)
        assert b"Quarterly numbers" in other
        assert org.mailbox.messages == []  # no bounce
    finally:
        org.stop()
