"""A burst of idle connections against `filterlang serve`: what the listener answers and how
much memory it keeps afterwards (issue 13 item 11).

    python bench/connections.py [--connections 5000] [--rounds 2]

Starts the gateway (one listener, one queue process) with `max_connections` above the burst,
opens --connections idle loopback connections, reads each greeting (220, or 421 past a cap),
closes them all, and prints the listener's resident memory before, at the peak and a few
seconds after, for each round. Loopback only; the connections are bounded by the argument.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

# bench/gateway.py puts the project before bench/ on sys.path (bench/smime.py would shadow the
# smime package) and has the process helpers.
from gateway import FILTERLANG, free_port, tree  # noqa: E402

CONFIG = """
workers = 1
queue_workers = 1
[storage]
data_dir = "data"
[[listeners]]
port = {port}
max_connections = {cap}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
max_connections_per_ip = 0
[delivery]
relay = "127.0.0.1:9"
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def greeting(s: socket.socket) -> str:
    try:
        return s.recv(200).decode(errors="replace")[:3] or "eof"
    except OSError as exc:
        return type(exc).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = Path(tmp) / "gateway.toml"
        cfg.write_text(CONFIG.format(port=port, cap=args.connections * 2))
        log = (Path(tmp) / "log").open("wb")
        proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(cfg)], stdout=log,
                                stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        if s.recv(100).startswith(b"220"):
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the gateway did not start") from None
                    time.sleep(0.1)
            workers = tree(proc.pid)[1:]  # the listener and the queue process
            for n in range(args.rounds):
                befores = {p: rss_kb(p) for p in workers}
                opened = []
                start = time.perf_counter()
                for i in range(args.connections):
                    opened.append(socket.create_connection(
                        ("127.0.0.1", port), timeout=30,
                        source_address=(f"127.0.{1 + i // 250}.{1 + i % 250}", 0)))
                answers = Counter(greeting(s) for s in opened)
                took = time.perf_counter() - start
                # The listener is the worker that grew with the connections.
                pid = max(workers, key=lambda p: rss_kb(p) - befores[p])
                before, peak = befores[pid], rss_kb(pid)
                for s in opened:
                    s.close()
                time.sleep(5)
                after = rss_kb(pid)
                print(f"round {n + 1}: {args.connections} connections in {took:.1f} s, "
                      f"answers {dict(answers)}; listener RSS {before / 1024:.0f} MB before, "
                      f"{peak / 1024:.0f} MB at the peak, {after / 1024:.0f} MB 5 s after")
            text = Path(tmp, "log").read_text(errors="replace")
            print(f"tracebacks in the gateway log: {text.count('Traceback')}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    main()
