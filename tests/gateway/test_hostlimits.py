"""The host access table's shared counters (runtime/mta/hostlimits.py): one table for every
listener process, counts of a process that is gone taken out, hourly rates that slide."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from runtime.config.config import GatewayConfig
from runtime.mta import hostlimits
from runtime.mta.hostlimits import MESSAGES, RECIPIENTS, HostCounters, ip_key, sender_key


def _in_child(body: object) -> int:
    """Run `body()` in a forked process (as the supervisor forks listeners); its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = int(body())  # type: ignore[operator]
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_connections_are_counted_across_processes() -> None:
    table = HostCounters(regions=4)
    a, b = ip_key("192.0.2.1"), ip_key("192.0.2.2")
    # Two "listener processes", each in its own region, take two connections from one IP;
    # the table then refuses a fifth in either, and another IP is not affected.
    assert _in_child(lambda: table.connect(a, 4, 1) >= 0 and table.connect(a, 4, 1) >= 0) == 1
    assert table.connections(a) == 2
    held = [table.connect(a, 4, 0), table.connect(a, 4, 0)]
    assert all(t is not None and t >= 0 for t in held)
    assert table.connect(a, 4, 0) == -1
    assert _in_child(lambda: table.connect(a, 4, 2) == -1) == 1
    assert table.connect(b, 4, 0) not in (None, -1)
    # The first child is gone without closing its connections: its region's two go.
    assert table.release_region(1) == 2
    assert table.release_region(2) == 0  # refused only: it held none
    assert table.connections(a) == 2
    for t in held:
        assert t is not None
        table.disconnect(t, 0)
    assert table.connections(a) == 0
    table.disconnect(held[0], 0)  # once too often (after a release): never below zero
    assert table.connections(a) == 0


def test_hourly_rates_refuse_past_the_limit_and_count_nothing_then() -> None:
    table = HostCounters()
    ip, sender = ip_key("192.0.2.9"), sender_key("Alice@Example.org")
    assert sender == sender_key("alice@example.org")
    for _ in range(3):
        assert table.take([(ip, RECIPIENTS, 5), (sender, RECIPIENTS, 3)]) is None
    # The sender's limit refuses (index 1) and the IP's count does not move.
    assert table.take([(ip, RECIPIENTS, 5), (sender, RECIPIENTS, 3)]) == 1
    assert table.take([(ip, RECIPIENTS, 5)], count=2) is None
    assert table.take([(ip, RECIPIENTS, 5)]) == 0
    # Messages are counted apart from recipients, in another process too.
    assert _in_child(lambda: table.take([(ip, MESSAGES, 1)]) is None) == 1
    assert table.take([(ip, MESSAGES, 1)]) == 0


def test_the_previous_hour_weighs_as_much_as_it_still_lies_in_the_last_hour(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10 * hostlimits.WINDOW + 0.5 * hostlimits.WINDOW]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    table = HostCounters()
    ip = ip_key("192.0.2.7")
    for _ in range(10):
        assert table.take([(ip, MESSAGES, 10)]) is None
    assert table.take([(ip, MESSAGES, 10)]) == 0
    clock[0] = 11 * hostlimits.WINDOW + 0.25 * hostlimits.WINDOW  # 10 * 0.75 still counts
    assert [table.take([(ip, MESSAGES, 10)]) for _ in range(3)] == [None, None, 0]
    clock[0] = 13 * hostlimits.WINDOW  # two windows on: nothing left
    assert all(table.take([(ip, MESSAGES, 10)]) is None for _ in range(10))


def test_a_full_bucket_forgets_the_least_recent_rates_never_connections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostlimits, "BUCKETS", 1)  # every key in one bucket
    table = HostCounters(regions=1)
    held = [table.connect(ip_key(f"198.51.100.{i}"), 5, 0) for i in range(hostlimits.WAYS)]
    assert all(t is not None and t >= 0 for t in held)
    assert table.connect(ip_key("198.51.100.200"), 5, 0) is None  # no room: let in, uncounted
    assert table.take([(ip_key("198.51.100.200"), MESSAGES, 1)]) is None  # not counted either
    t = held[0]
    assert t is not None
    table.disconnect(t, 0)
    assert table.take([(ip_key("198.51.100.201"), MESSAGES, 1)]) is None
    assert table.take([(ip_key("198.51.100.201"), MESSAGES, 1)]) == 0
    assert all(table.connections(ip_key(f"198.51.100.{i}")) == 1
               for i in range(1, hostlimits.WAYS))


@pytest.mark.parametrize("robust", [True, False], ids=["pthread-mutex", "fcntl-fallback"])
def test_a_process_killed_holding_the_lock_leaves_no_one_waiting(robust: bool) -> None:
    import signal

    table = HostCounters(regions=2, robust=robust)
    ip = ip_key("192.0.2.5")
    pid = os.fork()
    if pid == 0:
        table._lock()  # and dies holding it, as a listener killed inside a check
        os._exit(0)
    os.waitpid(pid, 0)
    signal.alarm(10)  # a lock never given back would hang here: fail instead
    try:
        assert table.take([(ip, MESSAGES, 5)]) is None
        ticket = table.connect(ip, 1, 0)
        assert ticket is not None and ticket >= 0 and table.connect(ip, 1, 1) == -1
    finally:
        signal.alarm(0)


def test_the_supervisor_gives_regions_and_takes_them_back(
        make_config: Callable[..., GatewayConfig]) -> None:
    """Without forking: which region each listener pid gets, what a dead one's release does,
    and a new table once more listeners are alive at once than the table has regions."""
    from runtime.mta.supervisor import Supervisor

    sup = Supervisor(make_config())
    first = sup.counters
    taken = []
    for pid in range(1000, 1000 + first.regions):
        region = sup._free_region()
        sup.regions[pid] = (sup.counters, region)
        taken.append(region)
    assert sorted(taken) == list(range(first.regions)) and sup.counters is first
    key = ip_key("192.0.2.1")
    assert first.connect(key, 10, 3) not in (None, -1)
    sup._reaped(1003)  # region 3's pid is gone: its connection leaves the count
    assert first.connections(key) == 0 and sup._free_region() == 3
    sup.regions[2000] = (first, 3)
    # Every region taken (old listeners draining beside new ones): a new table.
    assert sup._free_region() == 0 and sup.counters is not first


@pytest.mark.parametrize("robust", [True, False], ids=["pthread-mutex", "fcntl-fallback"])
def test_threads_of_one_process_share_a_table_without_deadlock(robust: bool) -> None:
    import signal
    import threading

    table = HostCounters(regions=1, robust=robust)
    key = ip_key("192.0.2.8")

    def hammer() -> None:
        for _ in range(5000):
            ticket = table.connect(key, 0, 0)
            assert ticket is not None and ticket >= 0
            table.take([(key, MESSAGES, 1 << 30)])
            table.disconnect(ticket, 0)

    signal.alarm(30)
    try:
        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        signal.alarm(0)
    assert table.connections(key) == 0
    assert table.take([(key, MESSAGES, 15000)]) == 0  # every one of the 15,000 counted
