"""The durable spool: the message is on disk, fsync'd, before the listener answers 250.

Queue states are directories (Postfix's names): `incoming` (accepted, not yet picked up),
`active` (a worker owns it), `deferred` (waiting for a retry), `hold` (parked by an operator)
and `corrupt` (unreadable; never retried, an alert is raised). `tmp` holds files being written;
`free` holds the files of finished messages, reused for new ones (see Spool.remove).

Every move is write-fsync-rename (or a plain rename of a complete file) followed by an fsync of
the target directory, so a kill -9 at any moment leaves either the old or the new file, never a
half one. Several processes may share one spool: a worker claims a message by renaming it from
`incoming` or `deferred` into `active`; rename is atomic, so exactly one claim wins.

File format, version 2 (our own, documented, not pickle):

    FLSPOOL 2\\n
    <one line of JSON: the envelope header, see `Envelope`, plus "length" and "crc32" of
     the message bytes that follow>\\n
    <the raw message bytes, exactly as received (CRLF line ends)>

A file whose message bytes do not have that length and CRC-32 (a truncated or damaged file)
is unreadable (CorruptEntry): it goes to `corrupt` with an alert and is never delivered.
Version 1 files (the same without "length" and "crc32") are still read. The checksum is
computed from the bytes in memory as they are written, never by reading a file back.

Names are `<time in ns, 20 digits>-<12 hex of sha256>` so `sorted()` is FIFO.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from runtime.pipeline.envelope import CorruptEntry, Envelope

log = logging.getLogger("filterlang.spool")

MAGIC = b"FLSPOOL 2\n"
MAGIC_V1 = b"FLSPOOL 1\n"  # no length and checksum; still read
FREE_LIMIT = 4096  # emptied files kept in `free` for reuse
FREE_CHECK = 256  # removals between two counts of `free`
FREE_RELIST = 0.2  # seconds before `free` is listed again after it was found empty
FREE_RESERVE = 2048  # empty files made at start-up (Spool.reserve_free)
READ_WHOLE = 256 * 1024  # bytes: a queue file up to this size is read in one piece
FREE_KEEP_BYTES = 64 * 1024  # a recycled file up to this size keeps its blocks (and bytes)
STATES = ("incoming", "active", "deferred", "hold", "corrupt")


class SpoolError(Exception):
    """The spool could not store or move a message (disk full, I/O error)."""




def encode_header(envelope: Envelope, body: Sequence[bytes] = ()) -> bytes:
    """The magic line and the JSON header for a file whose message bytes are `body` joined
    (given in pieces, as they are written, so they are never joined just to be counted)."""
    fields = envelope.to_json()
    length = crc = 0
    for piece in body:
        length += len(piece)
        crc = zlib.crc32(piece, crc)
    fields["length"] = length
    fields["crc32"] = crc
    header = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return MAGIC + header.encode("ascii") + b"\n"


def encode(envelope: Envelope, data: bytes) -> bytes:
    return encode_header(envelope, (data,)) + data


def _header(blob: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header of a file that starts with `blob`, and where its message bytes start."""
    magic = blob[: len(MAGIC)]
    if magic != MAGIC and magic != MAGIC_V1:
        raise CorruptEntry("not a spool file (bad magic)")
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptEntry("truncated header")
    try:
        header = json.loads(blob[len(MAGIC) : end])
    except ValueError as exc:
        raise CorruptEntry(f"bad header JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not an object")
    if magic == MAGIC and not (isinstance(header.get("length"), int)
                               and isinstance(header.get("crc32"), int)):
        raise CorruptEntry("version 2 header without length and crc32")
    return header, end + 1


def _check_body(header: dict[str, Any], body: bytes) -> None:
    """A version 2 file's message bytes are complete and undamaged (version 1: no check)."""
    length = header.get("length")
    if length is None:
        return
    if len(body) != length:
        raise CorruptEntry(f"message bytes truncated or extended: {len(body)} of {length}")
    if zlib.crc32(body) != header.get("crc32"):
        raise CorruptEntry("message bytes damaged (CRC-32 mismatch)")


def decode(blob: bytes) -> tuple[Envelope, bytes]:
    header, start = _header(blob)
    body = blob[start:]
    _check_body(header, body)
    return Envelope.from_json(header), body


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes]) -> int:
    """writev until every byte is written (a regular file takes it all at once unless the
    disk fills or a signal interrupts); the number of bytes."""
    total = sum(len(p) for p in parts)
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.writev(fd, views)
        if n <= 0:
            raise OSError(28, "No space left on device")
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]
    return total


def _read_all(fd: int, size: int) -> bytes:
    """`size` bytes (from fstat) of a complete queue file: one read, unless it comes short."""
    chunks = []
    got = 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            break  # shorter than fstat said: decode() finds what is missing
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@frozen
class Staged:
    """A message written in `tmp`, not yet in its queue state; `synced` once its bytes are
    durable (else `publish` syncs them first)."""

    state: str
    queue_id: str
    tmp: str
    synced: bool = True


def _find_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) where it reports write-back errors (Linux 5.8 and later); else None.

    The standard library has no syncfs. Before 5.8 it returned 0 even when writing failed,
    which would turn a lost message into a 250, so older kernels sync file by file."""
    if sys.platform != "linux":
        return None
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if found is None or (int(found[1]), int(found[2])) < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _find_syncfs()
# What syncfs answers where it exists but cannot work (a sandbox, an odd filesystem): not a
# write error, so the spool syncs file by file instead of refusing every message.
_NO_SYNCFS = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM})


class Spool:
    """A spool directory shared by every process of one gateway host."""

    def __init__(self, root: Path, owner: str = "main", sync: str = "filesystem") -> None:
        self.root = Path(root)
        self.owner = owner
        self.sync = sync
        # Batched stages (a listener's group commit) are synced together by one syncfs(2) of
        # the spool's filesystem in `publish`, where the kernel has it; else each on its own.
        self._syncfs = _SYNCFS if sync == "filesystem" else None
        # The spool folder, for syncfs: opened before the first batched write and kept, since
        # syncfs reports a write-back error only to descriptors opened before it happened.
        self._sync_fd = -1
        # Large messages being written outside a batch by this process (a listener's thread):
        # while there is one, batches sync file by file, since a syncfs would also wait for
        # that message's megabytes and hold up every other session of the listener.
        self.large_writes = 0
        # Mail is private: the folders are the gateway user's alone (Postfix's queue is too).
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for state in (*STATES, "tmp"):
            (self.root / state).mkdir(mode=0o700, exist_ok=True)
        self.dir("active").mkdir(mode=0o700, exist_ok=True)
        # Folder names as strings for the per-message paths: building pathlib objects for
        # every write, claim, read and removal was ~3% of a worker's CPU.
        self._dirs = {state: str(self.dir(state)) for state in STATES}
        self._tmp = str(self.root / "tmp")
        (self.root / "free").mkdir(mode=0o700, exist_ok=True)
        self._free = str(self.root / "free")
        self._free_names: list[str] = []  # recycled files seen at the last listing of `free`
        self._free_none_at = -FREE_RELIST  # when a listing of `free` last found nothing
        self._removed = 0
        self._free_full = False
        # Sizes of the `active` files read (Spool.read), so `remove` knows a small file
        # without a stat (one system call per message; 2 us).
        self._active_sizes: dict[str, int] = {}

    def dir(self, state: str) -> Path:
        # Each process owns a subfolder of `active`, so when one worker dies the supervisor
        # can give exactly its messages back to `incoming` while the others keep theirs.
        if state == "active":
            return self.root / "active" / self.owner
        return self.root / state

    @staticmethod
    def new_id(data: bytes) -> str:
        digest = hashlib.sha256(data[:4096] + os.urandom(8)).hexdigest()[:12]
        return f"{time.time_ns():020d}-{digest}"

    def _recycle_into(self, tmp: str) -> None:
        """Move a recycled file from `free` to `tmp`, if there is one: writing into it reuses
        its inode. Allocating a new inode for every message was a fifth of the gateway's CPU:
        ext4 skips the inodes freed in the last seconds one by one, and a spool frees one per
        message."""
        names = self._free_names
        if not names:
            now = time.monotonic()
            if now - self._free_none_at < FREE_RELIST:
                return
            with contextlib.suppress(OSError):
                names.extend(os.listdir(self._free))
            if not names:
                self._free_none_at = now
                return
        while names:
            with contextlib.suppress(OSError):  # another process took it first
                os.rename(f"{self._free}/{names.pop()}", tmp)
                return

    def _stage(self, state: str, queue_id: str, parts: list[bytes], batched: bool = False) -> Staged:
        """Write a message into `tmp`; `publish` moves it into `state`. Its bytes are made
        durable here, or, for a batched stage where syncfs is used, by `publish` for the whole
        batch at once. A recycled file is overwritten in place rather than truncated: its
        blocks stay allocated, so fdatasync writes the data and nothing else (no journal
        commit for freed and reallocated blocks; the spool's share of the gateway's CPU
        halved)."""
        tmp = f"{self._tmp}/{queue_id}.{os.getpid()}.tmp"
        sync_now = not (batched and self._syncfs is not None and not self.large_writes)
        try:
            if not sync_now and self._sync_fd < 0:
                self._sync_fd = os.open(self._tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._recycle_into(tmp)
            # Header, our Received: line and the body in one writev: no copy of a 50 MB body.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                size = _write_all(fd, parts)
                if os.fstat(fd).st_size > size:  # a recycled file that held a longer message
                    os.ftruncate(fd, size)
                if sync_now:
                    # fdatasync: the bytes and the size, not the timestamps nobody reads back.
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SpoolError(f"cannot write {state}/{queue_id}: {exc.strerror}") from exc
        return Staged(state, queue_id, tmp, synced=sync_now)

    def _sync_batch(self, unsynced: builtins.list[Staged]) -> str | None:
        """Make every byte written to the spool's filesystem so far durable (syncfs): the
        data of a batch of stages with one journal commit and device flush, where fdatasync
        takes one per file. In bench/gateway.py's set-up (batches of about five messages) the
        listener's CPU per message went from 0.62-0.74 to 0.50-0.56 ms and it accepted
        1,047-1,338 msg/s instead of 868-1,034 (three alternating pairs of runs, 1 + 1
        processes). Where syncfs exists but cannot work (ENOSYS from a sandbox, say), the
        batch's files are synced one by one, and so is every later batch. None, or why it
        failed."""
        if self._syncfs is not None:
            if self._syncfs(self._sync_fd) == 0:
                return None
            error = ctypes.get_errno()
            if error not in _NO_SYNCFS:
                return os.strerror(error)
            # A kernel or sandbox that has the call but cannot do it: file by file from now on.
            log.warning("syncfs on the spool failed (%s); syncing each file instead",
                        os.strerror(error))
            self._syncfs = None
        try:
            for item in unsynced:
                fd = os.open(item.tmp, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def publish(self, staged: builtins.list[Staged]) -> builtins.list[SpoolError | None]:
        """Sync the stages that are not yet durable (one syncfs for all of them), rename them
        into their states, then fsync each directory once: a listener's messages that finish
        close together share the flushes (group commit, see runtime/groupcommit.py). One
        result per file: None once it is durable in its state. A file is renamed only once
        its bytes are durable, so a queue folder never holds a message that a crash could
        leave half written."""
        results: builtins.list[SpoolError | None] = []
        dirs: dict[str, builtins.list[int]] = {}
        unsynced = [item for item in staged if not item.synced]
        problem = self._sync_batch(unsynced) if unsynced else None
        for i, item in enumerate(staged):
            if problem is not None and not item.synced:
                with contextlib.suppress(OSError):
                    os.unlink(item.tmp)
                results.append(SpoolError(f"cannot write {item.state}/{item.queue_id}: {problem}"))
                continue
            try:
                os.replace(item.tmp, f"{self._dirs[item.state]}/{item.queue_id}")
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(item.tmp)
                results.append(SpoolError(f"cannot write {item.state}/{item.queue_id}: {exc.strerror}"))
                continue
            results.append(None)
            dirs.setdefault(item.state, []).append(i)
        for state, done in dirs.items():
            try:
                _fsync_dir(self._dirs[state])
            except OSError as exc:
                # Renamed but not known to be durable: not stored, as far as the sender is
                # told (a retry may bring a duplicate, never a loss).
                for i in done:
                    results[i] = SpoolError(f"cannot sync {state}: {exc.strerror}")
        return results

    def _publish_one(self, staged: Staged) -> None:
        problem = self.publish([staged])[0]
        if problem is not None:
            raise problem

    def stage(self, envelope: Envelope, data: bytes, state: str = "incoming", *,
              queue_id: str | None = None, prefix: bytes = b"", batched: bool = False) -> Staged:
        """The first half of `store`: the message in `tmp`; `publish` completes it. Durable
        already unless `batched` (published with others) and the spool syncs batches whole."""
        queue_id = queue_id or self.new_id(data)
        env = envelope
        if env.queue_id != queue_id or not env.received_at:  # else as the listener made it
            env = attrs.evolve(env, queue_id=queue_id, received_at=env.received_at or time.time())
        return self._stage(state, queue_id, [encode_header(env, (prefix, data)), prefix, data],
                           batched)

    def store(self, envelope: Envelope, data: bytes, state: str = "incoming", *,
              queue_id: str | None = None, prefix: bytes = b"") -> str:
        """Durably store a new message; return its queue id. Raises SpoolError on any failure.

        `prefix` (e.g. our Received: line) is written before `data` without joining them, so
        a large message is never copied in memory.
        """
        staged = self.stage(envelope, data, state, queue_id=queue_id, prefix=prefix)
        self._publish_one(staged)
        return staged.queue_id

    def rewrite(self, state: str, envelope: Envelope, data: bytes) -> None:
        """Replace or create the file of `envelope.queue_id` in `state` (write-fsync-rename)."""
        self._publish_one(self._stage(state, envelope.queue_id,
                                      [encode_header(envelope, (data,)), data]))

    def read(self, state: str, queue_id: str) -> tuple[Envelope, bytes]:
        path = f"{self._dirs[state]}/{queue_id}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                if state == "active":
                    self._active_sizes[queue_id] = size
                if size <= READ_WHOLE:
                    # A small file in one read: open()'s buffered reader costs five more
                    # system calls (fstat, isatty, lseek, reads) for the same bytes.
                    blob = _read_all(fd, size)
                else:
                    with open(fd, "rb", closefd=False) as fh:
                        head = fh.read(len(MAGIC))
                        header = fh.readline(1 << 20)
                        # The body on its own, so it is never copied out of a larger buffer.
                        body = fh.read()
                    fields, _ = _header(head + header)
                    _check_body(fields, body)
                    return Envelope.from_json(fields), body
            finally:
                os.close(fd)
        except OSError as exc:
            raise CorruptEntry(f"cannot read: {exc.strerror}") from exc
        return decode(blob)

    def move(self, queue_id: str, src: str, dst: str, *, durable: bool = True) -> bool:
        """Atomically move a file between states; False if someone else moved it first.

        `durable=False` skips the directory fsync where losing the move in a crash only means
        the message is worked on again (a duplicate, never a loss): claiming into `active`.
        """
        if src == "active":
            self._active_sizes.pop(queue_id, None)
        try:
            os.rename(f"{self._dirs[src]}/{queue_id}", f"{self._dirs[dst]}/{queue_id}")
        except FileNotFoundError:
            return False
        if durable:
            _fsync_dir(self._dirs[dst])
        return True

    def hold_back(self, queue_id: str, until: float) -> bool:
        """Give an `active` message back to `deferred` without writing a byte (the disk may be
        full), not to be claimed before `until` (wall-clock time): the file's mtime carries it,
        since its header cannot be rewritten. False if the file is gone."""
        path = f"{self._dirs['active']}/{queue_id}"
        try:
            os.utime(path, (until, until))
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot set the retry time of %s: %s", queue_id, exc.strerror)
        return self.move(queue_id, "active", "deferred")

    def remove(self, state: str, queue_id: str) -> None:
        """The message is done with: its file goes to `free` for a later message to reuse (see
        _recycle_into); beyond FREE_LIMIT files there, it is deleted. A file larger than
        FREE_KEEP_BYTES is emptied; a smaller one keeps its old bytes until they are
        overwritten (`free`, like every spool folder, is private to the gateway's user).

        No directory fsync: if a crash undoes the move, the message is delivered again
        (counted as a duplicate), which is the accepted price of speed; never a loss. Moved
        first and emptied after, so a crash in between never leaves an empty queue file."""
        path = f"{self._dirs[state]}/{queue_id}"
        size = self._active_sizes.pop(queue_id, None) if state == "active" else None
        self._removed += 1
        if self._removed % FREE_CHECK == 0:
            with contextlib.suppress(OSError):
                self._free_full = len(os.listdir(self._free)) >= FREE_LIMIT
        try:
            if self._free_full:
                os.unlink(path)
                return
            recycled = f"{self._free}/{queue_id}"
            os.rename(path, recycled)
        except FileNotFoundError:
            return
        # A small file keeps its blocks, so the next message overwrites them in place (see
        # _stage); a large one gives its space back now.
        if size is not None and size <= FREE_KEEP_BYTES:
            return  # read by this process, so known small: no stat
        with contextlib.suppress(OSError):  # taken for a new message meanwhile: fine too
            if os.stat(recycled).st_size > FREE_KEEP_BYTES:
                os.truncate(recycled, 0)

    def list(self, state: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir(state)) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def owners(self) -> builtins.list[str]:
        """The processes that have an `active` folder (live or from a crashed run)."""
        return sorted(p.name for p in (self.root / "active").iterdir() if p.is_dir())

    def with_owner(self, owner: str) -> Spool:
        return Spool(self.root, owner, self.sync)

    def list_all(self, state: str) -> builtins.list[str]:
        """Like `list`, but `active` covers every process's folder."""
        if state != "active":
            return self.list(state)
        return sorted(q for o in self.owners() for q in self.with_owner(o).list("active"))

    def counts(self) -> dict[str, int]:
        return {state: len(self.list_all(state)) for state in STATES}

    def find(self, queue_id: str) -> tuple[str, Spool] | None:
        """The state holding `queue_id`, and a Spool view that can read it there."""
        for state in STATES:
            if state == "active":
                for owner in self.owners():
                    view = self.with_owner(owner)
                    if (view.dir("active") / queue_id).exists():
                        return state, view
            elif (self.dir(state) / queue_id).exists():
                return state, self
        return None

    def release_owner(self, owner: str) -> int:
        """Give one (dead) process's `active` messages back to `incoming`."""
        view = self.with_owner(owner)
        moved = sum(1 for q in view.list("active") if view.move(q, "active", "incoming"))
        with contextlib.suppress(OSError):
            view.dir("active").rmdir()
        return moved

    def reserve_free(self, count: int = FREE_RESERVE) -> int:
        """Top `free` up to `count` empty files, so a burst of new messages reuses inodes
        instead of allocating them (see _recycle_into); returns how many were made."""
        try:
            have = len(os.listdir(self._free))
        except OSError:
            return 0
        made = 0
        for i in range(have, count):
            try:
                os.close(os.open(f"{self._free}/reserve-{os.getpid()}-{i}",
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                made += 1
            except FileExistsError:
                continue
            except OSError:
                break  # a full disk: the reserve is an optimisation, never a requirement
        return made

    def recover(self) -> int:
        """After a crash: give every `active` file back to `incoming`; clear stale temp files.

        Only call this when no other process of this spool is running (at gateway start).
        """
        moved = sum(self.release_owner(owner) for owner in self.owners())
        self.dir("active").mkdir(exist_ok=True)
        for name in os.listdir(self.root / "tmp"):
            (self.root / "tmp" / name).unlink(missing_ok=True)
        return moved

    def claim_ready(self, now: float | None = None, include_deferred: bool = True,
                    include_incoming: bool = True) -> Iterator[str]:
        """Claim messages ready to work on (incoming, then deferred whose time has come)."""
        for queue_id in self.list("incoming") if include_incoming else ():
            if self.move(queue_id, "incoming", "active", durable=False):
                yield queue_id
        if not include_deferred:
            return
        now = time.time() if now is None else now
        for queue_id in self.list("deferred"):
            try:
                env, _ = self.read("deferred", queue_id)
            except CorruptEntry:
                if self.move(queue_id, "deferred", "active"):
                    yield queue_id  # the worker finds it corrupt and moves it to `corrupt`
                continue
            if env.next_attempt <= now and not self._held_back(queue_id) and self.move(
                    queue_id, "deferred", "active", durable=False):
                yield queue_id

    def _held_back(self, queue_id: str) -> bool:
        return self.held_until(queue_id) > 0

    def held_until(self, queue_id: str) -> float:
        """When a deferred message that `hold_back` put there may be tried (its file's mtime,
        when in the future), else 0. A file written normally has its write time, never a
        future one."""
        try:
            mtime = os.stat(f"{self._dirs['deferred']}/{queue_id}").st_mtime
        except OSError:
            return 0.0
        return mtime if mtime > time.time() else 0.0
