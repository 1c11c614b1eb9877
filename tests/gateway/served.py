"""`filterlang serve` as a subprocess with a real next hop, for the mail-transport tests.

A `Sink` is an aiosmtpd server on loopback that keeps what arrives and answers each
recipient as the test says; `Served` writes a gateway.toml, starts the gateway on it and stops
it by its own process id; `dialogue` speaks raw SMTP lines, so a test can send what smtplib
refuses to send (a CR inside an address).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from attrs import frozen

FILTERLANG = Path(sys.executable).parent / "filterlang"
DEADLINE = 60.0  # seconds: generous, the machine is shared and may be very busy


# What most transport tests need: one listener and one queue process, every loopback client
# under a RELAY policy, delivery to the sink. `relay_config` adds lines to its sections.
RELAY = """
workers = 1
queue_workers = 1
{top}
[storage]
data_dir = "{data}"
{storage}
[[listeners]]
port = {{port}}
{listener}
{groups}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
{policy}
{sections}
[delivery]
relay = "127.0.0.1:{{sink}}"
{delivery}
"""


def relay_config(*, top: str = "", data: str = "data", storage: str = "", listener: str = "",
                 groups: str = "", policy: str = "", sections: str = "",
                 delivery: str = "") -> str:
    """A gateway.toml for `Served` ({port}, {sink} and {root} left to fill): `groups` are
    sender groups matched before the loopback one, `sections` whole sections of their own."""
    return RELAY.format(top=top, data=data, storage=storage, listener=listener, groups=groups,
                        policy=policy, sections=sections, delivery=delivery)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    """Poll `condition` until it is truthy (its value is returned) or fail after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


@frozen
class Arrived:
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes


class Sink:
    """The next hop: an aiosmtpd server that stores every message it accepts."""

    def __init__(self, answer: Callable[[str], str] | None = None) -> None:
        self.answer = answer or (lambda rcpt: "250 2.1.5 OK")
        self.messages: list[Arrived] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.answer(address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(Arrived(envelope.mail_from, tuple(envelope.rcpt_tos),
                                         envelope.original_content))
        return "250 2.0.0 sunk"

    def to(self, rcpt: str) -> list[Arrived]:
        with self.lock:
            return [m for m in self.messages if rcpt in m.rcpts]

    def __enter__(self) -> Sink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class Served:
    """One gateway: `toml` is written to tmp/gateway.toml with {port} and {sink} filled in."""

    def __init__(self, tmp: Path, toml: str, sink: Sink | None = None, **fields: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "gateway.toml"
        self.config.write_text(toml.format(port=self.port, sink=sink.port if sink else 0,
                                           root=tmp, **fields))
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.preexec: Callable[[], None] | None = None  # run in the child before exec

    def start(self, wait: bool = True) -> Served:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(self.config)],
                                         stdout=out, stderr=out, start_new_session=True,
                                         preexec_fn=self.preexec)
        if wait:
            wait_until(self._greets, what=f"the gateway on port {self.port}")
        return self

    def _greets(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"filterlang serve exited: {self.log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, as an operator stops it; SIGKILL to its group if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Served:
        if self.proc is not None and self.proc.poll() is None:
            return self  # `with gw.start():` started it already
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.kill()


@contextlib.contextmanager
def connection(port: int, timeout: float = 30.0) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        yield s


def read_reply(s: socket.socket) -> str:
    """One SMTP reply (all its lines), as text; "" when the server closed the connection."""
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return buf.decode(errors="replace")
        buf += chunk
        lines = buf.split(b"\r\n")
        if buf.endswith(b"\r\n") and lines[-2][3:4] == b" ":
            return buf.decode(errors="replace")


def dialogue(port: int, commands: list[bytes]) -> list[str]:
    """The greeting, then each command (sent as given, CRLF added) and its reply."""
    with connection(port) as s:
        replies = [read_reply(s)]
        for cmd in commands:
            s.sendall(cmd + b"\r\n")
            replies.append(read_reply(s))
        return replies


def send(port: int, mail_from: str, rcpts: list[str], data: bytes,
         rcpt_params: str = "") -> list[str]:
    """One message by raw SMTP: the replies to MAIL, each RCPT, and the end of DATA."""
    cmds = [b"EHLO client.example", f"MAIL FROM:<{mail_from}>".encode()]
    cmds += [f"RCPT TO:<{r}>{(' ' + rcpt_params) if rcpt_params else ''}".encode() for r in rcpts]
    with connection(port) as s:
        read_reply(s)
        replies = []
        for cmd in cmds:
            s.sendall(cmd + b"\r\n")
            replies.append(read_reply(s))
        s.sendall(b"DATA\r\n")
        if read_reply(s).startswith("354"):
            s.sendall(data + b"\r\n.\r\n")
            replies.append(read_reply(s))
        s.sendall(b"QUIT\r\n")
        return replies[1:]
