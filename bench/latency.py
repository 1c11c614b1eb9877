"""What one SMTP client waits for, against `filterlang serve`: reply latency on an idle gateway.

    python bench/latency.py [--sessions 20]

Throughput (bench/gateway.py) hides a stall that costs a client time but not the gateway
CPU: with Nagle on, a reply written while the one before is unacknowledged waits for the
client's delayed ACK (40 ms on Linux). This starts a gateway (one listener, one queue
process, no filters, STARTTLS offered with an ECDSA P-256 certificate) and an smtp-sink,
then times, over --sessions sessions one after another, from the client's write to the last
reply it waits for:

- a plain transaction, one command at a time: MAIL, RCPT, DATA, then the body's 250;
- a pipelined one, as Postfix's smtp client sends (RFC 2920): MAIL, two RCPTs and DATA in one
  write, to the 354;
- after a STARTTLS handshake, the first EHLO (TLS 1.3 sends its session tickets just before
  this reply).

It prints the median and the worst of each. On loopback each should be well under a
millisecond except the body's 250, which waits for the spool's syncs (the disk's fsync).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/gateway.py puts the project before bench/ on sys.path (bench/smime.py would shadow the
# smime package) and has the process helpers.
from gateway import MINIMAL, free_port, serve_cmd, tls_key_pair, wait_port  # noqa: E402


def replies(f: Any, count: int) -> list[bytes]:
    """The next `count` replies (a multi-line reply counts once)."""
    out: list[bytes] = []
    while len(out) < count:
        line = f.readline()
        if not line:
            raise SystemExit("the gateway closed the connection")
        if line[3:4] != b"-":
            out.append(line)
    return out


def greeted(port: int) -> tuple[socket.socket, Any]:
    """A connection past its greeting and EHLO, and a file to read its replies."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    replies(f, 1)
    s.sendall(b"EHLO client.bench.example\r\n")
    replies(f, 1)
    return s, f


def session(port: int, ctx: ssl.SSLContext) -> tuple[float, float, float, float]:
    """(one-at-a-time transaction to the 354, the body's 250, pipelined to the 354, first
    EHLO after STARTTLS), in ms."""
    s, f = greeted(port)
    with s:
        start = time.perf_counter()
        for command in (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.org>\r\n",
                        b"DATA\r\n"):
            s.sendall(command)
            replies(f, 1)
        stepwise = time.perf_counter() - start
        start = time.perf_counter()
        s.sendall(b"Subject: latency\r\n\r\nhello\r\n.\r\n")
        replies(f, 1)
        body = time.perf_counter() - start
        start = time.perf_counter()
        s.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                  b"RCPT TO:<c@example.org>\r\nDATA\r\n")
        replies(f, 4)
        pipelined = time.perf_counter() - start
        s.sendall(b"Subject: latency\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        replies(f, 2)
    s, f = greeted(port)
    with s:
        s.sendall(b"STARTTLS\r\n")
        replies(f, 1)
        with ctx.wrap_socket(s) as t:
            tf = t.makefile("rb")
            start = time.perf_counter()
            t.sendall(b"EHLO client.bench.example\r\n")
            replies(tf, 1)
            after_tls = time.perf_counter() - start
            t.sendall(b"QUIT\r\n")
            replies(tf, 1)
    return stepwise * 1000, body * 1000, pipelined * 1000, after_tls * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fl-latency-"))
    cert, key = tls_key_pair(tmp)
    sink_port, port = free_port(), free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{sink_port}", "100"])
    cfg = tmp / "gateway.toml"
    text = MINIMAL.format(port=port, sink=sink_port, workers=1)
    text = text.replace(f"port = {port}\n",
                        f'port = {port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n', 1)
    cfg.write_text(text.replace("workers = 1\n", "workers = 1\nqueue_workers = 1\n", 1))
    gw = subprocess.Popen(serve_cmd(cfg), stdout=subprocess.DEVNULL,
                          stderr=(tmp / "gateway.log").open("wb"), start_new_session=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        wait_port(sink_port)
        wait_port(port, tmp / "gateway.log")
        session(port, ctx)  # warm up: the first session builds what later ones reuse
        runs = [session(port, ctx) for _ in range(args.sessions)]
        names = ("MAIL, RCPT, DATA one at a time, to the 354",
                 "the body, to its 250 (spool syncs)",
                 "MAIL, 2 RCPT, DATA pipelined, to the 354",
                 "first EHLO after STARTTLS")
        print(f"reply latency against filterlang serve on loopback, {args.sessions} sessions "
              "(ms, median / worst):")
        for i, name in enumerate(names):
            values = [r[i] for r in runs]
            print(f"  {name + ':':48} {statistics.median(values):7.2f} / {max(values):.2f}")
    finally:
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(60)
        sink.terminate()
        sink.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
