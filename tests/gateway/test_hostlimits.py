"""The host access table's shared counters (runtime/mta/hostlimits.py): one table for every
listener process, counts of a process that is gone taken out, hourly rates that slide."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from runtime.config.config import GatewayConfig
from runtime.mta import hostlimits
from runtime.mta.hostlimits import (
    MESSAGES,
    RECIPIENTS,
    HostCounters,
    listener_key,
)


def table_ticket(got: tuple[int, ...] | int) -> bool:
    """Whether `connect` counted the connection in (under every key it was given)."""
    return isinstance(got, tuple) and len(got) > 0


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
    a, b = table.ip_key("192.0.2.1"), table.ip_key("192.0.2.2")
    # Two "listener processes", each in its own region, take two connections from one IP;
    # the table then refuses a fifth in either, and another IP is not affected.
    assert _in_child(lambda: table.connect([(a, 4)], 1) != 0
                     and table.connect([(a, 4)], 1) != 0) == 1
    assert table.connections(a) == 2
    held = [table.connect([(a, 4)], 0), table.connect([(a, 4)], 0)]
    assert all(isinstance(t, tuple) and len(t) == 1 for t in held)
    assert table.connect([(a, 4)], 0) == 0
    assert _in_child(lambda: table.connect([(a, 4)], 2) == 0) == 1
    assert isinstance(table.connect([(b, 4)], 0), tuple)
    # The first child is gone without closing its connections: its region's two go.
    assert table.release_region(1) == 2
    assert table.release_region(2) == 0  # refused only: it held none
    assert table.connections(a) == 2
    for t in held:
        assert isinstance(t, tuple)
        table.disconnect(t, 0)
    assert table.connections(a) == 0
    assert isinstance(held[0], tuple)
    table.disconnect(held[0], 0)  # once too often (after a release): never below zero
    assert table.connections(a) == 0


def test_a_listener_total_and_an_ip_are_checked_together() -> None:
    """A listener's max_connections and a client's max_connections_per_ip in one call: the
    index of the check that refused, nothing counted then; the listener's total is released
    with its region like the IP's."""
    table = HostCounters(regions=2)
    lst, a, b = listener_key("in"), table.ip_key("192.0.2.1"), table.ip_key("192.0.2.2")
    assert lst != listener_key("submission")
    first = table.connect([(lst, 3), (a, 1)], 0)
    assert isinstance(first, tuple) and len(first) == 2
    assert table.connect([(lst, 3), (a, 1)], 1) == 1  # the IP's cap; the listener's untouched
    assert table.connections(lst) == 1
    assert _in_child(lambda: isinstance(table.connect([(lst, 3), (b, 5)], 1), tuple)
                     and isinstance(table.connect([(lst, 3), (b, 5)], 1), tuple)) == 1
    assert table.connections(lst) == 3 and table.connections(b) == 2
    assert table.connect([(lst, 3), (table.ip_key("192.0.2.3"), 5)], 0) == 0  # the listener's cap
    assert table.connections(table.ip_key("192.0.2.3")) == 0
    assert table.release_region(1) == 2  # two connections (each counted twice)
    assert table.connections(lst) == 1 and table.connections(b) == 0
    table.disconnect(first, 0)
    assert table.connections(lst) == 0 and table.connections(a) == 0


def test_listener_totals_are_never_crowded_out_by_clients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostlimits, "BUCKETS", 1)  # every client key in one bucket
    table = HostCounters(regions=1)
    lst = listener_key("in")
    for i in range(hostlimits.WAYS):
        assert isinstance(table.connect([(table.ip_key(f"198.51.100.{i}"), 5)], 0), tuple)
    # The clients' bucket is full of connections: a new client goes uncounted, the
    # listener's total still counts it (and its cap still holds).
    got = table.connect([(lst, 9), (table.ip_key("198.51.100.200"), 5)], 0)
    assert isinstance(got, tuple) and len(got) == 1
    assert table.connections(lst) == 1


def test_auth_failures_are_shared_and_slide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed AUTH attempts per IP, counted from every process: the lock-out at exactly the
    limit, whatever the clock; a success clears nothing; they fade over one more window."""
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    table = HostCounters(regions=2)
    ip, other = table.ip_key("192.0.2.1"), table.ip_key("192.0.2.2")
    assert not table.auth_failed(ip, 4, 60)
    assert _in_child(lambda: not table.auth_failed(ip, 4, 60)
                     and not table.auth_failed(ip, 4, 60)) == 1
    assert not table.auth_locked(ip, 4, 60)
    clock[0] += 59.5  # still within the window the first failure began
    assert table.auth_failed(ip, 4, 60)  # the fourth
    assert table.auth_locked(ip, 4, 60) and not table.auth_locked(other, 4, 60)
    assert _in_child(lambda: table.auth_locked(ip, 4, 60)) == 1
    clock[0] += 30.5  # 1090: the four weigh 0.5 now (the window began at 1060)
    assert not table.auth_locked(ip, 4, 60)
    assert not table.auth_failed(ip, 4, 60)  # 2 + 1
    assert table.auth_failed(ip, 4, 60)  # 2 + 2
    clock[0] += 200  # quiet long enough: forgotten, and a new burst counts from one
    assert not table.auth_locked(ip, 4, 60)
    assert [table.auth_failed(ip, 2, 60) for _ in range(2)] == [False, True]


def test_hourly_rates_refuse_past_the_limit_and_count_nothing_then() -> None:
    table = HostCounters()
    ip, sender = table.ip_key("192.0.2.9"), table.sender_key("Alice@Example.org")
    assert sender == table.sender_key("alice@example.org")
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
    ip = table.ip_key("192.0.2.7")
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
    held = [table.connect([(table.ip_key(f"198.51.100.{i}"), 5)], 0) for i in range(hostlimits.WAYS)]
    assert all(isinstance(t, tuple) and len(t) == 1 for t in held)
    assert table.connect([(table.ip_key("198.51.100.200"), 5)], 0) == ()  # no room: let in, uncounted
    assert table.take([(table.ip_key("198.51.100.200"), MESSAGES, 1)]) is None  # not counted either
    t = held[0]
    assert isinstance(t, tuple)
    table.disconnect(t, 0)
    assert table.take([(table.ip_key("198.51.100.201"), MESSAGES, 1)]) is None
    assert table.take([(table.ip_key("198.51.100.201"), MESSAGES, 1)]) == 0
    assert all(table.connections(table.ip_key(f"198.51.100.{i}")) == 1
               for i in range(1, hostlimits.WAYS))


@pytest.mark.parametrize("robust", [True, False], ids=["pthread-mutex", "fcntl-fallback"])
def test_a_process_killed_holding_the_lock_leaves_no_one_waiting(robust: bool) -> None:
    import signal

    table = HostCounters(regions=2, robust=robust)
    ip = table.ip_key("192.0.2.5")
    pid = os.fork()
    if pid == 0:
        table._lock()  # and dies holding it, as a listener killed inside a check
        os._exit(0)
    os.waitpid(pid, 0)
    signal.alarm(10)  # a lock never given back would hang here: fail instead
    try:
        assert table.take([(ip, MESSAGES, 5)]) is None
        assert isinstance(table.connect([(ip, 1)], 0), tuple)
        assert table.connect([(ip, 1)], 1) == 0
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
    key = first.ip_key("192.0.2.1")
    assert table_ticket(first.connect([(key, 10)], 3))
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
    key = table.ip_key("192.0.2.8")

    def hammer() -> None:
        for _ in range(5000):
            ticket = table.connect([(key, 0)], 0)
            assert isinstance(ticket, tuple) and len(ticket) == 1
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


def test_a_client_is_an_ipv4_address_or_an_ipv6_slash_64() -> None:
    assert hostlimits.client_of("192.0.2.7") == "192.0.2.7"
    assert hostlimits.client_of("192.0.2.7", 24) == "192.0.2.0/24"
    # Privacy addresses of one host, in its /64: one client; the next /64 is another.
    a = hostlimits.client_of("2001:db8:1:2:a::1")
    assert a == "2001:db8:1:2::/64" == hostlimits.client_of("2001:db8:1:2:ffff::9")
    assert hostlimits.client_of("2001:db8:1:3::1") != a
    assert hostlimits.client_of("2001:db8::1", ipv6_prefix=128) == "2001:db8::1"
    assert hostlimits.client_of("::ffff:192.0.2.7", 24) == "192.0.2.0/24"  # IPv4-mapped
    assert hostlimits.client_of("not an address") == "not an address"
    # Link-local: every host of a LAN is in fe80::/64, so each address is its own client.
    assert hostlimits.client_of("fe80::1%eth0") == "fe80::1%eth0"
    assert hostlimits.client_of("169.254.1.1", 24) == "169.254.1.1"


def test_the_digest_is_keyed_per_table_and_shared_by_its_processes() -> None:
    """A client cannot work out which of its addresses share a bucket: another table (another
    start of the gateway) puts them elsewhere. The listeners forked from one table agree."""
    one, two = HostCounters(regions=2), HostCounters(regions=2)
    assert one.ip_key("192.0.2.1") != two.ip_key("192.0.2.1")
    assert one.sender_key("a@example.org") != two.sender_key("a@example.org")
    key = one.ip_key("192.0.2.1")
    assert _in_child(lambda: one.ip_key("192.0.2.1") == key) == 1
