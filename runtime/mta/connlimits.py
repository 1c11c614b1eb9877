"""Concurrent-connection caps of a listener process, and what happens at their edges.

The host access table's mail flow policy gives a per-IP cap (`max_connections_per_ip`, as
AsyncOS's "max. concurrent connections from a single IP"), the listener a global one
(`max_connections`); both are counted for all listener processes together, under one lock
of the table in runtime/mta/hostlimits.py. Past either, a client is answered `421 4.7.0`
naming the limit at connect and the connection closed, before aiosmtpd makes a session
for it. The caps also stay below the process's descriptor limit (raised to its hard limit at
start), so a flood of idle connections meets 421 rather than EMFILE; if accept() runs out of
descriptors all the same (another part of the process holds them), `AcceptGuard` answers the
waiting clients 421 with descriptors kept in reserve for that, where asyncio logged a
traceback and left them hanging. After a burst, freed memory goes back to the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import socket
import time
from collections.abc import Mapping
from typing import Any

from runtime.mta import memtrim
from runtime.mta.hostlimits import HostCounters, listener_key

log = logging.getLogger("filterlang.smtp")

TOO_MANY = "421 4.7.0 Too many connections, try again later"
TOO_MANY_ON_LISTENER = "421 4.7.0 Too many connections (max_connections={limit}), try again later"
TOO_MANY_FROM_IP = ("421 4.7.0 Too many connections from your address "
                    "(max_connections_per_ip={limit}), try again later")
FD_MARGIN = 64  # descriptors kept for spool files, syncs and the process's own needs
BURST = 256  # connections: a peak this high is followed by giving memory back
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raise_descriptor_limit() -> int:
    """Raise this process's soft descriptor limit to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return FD_MARGIN


class ConnectionLimits:
    """Open connections of this process, and per listener and per client IP in all of them."""

    def __init__(self, caps: Mapping[str, int], descriptors: int | None = None,
                 counters: HostCounters | None = None, region: int = 0) -> None:
        # Each listener's cap is for the host, counted in the shared table under its name.
        self.caps = {name: (listener_key(name), cap) for name, cap in caps.items()}
        limit = raise_descriptor_limit() if descriptors is None else descriptors
        self.room = max(1, limit - _open_descriptors() - FD_MARGIN)
        self.total = 0
        self._peak = 0
        # The counts, shared with the other listener processes of `serve` (which made
        # `counters` before forking this one and gave it `region`), else this one's own.
        self.counters = counters if counters is not None else HostCounters(regions=1)
        self.region = region

    def admit(self, listener: str, client: bytes,
              per_ip: int) -> tuple[str | None, tuple[int, ...]]:
        """Count a new connection of `client` (its key: HostCounters.ip_key) in: (None, the
        ticket for `release`), or (the 421 reply that refuses it, ()) with nothing counted."""
        if self.total >= self.room:  # this process's descriptors
            return TOO_MANY, ()
        checks = []
        mine = self.caps.get(listener)
        if mine is not None:
            checks.append(mine)
        if per_ip:  # 0: no cap, and nothing to count
            checks.append((client, per_ip))
        got = self.counters.connect(checks, self.region)
        if isinstance(got, int):
            if mine is not None and got == 0:
                return TOO_MANY_ON_LISTENER.format(limit=mine[1]), ()
            return TOO_MANY_FROM_IP.format(limit=per_ip), ()
        self.total += 1
        self._peak = max(self._peak, self.total)
        return None, got

    def release(self, ticket: tuple[int, ...]) -> None:
        self.total -= 1
        if ticket:
            self.counters.disconnect(ticket, self.region)
        if self._peak >= BURST and self.total <= self._peak // 4:
            # Most of a burst has gone: give its memory back (transports, buffers, sessions).
            self._peak = self.total
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(release_memory)


def release_memory() -> None:
    """Collect the cycles a burst of sessions left, then return free heap pages."""
    gc.collect()
    memtrim.trim()


class AcceptGuard:
    """asyncio's answer to accept() failing for lack of descriptors is an error log with a
    traceback and a one-second pause, the clients left waiting. This loop exception handler
    answers them 421 instead, using two descriptors held in reserve for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._spare: list[int] = []
        self._logged = 0.0
        self._reserve()
        self._default = loop.get_exception_handler()
        loop.set_exception_handler(self.handle)

    def _reserve(self) -> None:
        while len(self._spare) < 2:
            try:
                self._spare.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        sock = context.get("socket")
        if (isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS
                and sock is not None and context.get("message", "").startswith("socket.accept")):
            refused = self.refuse_waiting(sock.fileno())
            now = time.monotonic()
            if now - self._logged >= 60:
                self._logged = now
                log.warning("out of descriptors (%s): answered %d waiting client(s) 421; raise "
                            "the descriptor limit or lower max_connections", exc.strerror, refused)
            return
        if self._default is not None:
            self._default(loop, context)
        else:
            loop.default_exception_handler(context)

    def refuse_waiting(self, listening_fd: int, at_most: int = 1000) -> int:
        """Accept and refuse (421) the clients waiting on `listening_fd`; how many."""
        for fd in self._spare:
            os.close(fd)
        self._spare.clear()
        refused = 0
        try:
            lsock = socket.socket(fileno=os.dup(listening_fd))
        except OSError:
            self._reserve()
            return 0
        try:
            lsock.setblocking(False)
            while refused < at_most:
                try:
                    conn, _ = lsock.accept()
                except OSError:  # none waiting (BlockingIOError), or still no descriptor
                    break
                with conn, contextlib.suppress(OSError):
                    conn.send(TOO_MANY.encode("ascii") + b"\r\n")
                refused += 1
        finally:
            lsock.close()  # the duplicate only; the listener's own socket stays open
            self._reserve()
        return refused
