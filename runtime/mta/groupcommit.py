"""Group commit for a listener: messages that finish close together share their syncs.

A listener writes each message into `tmp` (Spool.stage); what makes it *queued* is that its
bytes are durable, then its rename into `incoming` and the fsync of that folder. Each sync is
a journal commit and a device flush, about the same cost for one message as for ten, so the
listener publishes the messages of a batch together: one syncfs for their bytes (or, with
spool_sync = "file", an fdatasync each, done as each was written), the renames, one folder
fsync, before any of them gets its 250. A 250 still means the message is on disk.

A batch stays open while it grows: it is committed once QUIET_TURNS turns of the event loop
passed without a message joining, or after MAX_TURNS turns. A session whose last DATA bytes
arrive while the loop is busy needs two turns to join (one to read the socket, one to run the
session), so committing on the very next turn closed most batches at one message; waiting
for the quiet turns doubled the batches on an in-process listener under smtp-source (10
sessions, 4,000 messages: 1,796-1,933 commits before, 899-1,063 after) and cut its CPU per
message by 3-28% in three alternating runs, for a few loop turns of latency per message.

The syncs of a batch run in a thread, one batch at a time, while the loop goes on reading
sessions (see GroupCommit); a batch that gathers meanwhile is committed right after.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from runtime.mta.spool import Spool, SpoolError, Staged

QUIET_TURNS = 2  # loop turns without a new message before the batch is committed
MAX_TURNS = 8  # loop turns a batch waits at most, however busy the listener is


class GroupCommit:
    """One batch is synced at a time, in a thread of its own, while the event loop goes on:
    the sessions read their next messages and a new batch gathers meanwhile, to be committed
    as soon as the syncs of the one before are done. (Synced in the loop, every session of
    the listener stood still for each batch's syncfs and folder fsync, which on a busy disk
    take milliseconds. bench/gateway.py --quick on the loaded 2-core machine, four
    alternating pairs: 218 against 183 msg/s delivered on average, gateway/Postfix 0.40
    against 0.35, the threaded commit ahead in every pair.)"""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._waiting: list[tuple[Staged, asyncio.Future[None]]] = []
        self._flushing = False  # a batch is being synced in the thread
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # how many publishes (for tests and the curious: messages / batches)

    async def publish(self, staged: Staged) -> None:
        """Queue `staged` durably in its state; raises SpoolError if that failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting and not self._flushing:
            loop.call_soon(self._turn, loop, 1, 0, 1)
        self._waiting.append((staged, done))
        await done

    def _turn(self, loop: asyncio.AbstractEventLoop, turns: int, quiet: int, seen: int) -> None:
        """One loop turn of an open batch: commit it, or look again on the next turn."""
        size = len(self._waiting)
        quiet = quiet + 1 if size == seen else 0
        if quiet >= QUIET_TURNS or turns >= MAX_TURNS:
            self._flush(loop)
        else:
            loop.call_soon(self._turn, loop, turns + 1, quiet, size)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        self.batches += 1
        staged = [item for item, _ in batch]
        if self._executor is None:  # made in the process that uses it (listeners are forked)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
        self._flushing = True
        future = loop.run_in_executor(self._executor, self._publish, staged)
        future.add_done_callback(lambda f: self._finish(loop, batch, f.result()))

    def _publish(self, staged: list[Staged]) -> list[SpoolError | None]:
        try:
            return self._spool.publish(staged)
        except Exception as exc:  # a bug must not leave sessions waiting forever
            return [SpoolError(f"cannot queue: {exc}")] * len(staged)

    def _finish(self, loop: asyncio.AbstractEventLoop,
                batch: list[tuple[Staged, asyncio.Future[None]]],
                results: list[SpoolError | None]) -> None:
        self._flushing = False
        for (_, done), problem in zip(batch, results, strict=True):
            if done.cancelled():
                continue  # the session is gone; the message is queued all the same
            if problem is None:
                done.set_result(None)
            else:
                done.set_exception(problem)
        if self._waiting:
            # Messages that arrived during the syncs have waited long enough: commit them on
            # the next turn (the sessions just answered may add to them before it).
            loop.call_soon(self._turn, loop, MAX_TURNS, 0, len(self._waiting))
