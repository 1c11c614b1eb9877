"""A listener on "::" takes IPv4 clients too (Linux's dual stack), and they arrive named as
IPv4-mapped IPv6 addresses (::ffff:127.0.0.1). The gateway names them by their IPv4 address,
so IPv4 sender groups, the host access table, Received and tracking see the client it is: a
relay group of 127.0.0.0/8 relays, where the mapped name matched no IPv4 group and the client
fell to the default policy (a blocklist group would have been bypassed the same way)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from .served import Served, Sink, relay_config, send, wait_until

GATEWAY = relay_config(listener='address = "::"', data="data")


def _dual_stack() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _dual_stack(), reason="no IPv6 on this machine")
def test_an_ipv4_client_of_a_dual_stack_listener_is_its_ipv4_address(tmp_path: Path) -> None:
    with Sink() as sink:
        gw = Served(tmp_path, GATEWAY, sink)
        with gw:
            replies = send(gw.port, "a@example.com", ["b@elsewhere.example"],
                           b"Subject: s\r\n\r\nhello\r\n")
            assert [r[:3] for r in replies[-3:]] == ["250", "250", "250"], replies
            [got] = wait_until("delivery", lambda: sink.to("b@elsewhere.example"))
            assert b" ([127.0.0.1])" in got.data.split(b"\r\n\r\n")[0]  # our Received line
            assert b"::ffff:" not in got.data
            lines = [json.loads(x) for x in (tmp_path / "data" / "tracking.jsonl")
                     .read_text().splitlines()]
            received = [x for x in lines if x.get("event") == "received"]
            assert received and all(x.get("peer") == "127.0.0.1" for x in received), received
