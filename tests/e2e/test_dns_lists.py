"""DNS block lists through `filterlang serve` (issue 16 item 3), against NSD on loopback:
an IP list asked about the connecting address, and a URI list (`[dns] uri_lists`, RFC 5782
2.3) asked about the host names of the URLs in the message; the filters see each list's code
and the tracking record shows the answers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.zones import rsa_key, zones
from tests.e2e.harness import Gateway, Sink, running
from tests.e2e.nsd import NSD, Nsd

pytestmark = pytest.mark.skipif(not Path(NSD).exists() and shutil.which("nsd") is None,
                                reason="nsd is not installed (.ci/run installs it)")

LISTS = """uri_listed:
    if dnslist('dbl.test') == '127.0.1.2' {
        insert-header('X-URI-Listed', 'dbl.test');
    }
ip_listed:
    if dnslist('bl.test') {
        insert-header('X-IP-Listed', 'bl.test');
    }
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    _, good = rsa_key()
    _, wrong = rsa_key()
    with Nsd(tmp_path_factory.mktemp("nsd"), zones(good, wrong)) as server:
        yield server


def mail(subject: str, body: str) -> bytes:
    return (f"From: alice@partner.example\r\nTo: bob@b.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}\r\n").encode()


def test_ip_and_uri_lists(nsd: Nsd, tmp_path: Path) -> None:
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, filters={"lists.filter": LISTS},
                 extra=f'\n[dns]\nnameservers = ["{nsd.address}"]\ntimeout = 2\n'
                       'uri_lists = ["dbl.test"]\n')
    with running(sink, gw):
        # The link is split by a soft line break: found only once the body is decoded.
        gw.send("alice@partner.example", "bob@b.example",
                mail("phish", "Log in at https://login.bad.ex=\r\nample/verify now"),
                source="127.0.0.1")
        gw.send("alice@partner.example", "bob@b.example",
                mail("clean", "See https://good.example/ and www.other.example"))
        listed, _ = gw.delivered(sink, "bob@b.example", "<phish@test>")
        clean, _ = gw.delivered(sink, "bob@b.example", "<clean@test>")
    assert listed.header("X-URI-Listed") == "dbl.test"
    assert clean.header("X-URI-Listed") is None
    # The IP list is asked about the client: 127.0.0.1 is listed, 127.0.0.2 is not.
    assert listed.header("X-IP-Listed") == "bl.test"
    assert clean.header("X-IP-Listed") is None
