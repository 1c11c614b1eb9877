"""A reload or a stop must not drop a connection the kernel has already handed to a listener
that is stopping: such a client sees its connection closed before the greeting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from runtime.mta.supervisor import stop_accepting

CLIENTS = 8


class Greeter(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"220 ready\r\n")


def greeting(client: socket.socket) -> bytes:
    """What the server said first; b"" if it closed the connection or said nothing."""
    with client:
        client.settimeout(0.3)
        try:
            return client.recv(100)
        except TimeoutError:  # a dropped set-up leaves the socket open until collected
            return b""


def greetings(stop: Callable[[asyncio.Server], Awaitable[None]]) -> list[bytes]:
    """Clients connect while the loop is busy; the stop is asked for before the loop has run
    again, so it comes in the same turn as the accept() of those clients (as a SIGHUP that
    arrives while connections wait does)."""

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        requested = asyncio.Event()
        server = await loop.create_server(Greeter, "127.0.0.1", 0, backlog=CLIENTS * 2)
        port = server.sockets[0].getsockname()[1]
        clients: list[socket.socket] = []

        def busy() -> None:
            for _ in range(CLIENTS):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            loop.call_soon(requested.set)

        loop.call_soon(busy)
        await requested.wait()
        await stop(server)
        await asyncio.sleep(0.2)  # the connections set up write their greetings
        return [await loop.run_in_executor(None, greeting, c) for c in clients]

    return asyncio.run(main())


def test_connections_accepted_in_the_turn_of_the_stop_get_their_greeting() -> None:
    async def stop(server: asyncio.Server) -> None:
        await stop_accepting([server])

    got = greetings(stop)
    assert got == [b"220 ready\r\n"] * CLIENTS


def test_the_race_is_real_with_a_bare_close() -> None:
    # Why stop_accepting exists: asyncio's own close() in that turn drops them. If a Python
    # release fixes this, the test says so and stop_accepting's extra turn can go.
    async def stop(server: asyncio.Server) -> None:
        server.close()

    got = greetings(stop)
    assert got.count(b"") > 0, "asyncio no longer drops connections accepted as the server closes"
