"""The SMTP command parser: a client's byte stream through the gateway's listener protocol.

Each input is what one client sends on one connection (then a DATA terminator and QUIT, so
every session ends). The protocol runs on an in-memory transport with the real handler and a
real spool. Checks: the session ends; every reply is one well-formed line (three digits, then a
space or a dash); no exception reaches the handler's last-resort ``handle_exception`` (that is a
crash answered 451); every message answered 250 ... queued is in the spool.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fuzz.corpus import VECTORS, files
from fuzz.harness import Target
from runtime.config.config import GatewayConfig, load_config
from runtime.mta.listener import GatewayHandler, GatewaySMTP
from runtime.mta.spool import Spool

CONFIG = """
local_domains = ["example.org"]
[storage]
data_dir = "var"
[delivery]
maildir = "maildir"
[[listeners]]
name = "fuzz"
hostname = "mx.example.org"
max_commands = 200
[sender_groups.relay]
ips = ["127.0.0.0/8"]
policy = "relayed"
[policies.relayed]
action = "RELAY"
max_recipients = 20
max_message_size = 100000
[policies.default]
action = "ACCEPT"
max_message_size = 100000
"""
END = b"\r\n.\r\nQUIT\r\n"
REPLY = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n\0]*")
QUEUED = re.compile(rb"250 2\.0\.0 OK queued as (\S+)")
SESSION_DEADLINE = 10.0  # seconds; libFuzzer's own -timeout catches a slower input first
CLEAN_EVERY = 500  # sessions between emptying the spool (the fuzzer queues many messages)


def seeds() -> Iterator[bytes]:
    yield b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    yield (b"HELO c\r\nMAIL FROM:<a@example.com> SIZE=100 RET=HDRS ENVID=Ab+2B\r\n"
           b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@example.org\r\n"
           b"DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nRSET\r\nNOOP\r\nVRFY b\r\nHELP\r\n")
    yield b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<\"q u\"@[127.0.0.1]>\r\nBDAT 5\r\nHELP MAIL\r\n"
    for message in files(VECTORS / "bouncycastle-mail", "*.eml"):
        yield (b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
               + message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


class _Transport(asyncio.Transport):
    """Collects what the server writes; closing reports the connection lost, as asyncio does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer: str) -> None:
        super().__init__()
        self.loop = loop
        self.peer = peer
        self.written = bytearray()
        self.closing = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.peer, 40000), "sockname": ("127.0.0.1", 25)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Session:
    """The loop, configuration, spool and handler shared by all runs of one process."""

    def __init__(self) -> None:
        # The listener logs every unrecognised command: millions of lines, and slower runs.
        logging.getLogger("filterlang.smtp").disabled = True
        logging.getLogger("mail.log").disabled = True
        self.dir = Path(tempfile.mkdtemp(prefix="filterlang-fuzz-smtp-"))
        atexit.register(shutil.rmtree, self.dir, True)
        (self.dir / "gateway.toml").write_text(CONFIG)
        self.config: GatewayConfig = load_config(self.dir / "gateway.toml")
        self.loop = asyncio.new_event_loop()
        self.crashes: list[BaseException] = []
        self.runs = 0
        self._fresh_handler()

    def _fresh_handler(self) -> None:
        spool_dir = self.dir / "spool"
        shutil.rmtree(spool_dir, ignore_errors=True)
        self.spool = Spool(spool_dir, sync="file")
        self.handler = GatewayHandler(self.config, self.spool)

        async def crashed(error: Exception) -> str:
            self.crashes.append(error)
            return "451 4.3.0 crash"

        self.handler.handle_exception = crashed  # type: ignore[method-assign]
        self.handler.hooks["EXCEPTION"] = crashed

    def session(self, data: bytes) -> bytes:
        self.runs += 1
        if self.runs % CLEAN_EVERY == 0:
            self._fresh_handler()
        peer = "127.0.0.1" if not data or data[0] % 2 == 0 else "192.0.2.7"
        return self.loop.run_until_complete(self._talk(data, peer))

    async def _talk(self, data: bytes, peer: str) -> bytes:
        loop = asyncio.get_running_loop()
        protocol = GatewaySMTP(self.handler, self.config.listeners[0], loop=loop,
                               data_size_limit=100000, hostname="mx.example.org",
                               ident="filterlang", timeout=SESSION_DEADLINE)
        transport = _Transport(loop, peer)
        transport.protocol = protocol
        protocol.connection_made(transport)
        task = protocol._handler_coroutine
        assert task is not None
        protocol.data_received(data + END)
        try:
            await asyncio.wait_for(asyncio.shield(task), SESSION_DEADLINE)
        except asyncio.CancelledError:
            pass  # the session ended by closing its transport: the usual way
        except TimeoutError:
            transport.close()
            raise AssertionError("the session did not end after QUIT") from None
        if not transport.closing:
            transport.close()
        await asyncio.sleep(0)
        return bytes(transport.written)


_state: _Session | None = None


def run(data: bytes) -> None:
    global _state
    if _state is None:
        _state = _Session()
    written = _state.session(data)
    if _state.crashes:
        error = _state.crashes.pop()
        _state.crashes.clear()
        raise AssertionError(f"the handler crashed: {error!r}") from error
    lines = written.split(b"\r\n")
    assert lines[-1] == b"", written[-200:]
    for line in lines[:-1]:
        assert REPLY.fullmatch(line), line
    for queue_id in QUEUED.findall(written):
        assert _state.spool.find(queue_id.decode()) is not None, queue_id


TARGET = Target("smtp", run, seeds, instrument=("runtime", "aiosmtpd", "email"))
