"""Connection caps (issue 13 item 11): past the listener's cap, the per-IP cap of the mail flow
policy, or the descriptors the process has, a client is answered 421 4.7.0 at connect; the
counts go down as connections close; no traceback in the log."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

from runtime.mta.connlimits import (
    FD_MARGIN,
    TOO_MANY,
    TOO_MANY_ON_LISTENER,
    AcceptGuard,
    ConnectionLimits,
)
from tests.e2e.harness import connect, held

from .served import Served, Sink, read_reply, relay_config, send, wait_until

GATEWAY = relay_config(
    listener="max_connections = {cap}",
    groups='[sender_groups.partners]\nips = ["127.0.0.2/32"]\npolicy = "partners"\n'
           '[policies.partners]\naction = "RELAY"\nmax_connections_per_ip = 3',
    policy="max_connections_per_ip = 0")




def test_global_and_per_ip_caps_through_serve(tmp_path: Path) -> None:
    with Sink() as sink, Served(tmp_path, GATEWAY, sink, cap=8) as gw:
        with held() as opened:
            # The partners' policy takes three at once from 127.0.0.2, the fourth is refused.
            greetings = [connect(gw.port, "127.0.0.2", opened) for _ in range(4)]
            assert [g[:3] for g in greetings] == ["220", "220", "220", "421"], greetings
            assert greetings[3].startswith("421 4.7.0")
            # Other addresses still get in, up to the listener's cap of eight.
            greetings = [connect(gw.port, f"127.0.0.{10 + i}", opened) for i in range(6)]
            assert [g[:3] for g in greetings] == ["220"] * 5 + ["421"], greetings
            assert greetings[5].startswith("421 4.7.0")
        # All closed: the counts are back down, and mail flows.
        assert wait_until("a session once the others closed", lambda: send(gw.port, "a@example.com", ["b@example.org"],
                                       b"Subject: s\r\n\r\nx\r\n")[-1][:3] == "250")
        wait_until("delivery", lambda: sink.to("b@example.org"))
    assert "Traceback" not in gw.log_text()


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))


def test_descriptor_limit_gives_421_not_tracebacks(tmp_path: Path) -> None:
    with Sink() as sink:
        gw = Served(tmp_path, GATEWAY, sink, cap=100000)
        gw.preexec = _few_descriptors
        with gw, held() as opened:
            greetings = [connect(gw.port, "127.0.0.1", opened) for _ in range(200)]
            codes = [g[:3] for g in greetings]
            # Every client got an answer: a greeting while descriptors last, then 421.
            assert set(codes) == {"220", "421"}, set(codes)
            assert codes.index("421") > 10 and "220" not in codes[codes.index("421"):]
            for s in opened:
                s.close()
            wait_until("a session once the others closed", lambda: send(gw.port, "a@example.com", ["b@example.org"],
                                    b"Subject: s\r\n\r\nx\r\n")[-1][:3] == "250")
    log = gw.log_text()
    assert "Traceback" not in log and "out of system resource" not in log


def test_caps_are_counted_in_and_out() -> None:
    limits = ConnectionLimits({"in": 2}, descriptors=10_000)
    refusal, a_ticket = limits.admit("in", limits.counters.ip_key("a"), 1)
    assert refusal is None and len(a_ticket) == 2  # the listener's total and the IP's
    refusal, _ = limits.admit("in", limits.counters.ip_key("a"), 1)  # per IP, the limit named
    assert refusal == "421 4.7.0 Too many connections from your address " \
                      "(max_connections_per_ip=1), try again later"
    assert limits.admit("in", limits.counters.ip_key("b"), 1)[0] is None
    # The listener's cap, the limit named (it is the host's: no share per process).
    assert limits.admit("in", limits.counters.ip_key("c"), 0) == (
        "421 4.7.0 Too many connections (max_connections=2), try again later", ())
    limits.release(a_ticket)
    refusal, c_ticket = limits.admit("in", limits.counters.ip_key("c"), 0)  # 0: the IP not counted, the listener is
    assert refusal is None and len(c_ticket) == 1 and limits.total == 2
    assert limits.admit("in", limits.counters.ip_key("a"), 1)[0] == TOO_MANY_ON_LISTENER.format(limit=2)
    tight = ConnectionLimits({"in": 100}, descriptors=FD_MARGIN + 1)
    assert [tight.admit("in", tight.counters.ip_key("d"), 0)[0] for _ in range(2)][-1] == TOO_MANY  # descriptors


def test_accept_guard_answers_waiting_clients() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        guard = AcceptGuard(loop)
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(8)
            clients = [socket.create_connection(lsock.getsockname(), timeout=10) for _ in range(3)]
            assert guard.refuse_waiting(lsock.fileno()) == 3
            assert all(read_reply(c).startswith("421 4.7.0") for c in clients)
            for c in clients:
                c.close()
    finally:
        loop.close()
