"""The doorbell: queue ids from the listener processes to the queue processes.

A listener rings it with the id of each message it has just made durable; one queue process
picks that id up and claims the message at once, instead of finding it by listing `incoming`.
It is a datagram socketpair made by the supervisor before it forks, so each note goes to
exactly one reader and several listeners can ring at once.

It is only a hint. The spool is the truth: a note that is lost (a full socket buffer, a queue
process that died) leaves the message in `incoming`, where the queue's listing finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable

# Spool.new_id's shape: anything else on the socket is ignored, never used as a file name.
_QUEUE_ID = re.compile(r"\d{20}-[0-9a-f]{12}")


class Doorbell:
    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def ring(self, queue_id: str) -> None:
        """Tell one queue process about `queue_id`; never blocks, never raises."""
        with contextlib.suppress(OSError):  # full: the queue will list `incoming` instead
            self._writer.send(queue_id.encode("ascii"))

    def listen(self, loop: asyncio.AbstractEventLoop, offer: Callable[[str], None]) -> None:
        """Call `offer(queue_id)` in `loop` for every note that arrives."""
        loop.add_reader(self._reader.fileno(), self._drain, offer)

    def _drain(self, offer: Callable[[str], None]) -> None:
        while True:
            try:
                note = self._reader.recv(64)
            except OSError:  # nothing more to read now (or the socket is gone)
                return
            text = note.decode("ascii", "replace")
            if _QUEUE_ID.fullmatch(text):
                offer(text)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
