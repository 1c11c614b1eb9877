"""What the host access table's shared counters cost (issue 17 item 5).

    python bench/hostlimits.py [--ops 200000] [--messages 2000] [--rounds 3]

1. The table alone (runtime/mta/hostlimits.py), in microseconds of CPU per operation: a
   connection counted in and out (`max_connections_per_ip`; then with the listener's
   `max_connections` beside it, under the same lock, as a listener does), the hourly count at
   MAIL (one key) and at RCPT (the IP's and the sender's), over --ops operations on 1,000
   client IPs; then the same in two processes at once, for what the shared lock costs when
   both listeners want it.
2. A listener process (aiosmtpd, the gateway's handler and spool on a tmpfs) taking --messages
   messages, one per connection as smtp-source sends them, with no limit, with the default
   policy (only `max_connections_per_ip`) and with every limit on (concurrent connections,
   messages and recipients per hour per IP, recipients per hour per sender, messages per
   connection); the listener's `max_connections` is counted in all three. Its CPU time per
   message (from /proc/PID/stat), the best and the median of --rounds runs of each, in a new
   random order each round (on a machine with other work the differences between runs are of
   the order of 5%: the last figures' own noise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The project before bench/ on sys.path (bench/smime.py would shadow the smime package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.config.config import load_config  # noqa: E402
from runtime.mta.hostlimits import (  # noqa: E402
    MESSAGES,
    RECIPIENTS,
    HostCounters,
    listener_key,
)

LIMITS_ON = """
max_connections_per_ip = 1000
max_messages_per_hour = 100000000
max_recipients_per_hour = 100000000
max_recipients_per_hour_per_sender = 100000000
max_messages_per_connection = 1000
"""
LIMITS_DEFAULT = ""  # max_connections_per_ip = 50, nothing else
LIMITS_OFF = """
max_connections_per_ip = 0
"""
CONFIG = """
[storage]
data_dir = "{data}"
spool_sync = "file"
[[listeners]]
name = "in"
address = "127.0.0.1"
port = {port}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
{limits}
[delivery]
relay = "127.0.0.1:9"
"""
MESSAGE = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\r\n"
           + (b"x" * 70 + b"\r\n") * 56)  # about 4 KB, as smtp-source sends


def table_ops(table: HostCounters, ops: int, region: int) -> dict[str, float]:
    ips = [table.ip_key(f"10.0.{i // 250}.{i % 250}") for i in range(1000)]
    senders = [table.sender_key(f"user{i}@example.com") for i in range(1000)]
    listener = listener_key("in")
    out = {}
    start = time.process_time()
    for i in range(ops):
        ticket = table.connect([(ips[i % 1000], 1_000_000)], region)
        assert isinstance(ticket, tuple) and ticket
        table.disconnect(ticket, region)
    out["connection in and out"] = (time.process_time() - start) / ops * 1e6
    # What a listener does per connection now: its total and the IP's, under one lock.
    start = time.process_time()
    for i in range(ops):
        ticket = table.connect([(listener, 1_000_000), (ips[i % 1000], 1_000_000)], region)
        assert isinstance(ticket, tuple) and ticket
        table.disconnect(ticket, region)
    out["  with the listener's"] = (time.process_time() - start) / ops * 1e6
    start = time.process_time()
    for i in range(ops):
        table.take([(ips[i % 1000], MESSAGES, 1 << 30)])
    out["MAIL (one key)"] = (time.process_time() - start) / ops * 1e6
    start = time.process_time()
    for i in range(ops):
        table.take([(ips[i % 1000], RECIPIENTS, 1 << 30), (senders[i % 1000], RECIPIENTS, 1 << 30)])
    out["RCPT (IP and sender)"] = (time.process_time() - start) / ops * 1e6
    return out


def bench_table(ops: int) -> None:
    table = HostCounters()
    print(f"table, one process ({ops} operations each), us of CPU per operation:")
    for what, us in table_ops(table, ops, 0).items():
        print(f"  {what:24} {us:6.2f}")
    read, write = os.pipe()
    pids = []
    for region in (1, 2):
        pid = os.fork()
        if pid == 0:
            os.close(read)
            figures = table_ops(table, ops, region)
            os.write(write, repr(figures).encode() + b"\n")
            os._exit(0)
        pids.append(pid)
    os.close(write)
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        results = [eval(line) for line in f]  # noqa: S307 (our own children's repr)
    print("table, two processes doing nothing else at once (the worst case for the shared "
          "lock), us of CPU per operation (each):")
    for what in results[0]:
        print(f"  {what:24} " + "  ".join(f"{r[what]:6.2f}" for r in results))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_child(config_path: Path) -> int:
    """A listener process (the gateway's handler, no supervisor) on the config's port."""
    pid = os.fork()
    if pid:
        return pid
    try:
        from runtime.mta.listener import GatewayHandler, protocol_factory
        from runtime.mta.stores import spool_for

        config = load_config(config_path)
        lst = config.listeners[0]

        async def main() -> None:
            handler = GatewayHandler(config, spool_for(config))
            loop = asyncio.get_running_loop()
            await loop.create_server(protocol_factory(config, lst, handler), lst.address, lst.port)
            await asyncio.Event().wait()

        asyncio.run(main())
    finally:
        os._exit(1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reply(s: socket.socket, buf: bytearray) -> bytes:
    while True:
        end = buf.find(b"\r\n")
        while end >= 0:
            line = bytes(buf[:end])
            del buf[:end + 2]
            if line[3:4] != b"-":
                return line
            end = buf.find(b"\r\n")
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf.extend(chunk)


def drive(port: int, messages: int) -> None:
    for i in range(messages):
        with socket.create_connection(("127.0.0.1", port)) as s:
            buf = bytearray()
            reply(s, buf)
            for cmd in (b"EHLO bench", b"MAIL FROM:<a%d@example.com>" % (i % 50),
                        b"RCPT TO:<b@example.org>", b"DATA"):
                s.sendall(cmd + b"\r\n")
                got = reply(s, buf)
                assert got[:1] in (b"2", b"3"), got
            s.sendall(MESSAGE + b".\r\nQUIT\r\n")
            got = reply(s, buf)
            assert got[:3] == b"250", got


def listener_run(limits: str, messages: int, folder: Path) -> float:
    port = free_port()
    data = Path(tempfile.mkdtemp(dir=folder))
    path = data / "gateway.toml"
    path.write_text(CONFIG.format(data=data, port=port, limits=limits))
    pid = serve_in_child(path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        drive(port, 50)  # warm up
        before = cpu_seconds(pid)
        drive(port, messages)
        return (cpu_seconds(pid) - before) / messages * 1e6
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bench_table(args.ops)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    runs: dict[str, list[float]] = {"no limit": [], "default": [], "all limits": []}
    configs = [("no limit", LIMITS_OFF), ("default", LIMITS_DEFAULT), ("all limits", LIMITS_ON)]
    order = random.Random(17)
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        for _ in range(args.rounds):
            order.shuffle(configs)  # no configuration always first (or last) in a round
            for name, limits in configs:
                runs[name].append(listener_run(limits, args.messages, Path(tmp)))
    print(f"listener CPU per message ({args.messages} messages, one a connection, "
          f"{args.rounds} runs each): best, median")
    base = min(runs["no limit"])
    for name, got in runs.items():
        best = min(got)
        print(f"  {name:12} {best:7.1f} us ({(best / base - 1) * 100:+5.1f}%)  "
              f"{statistics.median(got):7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
