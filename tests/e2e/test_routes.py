"""SMTP routes through `filterlang serve` (issue 17 item 3): [routes] sends each recipient domain
to its own next hop, a filter's alt-mailhost comes first, and tracking names the route taken.

Four sinks: `partner.example` by a static host:port route; `.sub.example` (its subdomains) by a
list whose first host does not answer, so the second takes it; `routes.test` by `mx`, looked up
in a real DNS server (NSD on loopback); everything else by the `*` route. [delivery]'s relay
points at a port nobody listens on: no recipient falls through to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Gateway, Sink, free_port, message, running
from .nsd import NSD, Nsd

pytestmark = pytest.mark.skipif(not Path(NSD).exists() and shutil.which("nsd") is None,
                                reason="nsd is not installed (.ci/run installs it)")

ALICE = "alice@a.example"
ALT_FILTER = """
to_alt:
  if subject == 'by alt-mailhost' {{
      alt-mailhost('127.0.0.1:{port}');
  }}
"""


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[Nsd]:
    with Nsd(tmp_path / "nsd", {"routes.test": ["@ IN MX 10 mx1", "mx1 IN A 127.0.0.1"]}) as nsd:
        yield nsd


def test_three_domains_to_three_sinks_and_the_rest_by_star(tmp_path: Path, dns: Nsd) -> None:
    static, sub, by_mx, rest = Sink(), Sink(), Sink(), Sink()
    dead = free_port()  # nobody listens here
    gw = Gateway(tmp_path / "gw", next_hop=free_port(),
                 filters={"alt.filter": ALT_FILTER.format(port=rest.port)},
                 extra=f"""
[dns]
nameservers = ["{dns.address}"]
timeout = 2

[routes]
"partner.example" = "[127.0.0.1]:{static.port}"
".sub.example" = ["127.0.0.1:{dead}", "127.0.0.1:{sub.port}"]
"routes.test" = "mx"
"*" = [{{ host = "127.0.0.1", port = {rest.port}, preference = 10 }}]
""")
    # MX hosts are reached on [delivery] mx_port: the MX route's sink.
    gw.config.write_text(gw.config.read_text().replace(
        "connect_timeout = 5", f"connect_timeout = 5\nmx_port = {by_mx.port}"))
    rcpts = ["bob@partner.example", "carol@eu.sub.example", "dave@routes.test",
             "erin@other.org", "frank@sub.example"]
    with running(static, sub, by_mx, rest, gw):
        mid = gw.send(ALICE, rcpts, message(ALICE, rcpts, "routed"))
        # Each recipient at its route's sink, and only there; the tracking line names the
        # route and the next hop that took it.
        want = {"bob@partner.example": (static, "partner.example"),
                "carol@eu.sub.example": (sub, ".sub.example"),
                "dave@routes.test": (by_mx, "routes.test"),
                "erin@other.org": (rest, "*"),
                "frank@sub.example": (rest, "*")}  # .sub.example is for subdomains only
        for rcpt, (sink, route) in want.items():
            _, rec = gw.delivered(sink, rcpt, mid)
            assert rec["route"] == route, rec
            assert rec["dest"] == f"127.0.0.1:{sink.port}", rec
            others = [s for s in (static, sub, by_mx, rest) if s is not sink]
            assert not any(s.to(rcpt) for s in others), rcpt
        # The first host of .sub.example refused the connection: the second took the copy.
        assert not [r for r in gw.records(mid) if r["event"] in ("deferred", "bounced")]

        # A filter's alt-mailhost comes before the routes.
        mid2 = gw.send(ALICE, "bob@partner.example",
                       message(ALICE, "bob@partner.example", "by alt-mailhost"))
        _, rec = gw.delivered(rest, "bob@partner.example", mid2)
        assert rec["route"] == "filter alt-mailhost", rec
        assert len(static.to("bob@partner.example")) == 1  # only the first message

    out = gw.cli("routes", "test", "--json", *rcpts)
    assert '"route": ".sub.example"' in out and '"route": "*"' in out
