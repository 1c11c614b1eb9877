"""Group commit for a listener: messages finished in the same turn of the event loop share
one directory fsync.

A message's bytes are made durable on their own (Spool.stage: write + fdatasync in `tmp`);
what makes it *queued* is the rename into `incoming` and the fsync of that folder. That fsync
is a journal commit, the same cost for one rename as for ten, so the listener renames every
message whose DATA completed during one turn of the loop and syncs the folder once before any
of them gets its 250. A 250 still means the message is on disk.
"""

from __future__ import annotations

import asyncio

from runtime.spool import Spool, SpoolError, Staged


class GroupCommit:
    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._waiting: list[tuple[Staged, asyncio.Future[None]]] = []
        self.batches = 0  # how many publishes (for tests and the curious: messages / batches)

    async def publish(self, staged: Staged) -> None:
        """Queue `staged` durably in its state; raises SpoolError if that failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            # After every callback already due in this turn: the other sessions whose DATA
            # is being handled right now join the batch.
            loop.call_soon(self._flush)
        self._waiting.append((staged, done))
        await done

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self.batches += 1
        try:
            results = self._spool.publish([staged for staged, _ in batch])
        except Exception as exc:  # a bug must not leave sessions waiting forever
            results = [SpoolError(f"cannot queue: {exc}")] * len(batch)
        for (_, done), problem in zip(batch, results, strict=True):
            if done.cancelled():
                continue  # the session is gone; the message is queued all the same
            if problem is None:
                done.set_result(None)
            else:
                done.set_exception(problem)
