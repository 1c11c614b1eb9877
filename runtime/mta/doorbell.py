"""The doorbell: queue ids from the listener processes to the queue processes.

A listener rings it with the id of each message it has just made durable; one queue process
picks that id up and claims the message at once, instead of finding it by listing `incoming`.
It is a datagram socketpair made by the supervisor before it forks, so each note goes to
exactly one reader and several listeners can ring at once.

It is only a hint. The spool is the truth: a note that is lost (a full socket buffer, a queue
process that died) leaves the message in `incoming`, where the queue's listing finds it.

The ids a listener rings during one turn of its event loop (the messages of one group commit)
go in one datagram, ids separated by spaces: one send, and one wake-up of a queue process,
per batch rather than per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable

# Spool.new_id's shape: anything else on the socket is ignored, never used as a file name.
_QUEUE_ID = re.compile(r"\d{20}-[0-9a-f]{12}")
IDS_PER_NOTE = 64  # ids in one datagram at most (34 bytes each with the separator)
_NOTE_BYTES = 4096


class Doorbell:
    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._pending: list[str] = []  # rung in this turn of the loop, not sent yet

    def ring(self, queue_id: str) -> None:
        """Tell one queue process about `queue_id`, at the end of this turn of the running
        event loop (at once without one); never blocks, never raises."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._send([queue_id])
            return
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(queue_id)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), IDS_PER_NOTE):
            self._send(pending[start:start + IDS_PER_NOTE])

    def _send(self, ids: list[str]) -> None:
        with contextlib.suppress(OSError):  # full: the queue will list `incoming` instead
            self._writer.send(" ".join(ids).encode("ascii"))

    def listen(self, loop: asyncio.AbstractEventLoop, offer: Callable[[str], None]) -> None:
        """Call `offer(queue_id)` in `loop` for every note that arrives."""
        loop.add_reader(self._reader.fileno(), self._drain, offer)

    def _drain(self, offer: Callable[[str], None]) -> None:
        while True:
            try:
                note = self._reader.recv(_NOTE_BYTES)
            except OSError:  # nothing more to read now (or the socket is gone)
                return
            for text in note.decode("ascii", "replace").split(" "):
                if _QUEUE_ID.fullmatch(text):
                    offer(text)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
