"""Drive the gateway's own queue loop from synchronous tests."""

from __future__ import annotations

import asyncio

from runtime.mta.queue import QueueRunner


def run_queue(runner: QueueRunner) -> int:
    """Work the queue with `QueueRunner.run_async`, the loop a queue process of `filterlang
    serve` runs, until nothing more is ready: what is in `incoming`, the deferred messages due
    now, and what they lead to (DSNs, copies). Returns how many messages it took."""
    return asyncio.run(runner.run_async(until_idle=True))
