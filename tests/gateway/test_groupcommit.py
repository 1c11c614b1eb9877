"""Group commit: the messages of one loop turn share a folder fsync, each gets its own result."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from runtime.mta.groupcommit import MAX_TURNS, GroupCommit
from runtime.mta.spool import Envelope, Spool, SpoolError, Staged


def _stage(spool: Spool, n: int) -> list[Staged]:
    return [spool.stage(Envelope("a@example.com", ("b@example.org",)), b"Subject: %d\r\n\r\nx\r\n" % i)
            for i in range(n)]


def test_sessions_finishing_together_share_one_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)
    staged = _stage(spool, 5)

    async def run() -> None:
        await asyncio.gather(*(commits.publish(s) for s in staged))

    asyncio.run(run())
    assert commits.batches == 1
    assert spool.list("incoming") == sorted(s.queue_id for s in staged)


def test_a_session_finishing_a_turn_later_joins_the_open_batch(tmp_path: Path) -> None:
    """A session whose DATA completes one loop turn after another's (its bytes were read in
    between) still shares that one's folder sync."""
    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)
    first, second = _stage(spool, 2)

    async def late() -> None:
        await asyncio.sleep(0)  # one turn later
        await commits.publish(second)

    async def run() -> None:
        await asyncio.gather(commits.publish(first), late())

    asyncio.run(run())
    assert commits.batches == 1
    assert len(spool.list("incoming")) == 2


def test_a_busy_listener_still_commits_after_max_turns(tmp_path: Path) -> None:
    """A message joining on every turn never keeps a batch open for good: batches close after
    MAX_TURNS turns while later messages keep coming, and every message is queued."""
    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)
    staged = _stage(spool, 4 * MAX_TURNS)

    async def run() -> None:
        waiting = []
        for pair in zip(staged[::2], staged[1::2], strict=True):  # two new sessions a turn
            waiting += [asyncio.ensure_future(commits.publish(s)) for s in pair]
            await asyncio.sleep(0)
        await asyncio.gather(*waiting)

    asyncio.run(run())
    assert commits.batches >= 2
    assert len(spool.list("incoming")) == len(staged)


def test_one_failed_rename_fails_only_its_own_message(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)
    good, bad = _stage(spool, 2)
    os.unlink(bad.tmp)  # as if the disk had lost it

    async def run() -> list[BaseException | None]:
        return list(await asyncio.gather(commits.publish(good), commits.publish(bad),
                                         return_exceptions=True))

    ok, failed = asyncio.run(run())
    assert ok is None and isinstance(failed, SpoolError)
    assert spool.list("incoming") == [good.queue_id]


def test_a_failed_folder_sync_fails_the_whole_batch(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Renamed but not known durable: every sender of the batch is told 451, never 250."""
    from runtime.mta import spool as spool_module

    def broken(_path: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(spool_module, "_fsync_dir", broken)
    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)

    async def run() -> list[BaseException | None]:
        return list(await asyncio.gather(*(commits.publish(s) for s in _stage(spool, 3)),
                                         return_exceptions=True))

    assert all(isinstance(r, SpoolError) for r in asyncio.run(run()))


def test_the_loop_goes_on_while_a_batch_syncs_and_the_next_batch_waits_its_turn(
        tmp_path: Path) -> None:
    """The syncs run in a thread: sessions are served meanwhile, and what they finish forms
    the next batch, committed only after the one before (one batch at a time), each message
    answered only once its own batch is durable."""
    import threading

    spool = Spool(tmp_path / "spool")
    commits = GroupCommit(spool)
    first, second = _stage(spool, 2)
    release = threading.Event()
    calls: list[list[str]] = []
    real = spool.publish

    def slow(staged: list[Staged]) -> list[SpoolError | None]:
        calls.append([s.queue_id for s in staged])
        if len(calls) == 1:
            assert release.wait(10)
        return real(staged)

    spool.publish = slow  # type: ignore[method-assign]

    async def run() -> None:
        a = asyncio.ensure_future(commits.publish(first))
        for _ in range(50):  # the first batch is committed and stuck in its sync
            await asyncio.sleep(0.01)
            if calls:
                break
        b = asyncio.ensure_future(commits.publish(second))
        for _ in range(20):  # the loop runs on; the second message waits for its batch
            await asyncio.sleep(0.005)
        assert not a.done() and not b.done() and len(calls) == 1
        release.set()
        await asyncio.gather(a, b)

    asyncio.run(run())
    assert calls == [[first.queue_id], [second.queue_id]]
    assert commits.batches == 2
    assert spool.list("incoming") == sorted([first.queue_id, second.queue_id])
