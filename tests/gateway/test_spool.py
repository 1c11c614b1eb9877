"""The durable spool: format round trip, recovery after a crash, corrupt files, write errors."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import attrs
import pytest

from runtime.config.config import Delivery, load_config
from runtime.config.schema import ConfigError
from runtime.mta import spool as spool_module
from runtime.mta.queue import QueueRunner
from runtime.mta.spool import CorruptEntry, Envelope, Spool, SpoolError, decode, encode
from runtime.mta.tracking import Tracker
from runtime.mta.transport import MemoryTransport

from .queue_support import run_queue

ENV = Envelope("a@example.com", ("b@example.org", "c@example.org"), ("BODY=8BITMIME",),
               (("NOTIFY=FAILURE",), ()), peer="127.0.0.1", policy="relay")
DATA = b"Subject: t\r\n\r\nbody \xe9\r\n"


def test_round_trip_keeps_bytes_and_envelope(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    qid = spool.store(ENV, DATA)
    env, data = spool.read("incoming", qid)
    assert data == DATA
    assert env.rcpt_tos == ENV.rcpt_tos and env.rcpt_options == ENV.rcpt_options
    assert env.queue_id == qid and env.received_at > 0
    assert (tmp_path / "incoming" / qid).read_bytes().startswith(b"FLSPOOL 2\n{")
    assert os.listdir(tmp_path / "tmp") == []


def test_names_sort_fifo(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = [spool.store(ENV, DATA + bytes([i])) for i in range(5)]
    assert spool.list("incoming") == ids


@pytest.mark.parametrize("blob", [b"", b"garbage", b"FLSPOOL 1\n{not json\n", b"FLSPOOL 1\n[1]\n",
                                  b'FLSPOOL 1\n{"version": 9}\n', b'FLSPOOL 1\n{"version": 1}\n'])
def test_corrupt_shapes_are_detected(blob: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(blob)


def test_recover_returns_active_to_incoming(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    qid = spool.store(ENV, DATA)
    assert list(spool.claim_ready()) == [qid]
    (tmp_path / "tmp" / "half.tmp").write_bytes(b"FLSP")  # a write cut by kill -9
    assert Spool(tmp_path).recover() == 1
    assert spool.list("incoming") == [qid] and spool.list("active") == []
    assert os.listdir(tmp_path / "tmp") == []


def test_corrupt_file_moves_aside_and_never_blocks(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "incoming" / "00000000000000000001-bad").write_bytes(b"junk")
    good = spool.store(ENV, DATA)
    transport = MemoryTransport()
    runner = QueueRunner(spool, Delivery(relay="127.0.0.1:25"), transport,
                         alerts=Tracker(tmp_path / "alerts.jsonl"), alert_email="ops@example.com")
    assert run_queue(runner) == 3  # the corrupt entry, the good message, the alert mail
    assert '"kind":"corrupt_queue_file"' in (tmp_path / "alerts.jsonl").read_text()
    assert spool.list("corrupt") == ["00000000000000000001-bad"]
    assert [s[2] for s in transport.sent] == [ENV.rcpt_tos, ("ops@example.com",)]
    assert b"Subject: filterlang alert: corrupt_queue_file" in transport.sent[1][3]
    assert spool.find(good) is None


def test_dead_worker_messages_go_back(tmp_path: Path) -> None:
    main = Spool(tmp_path)
    worker_a, worker_b = main.with_owner("101"), main.with_owner("102")
    qa = main.store(ENV, DATA)
    assert list(worker_a.claim_ready()) == [qa]
    qb = main.store(ENV, DATA + b"x")
    assert list(worker_b.claim_ready()) == [qb]
    assert main.counts()["active"] == 2
    assert main.release_owner("101") == 1  # worker 101 died; 102 keeps its message
    assert main.list("incoming") == [qa] and worker_b.list("active") == [qb]
    assert main.find(qb) is not None and main.find(qb)[0] == "active"  # type: ignore[index]


def test_write_error_raises_spool_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "tmp").rmdir()
    (tmp_path / "tmp").write_bytes(b"not a directory")
    with pytest.raises(SpoolError):
        spool.store(ENV, DATA)


def test_encode_is_plain_json_header() -> None:
    blob = encode(ENV, DATA)
    assert b"pickle" not in blob and blob.endswith(DATA)


def test_envelope_header_round_trips_every_field() -> None:
    env = Envelope("a@example.com", ("b@example.org", "c@example.org"), ("BODY=8BITMIME",),
                   (("NOTIFY=NEVER",), ()), "192.0.2.1", "relay", "helo.example", 1.5, 2, 3.5,
                   "451 later", "q1", True, "mx.example:2525", ("filter x matched",), "Inbound")
    assert set(env.to_json()) == {f.name for f in attrs.fields(Envelope)} | {"version"}
    assert decode(encode(env, b"body"))[0] == env


def test_finished_message_files_are_reused_in_place(tmp_path: Path) -> None:
    """A delivered message's file is kept for the next message (same inode, overwritten in
    place); a shorter new message reads back whole, with nothing of the old one after it."""
    spool = Spool(tmp_path / "spool")
    first = spool.store(Envelope("a@example.com", ("b@example.org",)),
                        b"Subject: one\r\n\r\n" + b"secret\r\n" * 100)
    inode = os.stat(spool.dir("incoming") / first).st_ino
    spool.remove("incoming", first)
    [kept] = os.listdir(tmp_path / "spool" / "free")
    # (A listener that just found `free` empty looks again a second later: a fresh one here.)
    spool = Spool(tmp_path / "spool")
    second = spool.store(Envelope("c@example.com", ("d@example.org",)), b"Subject: two\r\n\r\nx\r\n")
    assert os.stat(spool.dir("incoming") / second).st_ino == inode
    assert os.listdir(tmp_path / "spool" / "free") == []
    env, data = spool.read("incoming", second)
    assert env.mail_from == "c@example.com" and data == b"Subject: two\r\n\r\nx\r\n"
    assert b"secret" not in (spool.dir("incoming") / second).read_bytes()
    assert spool.list("incoming") == [second]


def test_a_large_finished_message_gives_its_space_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    big = spool.store(Envelope("a@example.com", ("b@example.org",)),
                      b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 100)
    spool.remove("incoming", big)
    [kept] = os.listdir(tmp_path / "spool" / "free")
    assert os.stat(tmp_path / "spool" / "free" / kept).st_size == 0


def test_spool_is_private_to_the_gateway_user(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.reserve_free(1)
    qid = spool.store(Envelope("a@example.com", ("b@example.org",)), b"Subject: s\r\n\r\nx\r\n")
    assert stat.S_IMODE(os.stat(tmp_path / "spool").st_mode) == 0o700
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in (tmp_path / "spool").iterdir())
    assert stat.S_IMODE(os.stat(spool.dir("incoming") / qid).st_mode) == 0o600


def test_messages_staged_together_are_published_together(tmp_path: Path) -> None:
    """Group commit: staged files are invisible until published, then all are in `incoming`."""
    spool = Spool(tmp_path / "spool")
    staged = [spool.stage(Envelope("a@example.com", ("b@example.org",)), b"Subject: %d\r\n\r\n" % i)
              for i in range(3)]
    assert spool.list("incoming") == []
    assert spool.publish(staged) == [None, None, None]
    assert spool.list("incoming") == sorted(s.queue_id for s in staged)
    assert os.listdir(tmp_path / "spool" / "tmp") == []


@pytest.mark.parametrize("mode", ["filesystem", "file"])
def test_a_batch_is_synced_once_before_any_file_is_renamed(tmp_path: Path, mode: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With spool_sync = "filesystem", batched stages are not synced one by one: publish runs
    one syncfs for the batch, and only then renames (a queue folder never holds a file whose
    bytes a crash could lose). With "file", each stage is synced on its own and no syncfs runs."""
    spool = Spool(tmp_path / "spool", sync=mode)
    if mode == "filesystem" and spool._syncfs is None:
        pytest.skip("no syncfs(2) on this system (non-Linux or a kernel before 5.8)")
    events: list[str] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        events.append("fdatasync")
        real_fdatasync(fd)

    monkeypatch.setattr(spool_module.os, "fdatasync", fdatasync)
    if spool._syncfs is not None:
        real_syncfs = spool._syncfs

        def syncfs(fd: int) -> int:
            events.append(f"syncfs, {len(spool.list('incoming'))} in incoming")
            return real_syncfs(fd)

        monkeypatch.setattr(spool, "_syncfs", syncfs)
    staged = [spool.stage(Envelope("a@example.com", ("b@example.org",)), b"Subject: %d\r\n\r\n" % i,
                          batched=True) for i in range(3)]
    assert spool.publish(staged) == [None, None, None]
    assert len(spool.list("incoming")) == 3
    if mode == "filesystem":
        assert events == ["syncfs, 0 in incoming"]
        assert [s.synced for s in staged] == [False, False, False]
    else:
        assert events == ["fdatasync"] * 3
    # Not batched (a queue process's rewrite, a large message): synced on its own either way.
    events.clear()
    spool.store(ENV, DATA)
    assert events == ["fdatasync"]
    # While a large message is written beside the batch, a syncfs would wait for its data
    # too: the batch's messages are synced one by one instead.
    events.clear()
    spool.large_writes = 1
    staged = [spool.stage(ENV, DATA, batched=True)]
    assert spool.publish(staged) == [None] and events == ["fdatasync"]


def test_a_syncfs_that_cannot_work_falls_back_to_file_by_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox may have the call and answer ENOSYS: that is not a write error, so the batch
    is synced file by file (and every later one), and its messages are queued, not refused."""
    spool = Spool(tmp_path / "spool", sync="filesystem")
    if spool._syncfs is None:
        pytest.skip("no syncfs(2) on this system (non-Linux or a kernel before 5.8)")
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real_fdatasync(fd)

    def no_syncfs(_fd: int) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(spool_module.os, "fdatasync", fdatasync)
    monkeypatch.setattr(spool, "_syncfs", no_syncfs)
    staged = [spool.stage(ENV, DATA, batched=True) for _ in range(2)]
    assert synced == []
    assert spool.publish(staged) == [None, None] and len(spool.list("incoming")) == 2
    assert len(synced) == 2 and spool._syncfs is None
    assert spool.stage(ENV, DATA, batched=True).synced  # later stages sync as they are written


def test_a_syncfs_write_error_refuses_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool", sync="filesystem")
    if spool._syncfs is None:
        pytest.skip("no syncfs(2) on this system (non-Linux or a kernel before 5.8)")

    def eio(_fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(spool, "_syncfs", eio)
    staged = [spool.stage(ENV, DATA, batched=True) for _ in range(2)]
    results = spool.publish(staged)
    assert all(isinstance(r, SpoolError) and "Input/output error" in str(r) for r in results)
    assert spool.list("incoming") == [] and os.listdir(tmp_path / "spool" / "tmp") == []


def test_unknown_spool_sync_mode_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[storage]\nspool_sync = "sometimes"\n[[listeners]]\nport = 2525\n')
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    assert "spool_sync" in str(caught.value) and "filesystem" in str(caught.value)


def test_reserve_of_empty_files_is_topped_up_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.reserve_free(16) == 16
    assert spool.reserve_free(16) == 0  # already there
    files = list((tmp_path / "spool" / "free").iterdir())
    assert len(files) == 16 and all(f.stat().st_size == 0 for f in files)
    assert spool.counts() == {s: 0 for s in spool.counts()}  # no message comes from them


@pytest.mark.parametrize("size", [0, 4096, 300 * 1024])
def test_small_and_large_messages_read_back_exactly(tmp_path: Path, size: int) -> None:
    """Files up to 256 KB are read in one piece, larger ones header first: same bytes."""
    spool = Spool(tmp_path / "spool")
    data = b"Subject: s\r\n\r\n" + bytes(range(256)) * (size // 256)
    qid = spool.store(Envelope("a@example.com", ("b@example.org",)), data, prefix=b"Received: x\r\n")
    env, body = spool.read("incoming", qid)
    assert env.queue_id == qid and body == b"Received: x\r\n" + data
