"""A listener's replies leave at once: its sessions' sockets have Nagle off.

With Nagle on, a reply written while the one before is still unacknowledged waits for the
client's delayed ACK (40 ms on Linux). Every pipelined transaction paid that (MAIL, RCPT and
DATA in one write, as Postfix's smtp client sends them: 43.7 ms to the 354 before, 0.30 ms
after, bench/latency.py), and every STARTTLS session once (TLS 1.3 sends its session tickets,
then the EHLO reply followed them: 42.9 ms before, 0.49 ms after). bench/gateway.py --tls
(10 sessions, a full handshake per message) went from 198 to 277 msg/s.
asyncio turns Nagle off by itself only for sockets made with proto IPPROTO_TCP; the
listening socket `serve` binds is made with proto 0, so it is set there.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from runtime.config.config import Listener
from runtime.mta.supervisor import bind


def nodelay_of_accepted(listener: Listener) -> int:
    """TCP_NODELAY of the session socket a client gets, accepted the way a listener process
    accepts: the socket `bind` made, handed to the event loop's server."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = bind(listener)
        server = await loop.create_server(Probe, sock=sock)
        client = socket.create_connection(sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_session_sockets_send_each_reply_at_once() -> None:
    assert nodelay_of_accepted(Listener(name="in", address="127.0.0.1", port=0)) == 1


def test_ipv6_session_sockets_too() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine ({exc})")
    assert nodelay_of_accepted(Listener(name="in6", address="::1", port=0)) == 1
