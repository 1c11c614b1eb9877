"""The two ends of bench/gateway.py's STARTTLS run, each a process of its own:

    python bench/_tls_peers.py sink PORT [CERT KEY]
    python bench/_tls_peers.py source PORT MESSAGES SESSIONS SIZE [tls|tls-resume]

Why not smtp-source and smtp-sink: neither speaks STARTTLS. So the STARTTLS run and the
plain run it is compared with both use these two, the plain one with TLS off, and the ratio
compares like with like. `source` behaves as smtp-source does: SESSIONS connections side by
side, one message per connection (a new connection, and with `tls` a new TLS handshake, for
every message), MAIL, RCPT and DATA each waited for. With `tls-resume` each session offers
the TLS session (ticket) of its previous connection, as an MTA with a TLS session cache does
(Postfix's smtp_tls_session_cache_database): a resumed handshake skips the certificate and its
signature. `sink` answers 250 to everything, offers STARTTLS when given a certificate, and
keeps nothing.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
import threading

COUNTS = {"connections": 0, "handshakes": 0, "messages": 0}


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   ctx: ssl.SSLContext | None) -> None:
    COUNTS["connections"] += 1
    writer.write(b"220 sink.bench.example ESMTP\r\n")
    tls = False
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                offer = b"250-STARTTLS\r\n" if ctx is not None and not tls else b""
                writer.write(b"250-sink.bench.example\r\n250-PIPELINING\r\n" + offer
                             + b"250 8BITMIME\r\n")
            elif verb == b"STAR" and ctx is not None and not tls:
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(ctx)
                COUNTS["handshakes"] += 1
                tls = True
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                while True:
                    body = await reader.readline()
                    if body in (b".\r\n", b""):
                        break
                COUNTS["messages"] += 1
                writer.write(b"250 2.0.0 sunk\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def sink(port: int, cert: str | None, key: str | None) -> None:
    ctx = None
    if cert and key:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: _session(r, w, ctx), "127.0.0.1", port,
                                        limit=1 << 20)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    # What the gateway's delivery cost in connections: shown by bench/gateway.py --tls.
    print(f"sink on {port}: " + ", ".join(f"{v} {k}" for k, v in COUNTS.items()), file=sys.stderr)


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise SystemExit(f"expected {code!r}, got {line!r}")
        if line[3:4] != b"-":
            return


async def source(port: int, messages: int, sessions: int, size: int, tls: bool) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    line = b"x" * 78 + b"\r\n"
    body = (b"From: <a@example.com>\r\nTo: <b@example.org>\r\nSubject: bench\r\n\r\n"
            + line * max(1, size // len(line)) + b".\r\n")
    left = [messages]

    async def one() -> None:
        while left[0] > 0:
            left[0] -= 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
            await _expect(reader, b"220")
            writer.write(b"EHLO source.bench.example\r\n")
            await _expect(reader, b"250")
            if tls:
                writer.write(b"STARTTLS\r\n")
                await _expect(reader, b"220")
                await writer.start_tls(ctx)
                writer.write(b"EHLO source.bench.example\r\n")
                await _expect(reader, b"250")
            for cmd in (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.org>\r\n"):
                writer.write(cmd)
                await _expect(reader, b"250")
            writer.write(b"DATA\r\n")
            await _expect(reader, b"354")
            writer.write(body)
            await _expect(reader, b"250")
            writer.write(b"QUIT\r\n")
            await writer.drain()
            writer.close()

    await asyncio.gather(*(one() for _ in range(sessions)))


def _read_reply(sock: socket.socket | ssl.SSLSocket, code: bytes, buf: bytearray) -> None:
    while True:
        end = buf.find(b"\r\n")
        while end < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk
            end = buf.find(b"\r\n")
        line = bytes(buf[:end])
        del buf[:end + 2]
        if not line.startswith(code):
            raise SystemExit(f"expected {code!r}, got {line!r}")
        if line[3:4] != b"-":
            return


def resuming_source(port: int, messages: int, sessions: int, size: int) -> None:
    """As `source` with TLS, in threads over blocking sockets: asyncio's start_tls cannot offer
    a TLS session to resume, the ssl module's sockets can."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    line = b"x" * 78 + b"\r\n"
    body = (b"From: <a@example.com>\r\nTo: <b@example.org>\r\nSubject: bench\r\n\r\n"
            + line * max(1, size // len(line)) + b".\r\n")
    left = [messages]
    lock = threading.Lock()
    resumed = [0]

    def one() -> None:
        session: ssl.SSLSession | None = None
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            buf = bytearray()
            with socket.create_connection(("127.0.0.1", port)) as raw:
                _read_reply(raw, b"220", buf)
                raw.sendall(b"EHLO source.bench.example\r\n")
                _read_reply(raw, b"250", buf)
                raw.sendall(b"STARTTLS\r\n")
                _read_reply(raw, b"220", buf)
                with ctx.wrap_socket(raw, session=session) as tls:
                    buf.clear()
                    tls.sendall(b"EHLO source.bench.example\r\n")
                    _read_reply(tls, b"250", buf)
                    for cmd in (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.org>\r\n"):
                        tls.sendall(cmd)
                        _read_reply(tls, b"250", buf)
                    tls.sendall(b"DATA\r\n")
                    _read_reply(tls, b"354", buf)
                    tls.sendall(body)
                    _read_reply(tls, b"250", buf)
                    with lock:
                        resumed[0] += tls.session_reused
                    session = tls.session  # the ticket the server sent, for the next one
                    tls.sendall(b"QUIT\r\n")

    threads = [threading.Thread(target=one) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"source: {resumed[0]} of {messages} TLS sessions resumed", file=sys.stderr)


def main(argv: list[str]) -> None:
    if argv[0] == "sink":
        asyncio.run(sink(int(argv[1]), *(argv[2:4] if len(argv) >= 4 else (None, None))))
    elif argv[0] == "source" and argv[5:6] == ["tls-resume"]:
        resuming_source(int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[0] == "source":
        asyncio.run(source(int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]),
                           len(argv) > 5 and argv[5] == "tls"))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
