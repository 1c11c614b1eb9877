"""Fixtures for the gateway tests: a config writer and an in-process listener on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.config.config import GatewayConfig, load_config
from runtime.mta.listener import GatewayHandler, protocol_factory
from runtime.mta.supervisor import spool_for

BASE = """
local_domains = ["example.org"]

[storage]
data_dir = "data"
spool_sync = "{spool_sync}"

[[listeners]]
name = "in"
address = "127.0.0.1"
port = {port}
session_timeout = {session_timeout}
command_timeout = {command_timeout}

[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "{policy}"

[policies.accept]
action = "ACCEPT"

[policies.relay]
action = "RELAY"
max_message_size = 4096
max_recipients = 3

[policies.reject]
action = "REJECT"

[policies.refuse]
action = "TCPREFUSE"

[delivery]
maildir = "maildir"
retry_schedule = [60, 300]
max_queue_lifetime = 3600
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., GatewayConfig]:
    def make(policy: str = "relay", extra: str = "", session_timeout: float = 30.0,
             port: int | None = None, command_timeout: float = 300.0,
             spool_sync: str = "filesystem") -> GatewayConfig:
        path = tmp_path / "gateway.toml"
        path.write_text(
            BASE.format(port=port or free_port(), policy=policy, session_timeout=session_timeout,
                        command_timeout=command_timeout, spool_sync=spool_sync) + extra
        )
        return load_config(path)

    return make


class RunningListener:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.spool = spool_for(config)
        self.handler = GatewayHandler(config, self.spool)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        lst = config.listeners[0]
        self.server = self.loop.run_until_complete(
            self.loop.create_server(protocol_factory(config, lst, self.handler), "127.0.0.1", lst.port)
        )
        self.port = lst.port
        self.thread.start()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def listener(make_config: Callable[..., GatewayConfig]) -> Iterator[Callable[..., RunningListener]]:
    started: list[RunningListener] = []

    def start(**kwargs: object) -> RunningListener:
        running = RunningListener(make_config(**kwargs))
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
