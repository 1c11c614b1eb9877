"""The gateway's queue in its event loop (QueueRunner.run_async, as a queue process of
`filterlang serve` runs it until stopped): delivery over the asyncio SMTP client, deferral
while the next hop is down and delivery when it returns, a failing stage parks the message in
hold, and the doorbell between listener and queue processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiosmtpd.controller import Controller

from runtime.config.config import Delivery
from runtime.mta.doorbell import Doorbell
from runtime.mta.queue import QueueRunner
from runtime.mta.smtp_client import AsyncSMTPTransport
from runtime.mta.spool import Envelope, Spool
from runtime.mta.tracking import Tracker
from runtime.mta.transport import MemoryTransport
from runtime.pipeline.flow import InFlight

from .test_delivery import MSG, Clock, Sink, free_port


def make(tmp_path: Path, port: int, clock: Clock, stages: tuple[object, ...] = ()) -> QueueRunner:
    cfg = Delivery(relay=f"127.0.0.1:{port}", retry_schedule=(60.0,), max_queue_lifetime=3600.0,
                   connect_timeout=2.0)
    return QueueRunner(Spool(tmp_path / "spool"), cfg, AsyncSMTPTransport(2.0), clock=clock,
                       stages=stages, tracker=Tracker(tmp_path / "track.jsonl"))  # type: ignore[arg-type]


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


def run(runner: QueueRunner, scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        task = asyncio.get_running_loop().create_task(runner.run_async())
        try:
            await scenario()
        finally:
            runner.request_stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


def events(tmp_path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (tmp_path / "track.jsonl").read_text().splitlines()]


def test_offered_message_is_delivered_over_smtp(tmp_path: Path) -> None:
    sink, port = Sink(pipelining=True), free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    runner = make(tmp_path, port, Clock())

    opened: list[int] = []

    async def scenario() -> None:
        for i in range(5):  # at once: delivered side by side, a connection each
            runner.offer(runner.spool.store(Envelope("a@example.com", (f"r{i}@example.org",)), MSG))
        await until(lambda: len(sink.messages) == 5 and not runner.spool.list_all("active"))
        opened.append(sink.connections)
        for i in range(5, 10):  # one after another: the open connections are reused
            runner.offer(runner.spool.store(Envelope("a@example.com", (f"r{i}@example.org",)), MSG))
            await until(lambda n=i + 1: len(sink.messages) == n)  # type: ignore[misc]

    try:
        run(runner, scenario)
    finally:
        ctl.stop()
    assert sorted(m[1][0] for m in sink.messages) == sorted(f"r{i}@example.org" for i in range(10))
    assert 1 <= opened[0] <= 5 and sink.connections == opened[0]
    assert events(tmp_path).count("delivered") == 10
    assert runner.spool.counts() == {s: 0 for s in runner.spool.counts()}


def test_next_hop_down_defers_then_delivers_when_it_returns(tmp_path: Path) -> None:
    sink, port, clock = Sink(), free_port(), Clock()
    runner = make(tmp_path, port, clock)
    ctl = Controller(sink, hostname="127.0.0.1", port=port)

    async def scenario() -> None:
        runner.offer(runner.spool.store(Envelope("a@example.com", ("b@example.org",)), MSG))
        await until(lambda: len(runner.spool.list("deferred")) == 1)
        ctl.start()  # the next hop is back; the retry is due a minute later
        clock.now += 61
        await until(lambda: len(sink.messages) == 1 and not runner.spool.list("deferred"))

    try:
        run(runner, scenario)
    finally:
        ctl.stop()
    assert sink.messages[0][2] == MSG
    assert events(tmp_path) == ["received", "deferred", "delivered"]


class Broken:
    name = "message_filters"

    def process(self, msg: InFlight) -> None:
        raise RuntimeError("a bug in a stage")


def test_a_failing_stage_parks_the_message_in_hold(tmp_path: Path) -> None:
    runner = make(tmp_path, free_port(), Clock(), stages=(Broken(),))

    async def scenario() -> None:
        runner.offer(runner.spool.store(Envelope("a@example.com", ("b@example.org",)), MSG))
        await until(lambda: len(runner.spool.list("hold")) == 1)

    run(runner, scenario)
    assert runner.spool.counts()["hold"] == 1 and runner.spool.counts()["active"] == 0


def test_a_transport_without_asyncio_runs_in_threads(tmp_path: Path) -> None:
    memory = MemoryTransport()
    cfg = Delivery(relay="127.0.0.1:1")
    runner = QueueRunner(Spool(tmp_path / "spool"), cfg, memory)

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(runner.run_async())
        runner.spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)  # not offered:
        await until(lambda: len(memory.sent) == 1)  # found by listing `incoming`
        runner.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert memory.sent[0][3] == MSG


def test_doorbell_passes_queue_ids_and_ignores_anything_else() -> None:
    bell = Doorbell()
    got: list[str] = []

    async def main() -> None:
        bell.listen(asyncio.get_running_loop(), got.append)
        bell.ring("00000001764398400123-0123456789ab")
        bell.ring("../../etc/passwd")
        bell._writer.send(b"\xff\xfe")
        bell.ring("00000001764398400124-ba9876543210")
        await until(lambda: len(got) == 2, 5)

    asyncio.run(main())
    bell.close()


def test_doorbell_sends_the_ids_of_one_loop_turn_together() -> None:
    """A group commit's messages reach a queue process in one note; every id arrives once,
    also when a turn rings more ids than one note carries."""
    from runtime.mta.doorbell import IDS_PER_NOTE

    bell = Doorbell()
    ids = [f"{i:020d}-0123456789ab" for i in range(2 * IDS_PER_NOTE + 3)]

    async def ring_all() -> None:
        for qid in ids:
            bell.ring(qid)
        await asyncio.sleep(0)  # the end of the turn: the notes go out

    asyncio.run(ring_all())
    notes = []
    with contextlib.suppress(BlockingIOError):
        while True:
            notes.append(bell._reader.recv(65536))
    assert len(notes) == 3

    got: list[str] = []

    async def receive() -> None:
        for note in notes:  # as the listener sent them
            bell._writer.send(note)
        bell.listen(asyncio.get_running_loop(), got.append)
        await until(lambda: len(got) == len(ids), 5)

    asyncio.run(receive())
    assert got == ids
    bell.close()
