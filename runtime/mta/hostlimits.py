"""The host access table's counters, shared by every listener process of one `serve`.

AsyncOS's mail flow policies cap, per client, concurrent connections, messages and recipients
per hour, and recipients per hour per envelope sender; a listener caps its connections in all
(`max_connections`), and a client's failed SMTP AUTH attempts lock it out. Counted in each
listener process, a client could have as many again per process (the kernel spreads its
connections over them), so the counts live in one table in shared memory that the supervisor
makes before it forks the listeners; a listener process made on its own (tests, fuzzing) makes
a private one.

Why shared memory under a lock, not a SQLite file or a counting process (Postfix's anvil): a
check is a few microseconds here, where a SQLite transaction or a round trip to another
process takes tens, and this is paid for every connection, MAIL and RCPT (bench/hostlimits.py
measures it). The lock is a robust process-shared pthread mutex in the mapping (an fcntl lock
where glibc has none): either way a listener killed while it holds the lock leaves no one
waiting; the next taker is told and goes on.

Who is one client: an IPv4 address, and an IPv6 /64 (top-level client_ipv4_prefix_length and
client_ipv6_prefix_length). A single IPv6 host is routinely given a whole /64 and takes a new
address in it whenever it likes (privacy addresses), so a cap per IPv6 address caps nothing.

Layout: BUCKETS buckets of WAYS entries, a key's bucket chosen by its digest (16 bytes of
BLAKE2b over the client or the sender, so any key fits and a collision is out of reach). The
digest is keyed with a secret the table draws when it is made (and the listeners inherit):
without it, a client with many addresses could work out which of them share a bucket, fill
one with connections so that everyone else in it goes uncounted, or churn a victim's
bucket until its rates are forgotten.
A bucket holds its WAYS keys side by side (one slice and a find() looks a key up) and then
their records. A record: when it was last used, the current hour window, messages and
recipients in this window and the one before, concurrent connections in all, the failed AUTH
attempts (their window's start, this window's count and the previous one's), and the
connections each listener process holds ("regions", one per process: the supervisor gives a
new listener a free region and, when the process is gone, crashed or drained, takes its
connections out of the totals and frees the region, so a dead process never holds counts);
records are rounded up to 4 bytes, so that the counts can be read as 32- and 16-bit numbers.
The listeners' own totals (keys from listener_key) live in an area of APART records kept
apart from the buckets, so that clients crowding a bucket can never leave a listener's
connections uncounted, which would lift its cap just when a flood makes it matter.

Hour rates are sliding-window counters: the previous hour's count, weighted by how much of it
still lies in the last 3,600 seconds, plus this hour's. A new key finds a free way or takes
the least recently used one that holds no connection (its rates are forgotten: the table
keeps about BUCKETS * WAYS keys); a bucket whose every way holds connections counts nothing
more (the client is let through, uncounted, and a warning logged at most once a minute).

Failed AUTH attempts slide the same way over the listener's auth_failure_window, but their
window starts at an address's first failure after a quiet spell, not on the clock: a burst of
failures is counted exactly (the lock-out comes at auth_max_failures, never one later because
the clock's window turned in the middle of the burst); a failure weighs fully for one window,
then less and less for one more.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import ipaddress
import logging
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence

log = logging.getLogger("filterlang.smtp")

BUCKETS = 4096
WAYS = 8
KEY = 16
WINDOW = 3600.0  # seconds: the "hour" of the hourly rates
MESSAGES, RECIPIENTS = 0, 1  # which hourly count
MIN_REGIONS = 32
APART = 64  # records for the listeners' totals (more listener names alive at once: uncounted)
_EMPTY = bytes(KEY)
# used, window, messages (this window, previous), recipients (this, previous), connections
_HEAD = struct.Struct("=7I")
_USED, _WINDOW, _MSG, _MSG_PREV, _RCPT, _RCPT_PREV, _CONNS = range(7)
_COUNT = struct.Struct("=I")
_CONNS_AT = _HEAD.size - _COUNT.size  # the connections' count: the last of the head
# Failed AUTH attempts: the window's start (monotonic seconds), this window's, the previous.
_AUTH = struct.Struct("=dII")
_REGIONS_AT = _HEAD.size + _AUTH.size
_REGION = struct.Struct("=H")
_REGION_MAX = 0xFFFF
_LISTENER = b"\xffLSN"  # how a listener's key begins: it lives in the area kept apart


def client_of(ip: str, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The client `ip` is counted as: the address, or its network when the prefix is shorter
    (``2001:db8:1:2::/64``). An IPv4-mapped IPv6 address is its IPv4 address, a link-local
    address itself. Anything that is not an address (a test's peer, a Unix socket) is counted
    as written."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = ipv4_prefix if addr.version == 4 else ipv6_prefix
    # Every host of a link has its link-local address in the one fe80::/64: grouped, a LAN
    # would be one client.
    if prefix >= addr.max_prefixlen or addr.is_link_local:
        return str(addr)
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def listener_key(name: str) -> bytes:
    """A listener's key: its total of connections, in the area kept apart from the clients.
    (A client's digest that happened to begin the same way, once in 2**32, would only be
    counted there instead.)"""
    return _LISTENER + hashlib.blake2b(b"listener:" + name.encode("utf-8", "surrogateescape"),
                                       digest_size=KEY - len(_LISTENER)).digest()


class _RobustMutex:
    """A process-shared, robust pthread mutex in the first bytes of the table's mapping (glibc,
    through ctypes). When its holder dies, the next taker is told (EOWNERDEAD) and carries
    on, as with an fcntl lock the kernel drops; it keeps a process's threads apart too.

    Taken first with trylock and given back with unlock called through ctypes.PyDLL, i.e.
    without letting go of the GIL: a call through CDLL lets go of it, and in a listener the
    group commit's thread, waiting for it after a sync, took it then, a thread switch per
    lock (bench/hostlimits.py: every connection 80 us dearer, against 6 us for the table's
    work). Only when trylock finds the mutex taken does the wait go through CDLL, GIL let go,
    so a thread of this process that holds the mutex can run on to give it back."""

    SIZE = 64  # bytes kept for it at the start of the mapping (pthread_mutex_t: 40)

    def __init__(self, mapping: mmap.mmap) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        held = ctypes.PyDLL(None)  # calls that keep the GIL
        self._try, self._give = held.pthread_mutex_trylock, held.pthread_mutex_unlock
        self._wait = libc.pthread_mutex_lock
        self._consistent = held.pthread_mutex_consistent
        for fn in (self._try, self._give, self._wait, self._consistent):
            fn.argtypes = [ctypes.c_void_p]
        self._memory = (ctypes.c_char * self.SIZE).from_buffer(mapping)
        self._at = ctypes.c_void_p(ctypes.addressof(self._memory))
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t: 4 bytes
        for call, args in ((libc.pthread_mutexattr_init, ()),
                           (libc.pthread_mutexattr_setpshared, (1,)),  # PTHREAD_PROCESS_SHARED
                           (libc.pthread_mutexattr_setrobust, (1,)),  # PTHREAD_MUTEX_ROBUST
                           (libc.pthread_mutex_init, None)):
            err = call(self._at, attr) if args is None else call(attr, *args)
            if err:
                raise OSError(err, os.strerror(err))
        libc.pthread_mutexattr_destroy(attr)

    def lock(self) -> None:
        err = self._try(self._at)
        if err == errno.EBUSY:
            err = self._wait(self._at)
        if err == errno.EOWNERDEAD:
            # A listener died holding it (kill -9 inside a check): its record may be one
            # count off until the supervisor releases its region; the table goes on.
            self._consistent(self._at)
            log.warning("host access table: a process died while updating it; going on")
        elif err:
            raise OSError(err, os.strerror(err))

    def unlock(self) -> None:
        self._give(self._at)


class _FileLock:
    """Where there is no robust pthread mutex to be had: an fcntl lock on an unlinked file
    (the kernel gives it back when its holder dies), and a thread lock, since POSIX locks do
    not keep one process's threads apart."""

    SIZE = 0

    def __init__(self) -> None:
        with tempfile.TemporaryFile() as handle:
            self._fd = os.dup(handle.fileno())
        weakref.finalize(self, os.close, self._fd)
        self._mutex = threading.Lock()

    def lock(self) -> None:
        self._mutex.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise

    def unlock(self) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()


class HostCounters:
    """The shared table (see the module's docstring). Made before fork, used after it."""

    def __init__(self, regions: int = MIN_REGIONS, *, robust: bool = True) -> None:
        self.regions = max(1, regions)
        # Rounded up to 4 bytes, so that every count lies where the 32-bit view reaches it.
        self.record = -(-(_REGIONS_AT + _REGION.size * self.regions) // 4) * 4
        self.bucket = WAYS * KEY + WAYS * self.record
        # Anonymous and shared (MAP_SHARED): the listeners forked after this see one table.
        # Pages are made as keys land in them.
        # After the mutex, each region's connections in all (so that the release of a
        # listener that closed all its own, the usual case, need not read the whole table),
        # then the listeners' area, then the buckets.
        self._held_at = _RobustMutex.SIZE
        self._apart = self._held_at + -(-_COUNT.size * self.regions // 64) * 64
        self._start = self._apart + APART * (KEY + self.record)
        self._map = mmap.mmap(-1, self._start + BUCKETS * self.bucket)
        mutex: _RobustMutex | _FileLock
        try:
            if not robust:
                raise AttributeError("robust mutex not wanted")
            mutex = _RobustMutex(self._map)
        except (AttributeError, OSError):  # not glibc (or a libc without robust mutexes)
            mutex = _FileLock()
        # The lock's own methods, called without one more method call in between (a
        # contextlib.contextmanager cost more than the lock itself).
        self._lock, self._unlock = mutex.lock, mutex.unlock
        self._mutex = mutex
        self._full_logged = 0.0
        # The digests' key (see the module's docstring): drawn here, before the fork, so every
        # listener process finds a client in the same bucket.
        self._secret = os.urandom(16)
        # The counts a connection moves, read and written through views of the mapping as
        # 32- and 16-bit numbers: a third of the cost of struct calls, on every connection.
        self._u32 = memoryview(self._map).cast("I")
        self._u16 = memoryview(self._map).cast("H")

    def ip_key(self, client: str) -> bytes:
        """The key of one client (see client_of) in this table."""
        return hashlib.blake2b(b"ip:" + client.encode("utf-8", "surrogateescape"),
                               digest_size=KEY, key=self._secret).digest()

    def sender_key(self, sender: str) -> bytes:
        """The key of one envelope sender (any case) in this table."""
        return hashlib.blake2b(b"from:" + sender.lower().encode("utf-8", "surrogateescape"),
                               digest_size=KEY, key=self._secret).digest()

    def _areas(self) -> Iterator[tuple[int, int]]:
        """(first record, records) of the listeners' area, then of each bucket."""
        yield self._apart + APART * KEY, APART
        for b in range(BUCKETS):
            yield self._start + b * self.bucket + WAYS * KEY, WAYS

    def _find(self, key: bytes, now: float, insert: bool) -> int | None:
        """The offset of `key`'s record (made if `insert`), or None."""
        if key.startswith(_LISTENER):
            base, ways = self._apart, APART
        else:
            base = self._start + int.from_bytes(key[:4], "little") % BUCKETS * self.bucket
            ways = WAYS
        mm = self._map
        records = base + ways * KEY
        # Looked for in the mapping itself: a copy of the listeners' 1 KB of keys first cost
        # a third of a connection's count.
        at = mm.find(key, base, records)
        while at >= 0 and (at - base) % KEY:
            at = mm.find(key, at + 1, records)
        if at >= 0:
            return records + (at - base) // KEY * self.record
        if not insert:
            return None
        keys = mm[base:records]
        victim, oldest = -1, 0
        for way in range(ways):
            if keys[way * KEY:(way + 1) * KEY] == _EMPTY:
                victim = way
                break
            head = _HEAD.unpack_from(mm, records + way * self.record)
            if head[_CONNS] == 0 and (victim < 0 or head[_USED] < oldest):
                victim, oldest = way, head[_USED]
        if victim < 0:
            if now - self._full_logged >= 60:
                self._full_logged = now
                log.warning("host access table: a bucket is full of clients holding "
                            "connections; new ones are not counted until some close")
            return None
        mm[base + victim * KEY:base + (victim + 1) * KEY] = key
        offset = records + victim * self.record
        mm[offset:offset + self.record] = bytes(self.record)
        # Used now: another key of the same check must not take this way back at once.
        _COUNT.pack_into(mm, offset, int(now))
        return offset

    # Concurrent connections.

    def connect(self, checks: Sequence[tuple[bytes, int]], region: int) -> tuple[int, ...] | int:
        """Count a connection in under every (key, limit) of `checks` (limit 0: none), all
        under one lock: the offsets of the records counted (the ticket for `disconnect`; a key
        the table had no room for is left out, uncounted), or, when a limit is reached, the
        index of the first such check, with nothing counted."""
        now = time.monotonic()
        u32, u16 = self._u32, self._u16
        found: list[int] = []
        self._lock()
        try:
            for i, (key, limit) in enumerate(checks):
                offset = self._find(key, now, insert=True)
                if offset is None:
                    continue
                if limit and u32[(offset + _CONNS_AT) >> 2] >= limit:
                    return i
                found.append(offset)
            ticket = []
            used = int(now)
            for offset in found:
                mine = ((offset + _REGIONS_AT) >> 1) + region
                if u16[mine] >= _REGION_MAX:
                    continue  # more than this process can count for one key: uncounted
                u16[mine] += 1
                u32[offset >> 2] = used
                u32[(offset + _CONNS_AT) >> 2] += 1
                ticket.append(offset)
            if ticket:
                u32[(self._held_at >> 2) + region] += len(ticket)
            return tuple(ticket)
        finally:
            self._unlock()

    def disconnect(self, ticket: tuple[int, ...], region: int) -> None:
        """Count out a connection that `connect` counted in (its ticket)."""
        u32, u16 = self._u32, self._u16
        total = (self._held_at >> 2) + region
        self._lock()
        try:
            for offset in ticket:
                mine = ((offset + _REGIONS_AT) >> 1) + region
                if u16[mine]:  # else the supervisor took this region's counts out already
                    u16[mine] -= 1
                    at = (offset + _CONNS_AT) >> 2
                    if u32[at]:
                        u32[at] -= 1
                    if u32[total]:
                        u32[total] -= 1
        finally:
            self._unlock()

    def connections(self, key: bytes) -> int:
        """Connections counted for `key` now, in all processes."""
        self._lock()
        try:
            offset = self._find(key, time.monotonic(), insert=False)
            return 0 if offset is None else int(_COUNT.unpack_from(self._map,
                                                                   offset + _CONNS_AT)[0])
        finally:
            self._unlock()

    def release_region(self, region: int) -> int:
        """Take the connections of `region` (a process that is gone) out of the totals; how
        many there were: as its listeners' totals counted them (every connection is counted
        under its listener, and under its IP as well where a per-IP cap is on), else (a table
        used without listeners' keys) as its clients' counts had them."""
        mm = self._map
        freed = listeners = 0
        total = self._held_at + _COUNT.size * region
        self._lock()
        try:
            left = _COUNT.unpack_from(mm, total)[0]
            if not left:
                return 0  # it closed every connection it counted: nothing to read through
            _COUNT.pack_into(mm, total, 0)
            for records, ways in self._areas():
                if freed >= left:
                    break  # all found: the rest of the table holds none of this region's
                for way in range(ways):
                    offset = records + way * self.record
                    mine = offset + _REGIONS_AT + _REGION.size * region
                    held = _REGION.unpack_from(mm, mine)[0]
                    if held:
                        at = offset + _CONNS_AT
                        _COUNT.pack_into(mm, at, max(0, _COUNT.unpack_from(mm, at)[0] - held))
                        _REGION.pack_into(mm, mine, 0)
                        freed += held
                if records == self._apart + APART * KEY:
                    listeners = freed  # the first area: the listeners'
        finally:
            self._unlock()
        return listeners or freed

    # Failed SMTP AUTH attempts.

    def _auth(self, offset: int, now: float, window: float) -> tuple[float, int, int, float]:
        """A record's failures, moved on to `now`: (window start, this window's, the
        previous window's, the count now)."""
        start, cur, prev = _AUTH.unpack_from(self._map, offset + _HEAD.size)
        if not (cur or prev):
            return now, 0, 0, 0.0  # quiet: the next failure starts a window
        gone = now - start
        if gone >= 2 * window or gone < 0:
            return now, 0, 0, 0.0
        if gone >= window:
            start, cur, prev = start + window, 0, cur
        return start, cur, prev, prev * (1.0 - (now - start) / window) + cur

    def auth_locked(self, key: bytes, limit: int, window: float) -> bool:
        """Whether `key` (an IP's) failed AUTH `limit` times within the last `window` s."""
        now = time.monotonic()
        self._lock()
        try:
            offset = self._find(key, now, insert=False)
            return offset is not None and self._auth(offset, now, window)[3] >= limit
        finally:
            self._unlock()

    def auth_failed(self, key: bytes, limit: int, window: float) -> bool:
        """Count one failed AUTH for `key`; whether it is now locked out."""
        now = time.monotonic()
        mm = self._map
        self._lock()
        try:
            offset = self._find(key, now, insert=True)
            if offset is None:
                return False  # no room: not counted (logged by _find)
            start, cur, prev, count = self._auth(offset, now, window)
            _AUTH.pack_into(mm, offset + _HEAD.size, start, cur + 1, prev)
            _COUNT.pack_into(mm, offset, int(now))
            return count + 1 >= limit
        finally:
            self._unlock()

    # Hourly rates.

    def take(self, checks: list[tuple[bytes, int, int]], count: int = 1) -> int | None:
        """Count `count` more under every (key, MESSAGES or RECIPIENTS, limit) of `checks`,
        or, if one of them would go past its limit, none: the index of the first such.
        The keys of one call are different keys (an IP's and a sender's)."""
        now = time.monotonic()
        window = int(now // WINDOW)
        weight = 1.0 - (now % WINDOW) / WINDOW  # of the previous window, still in the hour
        mm = self._map
        found: list[tuple[int, list[int], int]] = []
        self._lock()
        try:
            for i, (key, which, limit) in enumerate(checks):
                offset = self._find(key, now, insert=True)
                if offset is None:
                    continue  # no room: not counted (logged by _find)
                head = list(_HEAD.unpack_from(mm, offset))
                if head[_WINDOW] != window:
                    moved = window - head[_WINDOW]
                    head[_MSG_PREV] = head[_MSG] if moved == 1 else 0
                    head[_RCPT_PREV] = head[_RCPT] if moved == 1 else 0
                    head[_MSG] = head[_RCPT] = 0
                    head[_WINDOW] = window
                cur = _MSG if which == MESSAGES else _RCPT
                if head[cur + 1] * weight + head[cur] + count > limit:
                    return i
                found.append((offset, head, cur))
            for offset, head, cur in found:
                head[cur] += count
                head[_USED] = int(now)
                _HEAD.pack_into(mm, offset, *head)
            return None
        finally:
            self._unlock()
