"""LDAP group routing through `filterlang serve` (issue 16 item 4), against a real OpenLDAP
slapd on loopback with a throwaway database:

- a message filter `rcpt-to-group == 'engineers'` sends members' mail to the engineers' host
  (alt-mailhost) and everyone else's to the relay;
- an incoming mail policy whose recipients are `corp.ldapgroup: sales` gives its members the
  sales content filter;
- with slapd stopped, a message that needs a group answer is deferred (a 4xx reply in tracking,
  never "not in the group"), with one `ldap_unavailable` alert however many wait, and
  delivered to the right host once slapd is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Gateway, Sink, message, running
from tests.support.slapd import BASE, READER_DN, READER_PW, Slapd, slapd_missing

pytestmark = pytest.mark.skipif(slapd_missing() is not None, reason=slapd_missing() or "")

GROUPS = {"engineers": ["alice@b.example", "bob@b.example"], "sales": ["carol@b.example"]}

ROUTE = """\
engineers_host:
    if rcpt-to-group == 'engineers' {{
        alt-mailhost('[127.0.0.1]:{port}');
    }}
"""

SALES = """\
content-filter cf_sales:
    direction incoming
    if true {
        insert-header('X-Sales-Policy', 'yes');
    }
"""


def ldap_toml(slapd: Slapd) -> str:
    return f"""
[ldap.corp]
url = "{slapd.url}"
bind_dn = "{READER_DN}"
bind_password_file = "ldap.secret"
base = "{BASE}"
filter = "(&(objectClass=nisMailAlias)(cn={{g}})(rfc822MailMember={{a}}))"
timeout = 2
cache_ttl = 1

[incoming_policies.sales]
recipients = ["corp.ldapgroup: sales"]
content_filters = ["sales.filter"]
"""


@pytest.fixture()
def directory(tmp_path: Path) -> Iterator[Slapd]:
    with Slapd(tmp_path / "slapd", GROUPS) as server:
        yield server


@pytest.mark.timeout(120)
def test_ldap_group_routing_and_outage(tmp_path: Path, directory: Slapd) -> None:
    engineers, others = Sink(), Sink()
    with engineers, others:
        root = tmp_path / "gw"
        root.mkdir()
        (root / "ldap.secret").write_text(READER_PW + "\n")
        (root / "sales.filter").write_text(SALES)
        gw = Gateway(root, next_hop=others.port,
                     filters={"route.filter": ROUTE.format(port=engineers.port)},
                     extra=ldap_toml(directory))
        with running(gw):
            outside = "127.0.0.1"  # inbound: the incoming mail policies apply
            alice = gw.send("x@a.example", "alice@b.example",
                            message("x@a.example", "alice@b.example", "for an engineer"),
                            source=outside)
            carol = gw.send("x@a.example", "carol@b.example",
                            message("x@a.example", "carol@b.example", "for sales"),
                            source=outside)
            got, _ = gw.delivered(engineers, "alice@b.example", alice)
            assert got.header("X-Sales-Policy") is None
            got, _ = gw.delivered(others, "carol@b.example", carol)
            assert got.header("X-Sales-Policy") == "yes"
            assert not engineers.to("carol@b.example") and not others.to("alice@b.example")

            # The directory goes away: the answer is not known, so the message waits.
            directory.stop()
            time.sleep(1.2)  # the answers kept (cache_ttl = 1) expire
            bob = gw.send("x@a.example", "bob@b.example",
                          message("x@a.example", "bob@b.example", "during the outage"),
                          source=outside)
            deferred = gw.wait_event(bob, "deferred", "bob@b.example")
            assert deferred["reply"].startswith("451 4."), deferred
            assert "LDAP corp" in deferred["reply"], deferred
            assert not engineers.to("bob@b.example") and not others.to("bob@b.example")
            # A second message in the same outage: deferred too, and no second alert.
            dan = gw.send("x@a.example", "dan@b.example",
                          message("x@a.example", "dan@b.example", "still down"), source=outside)
            gw.wait_event(dan, "deferred", "dan@b.example")
            outage = [a for a in gw.alerts().splitlines() if '"ldap_unavailable"' in a]
            assert len(outage) == 1 and "LDAP corp" in outage[0], gw.alerts()

            directory.start()
            gw.delivered(engineers, "bob@b.example", bob)
            assert not others.to("bob@b.example")
            gw.delivered(others, "dan@b.example", dan)
            gw.wait_log("the log of the directory's return", "LDAP corp answers again")
