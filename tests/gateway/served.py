"""Transport tests' gateways: `filterlang serve` from a gateway.toml template, delivering to a
real next hop (tests/e2e/harness.py's `Sink`), spoken to by raw SMTP where smtplib would refuse
what the test sends (a CR inside an address).

The process, the sink and the SMTP helpers are the end-to-end harness's; this module only adds
`relay_config`, the template most transport tests start from, and `Served`, which fills a
template's {port}, {sink} and {root}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.harness import (  # noqa: F401  (re-exported for the transport tests)
    FILTERLANG,
    Received,
    Serve,
    Sink,
    dialogue,
    free_port,
    read_reply,
    wait_until,
)
from tests.e2e.harness import replies_to as send  # noqa: F401

# What most transport tests need: one listener and one queue process, every loopback client
# under a RELAY policy, delivery to the sink. `relay_config` adds lines to its sections.
RELAY = """
workers = 1
queue_workers = 1
{top}
[storage]
data_dir = "{data}"
{storage}
[[listeners]]
port = {{port}}
{listener}
{groups}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
{policy}
{sections}
[delivery]
relay = "127.0.0.1:{{sink}}"
{delivery}
"""


def relay_config(*, top: str = "", data: str = "data", storage: str = "", listener: str = "",
                 groups: str = "", policy: str = "", sections: str = "",
                 delivery: str = "") -> str:
    """A gateway.toml for `Served` ({port}, {sink} and {root} left to fill): `groups` are
    sender groups matched before the loopback one, `sections` whole sections of their own."""
    return RELAY.format(top=top, data=data, storage=storage, listener=listener, groups=groups,
                        policy=policy, sections=sections, delivery=delivery)


class Served(Serve):
    """One gateway: `toml` is written to tmp/gateway.toml with {port} and {sink} filled in."""

    def __init__(self, tmp: Path, toml: str, sink: Sink | None = None, **fields: Any) -> None:
        super().__init__(tmp / "gateway.toml", free_port())
        self.tmp = tmp
        self.config.write_text(toml.format(port=self.port, sink=sink.port if sink else 0,
                                           root=tmp, **fields))
