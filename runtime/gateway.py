"""`filterlang serve`: a supervisor process and N forked workers sharing sockets and spool.

Design (why): Python runs one core per process, so throughput grows with cores only with
several processes. The supervisor binds every listening socket once, recovers the spool (gives
`active` files of a crashed run back to `incoming`), then forks `workers` processes (default:
one per core). Each worker accepts on the inherited sockets (the kernel spreads connections),
runs an asyncio aiosmtpd server (many concurrent sessions; the fsync of a large message runs in
a thread, so it never stalls other sessions) and a queue runner thread pool. Workers share the
spool safely because every claim is an atomic rename from `incoming`/`deferred` into `active`.

SIGHUP: the supervisor loads the config again; if it fails, it logs why and keeps the running
workers; if it loads, it starts new workers on the new config, then drains the old ones.
SIGTERM: stop accepting, let open sessions finish (bounded), finish deliveries in flight, exit.
Workers die with the supervisor (PR_SET_PDEATHSIG), so a kill -9 leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from runtime import memtrim
from runtime.config import ConfigError, GatewayConfig, Listener, load_config
from runtime.delivery import QueueRunner, alert
from runtime.metrics import Metrics, enable_multiprocess, reset_multiprocess
from runtime.pipeline import Stage, build_pipeline
from runtime.quarantine import Quarantines
from runtime.smtp import GatewayHandler, protocol_factory, tls_context
from runtime.spool import Spool
from runtime.stages import StageSetupError, build_stages, load_context
from runtime.tracking import Tracker
from runtime.transport import DnsResolver, Resolver, SMTPTransport, Transport

log = logging.getLogger("filterlang.gateway")

DRAIN_SECONDS = 30.0


def spool_for(config: GatewayConfig, owner: str = "main") -> Spool:
    return Spool(config.storage.data_dir / "spool", owner)


def metrics_dir(config: GatewayConfig) -> Path:
    return config.storage.data_dir / "metrics"


def quarantines_for(config: GatewayConfig) -> Quarantines:
    return Quarantines(config.storage.data_dir / "quarantine", frozenset(config.quarantines))


def make_runner(
    config: GatewayConfig,
    spool: Spool,
    *,
    transport: Transport | None = None,
    resolver: Resolver | None = None,
    stages: Mapping[str, Stage] | None = None,
    metrics: Metrics | None = None,
) -> QueueRunner:
    return QueueRunner(
        spool,
        config.delivery,
        transport or SMTPTransport(config.delivery.connect_timeout),
        stages=build_pipeline(stages),
        resolver=resolver or (DnsResolver() if config.delivery.mx else None),
        quarantines=quarantines_for(config),
        tracker=Tracker(config.storage.data_dir / "tracking.jsonl"),
        metrics=metrics,
        alerts=Tracker(config.alerts.log) if config.alerts.log else None,
        alert_email=config.alerts.email,
    )


class CertificateProblem(Exception):
    pass


def check_stages(config: GatewayConfig) -> None:
    """Compile the filters and load every certificate, key and trust anchor once now, so a
    mistake stops start-up (or a reload) with its location instead of failing each message."""
    try:
        load_context(config)
    except StageSetupError as exc:
        raise CertificateProblem(str(exc)) from None


def check_tls(config: GatewayConfig) -> None:
    """Load every listener's certificate now, so a bad one stops start-up (or a reload)
    with a clear message instead of crashing the workers."""
    for i, lst in enumerate(config.listeners):
        try:
            tls_context(lst)
        except (OSError, ssl.SSLError) as exc:
            raise CertificateProblem(
                f"{config.source}: listeners[{i}].tls_cert: cannot load {lst.tls_cert} / "
                f"{lst.tls_key}: {exc}; give a PEM certificate and its private key"
            ) from None


def bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.address, listener.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _serve(
    config: GatewayConfig,
    socks: list[tuple[Listener, socket.socket]],
    runner: QueueRunner,
    stop: asyncio.Event,
    metrics: Metrics | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    handler = GatewayHandler(config, runner.spool, on_queued=lambda _qid: runner.wake.set())
    if metrics is not None:
        inner = handler.on_queued

        def counted(qid: str) -> None:
            metrics.received.inc()
            inner(qid)

        handler.on_queued = counted
    servers = [
        await loop.create_server(protocol_factory(config, lst, handler), sock=sock)
        for lst, sock in socks
    ]
    runner.start()
    await stop.wait()
    for server in servers:
        server.close()  # stop accepting; open sessions go on
    deadline = loop.time() + DRAIN_SECONDS
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    while tasks and loop.time() < deadline:
        await asyncio.sleep(0.1)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    await loop.run_in_executor(None, runner.stop)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_main(config: GatewayConfig, socks: list[tuple[Listener, socket.socket]], serve_metrics: bool) -> None:
    """Body of one forked worker; never returns."""
    _die_with_parent()
    memtrim.tune_malloc()
    code = 0
    try:
        spool = spool_for(config, owner=str(os.getpid()))
        enable_multiprocess(metrics_dir(config))
        metrics = Metrics(spool, metrics_dir(config))
        if serve_metrics and config.metrics.port:
            metrics.serve(config.metrics.address, config.metrics.port)
        sink = Tracker(config.alerts.log) if config.alerts.log else None
        stages = build_stages(config, alert=lambda kind, text: alert(metrics, kind, text, sink))
        runner = make_runner(config, spool, metrics=metrics, stages=stages)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor reloads
            await _serve(config, socks, runner, stop, metrics)

        asyncio.run(main())
    except Exception:
        log.exception("worker failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.workers: list[int] = []
        self._reload = threading.Event()
        self._stop = False

    def _sockets_for(self, config: GatewayConfig) -> list[tuple[Listener, socket.socket]]:
        out = []
        for lst in config.listeners:
            key = (lst.address, lst.port)
            if key not in self.socks:
                self.socks[key] = bind(lst)
            out.append((lst, self.socks[key]))
        return out

    def _spawn(self, config: GatewayConfig) -> list[int]:
        socks = self._sockets_for(config)
        n = config.workers or os.cpu_count() or 1
        pids = []
        for i in range(n):
            pid = os.fork()
            if pid == 0:
                worker_main(config, socks, serve_metrics=(i == 0))
            pids.append(pid)
        return pids

    def _terminate(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def reload(self) -> bool:
        try:
            new = load_config(self.config.source)
            check_tls(new)
            check_stages(new)
        except (ConfigError, CertificateProblem) as exc:
            log.error("reload failed; keeping the running configuration:\n%s", exc)
            return False
        old = self.workers
        self.workers = self._spawn(new)
        self.config = new
        self._terminate(old)
        wanted = {(lst.address, lst.port) for lst in new.listeners}
        for key in [k for k in self.socks if k not in wanted]:
            self.socks.pop(key).close()  # a listener the new configuration no longer has
        log.info("configuration reloaded from %s", new.source)
        return True

    def run(self) -> int:
        spool = spool_for(self.config)
        reset_multiprocess(metrics_dir(self.config))
        recovered = spool.recover()
        if recovered:
            log.info("recovered %d message(s) from an interrupted run", recovered)
        self.workers = self._spawn(self.config)
        for lst in self.config.listeners:
            log.info("listening on %s:%d (%s)", lst.address, lst.port, lst.name)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "_stop", True))
        while not self._stop:
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid and pid not in self.workers:
                # A drained worker of an older configuration: its folder should be empty.
                spool_for(self.config).release_owner(str(pid))
            if pid and pid in self.workers and not self._stop:
                # A worker died unexpectedly: replace it (its active files wait for restart).
                moved = spool_for(self.config).release_owner(str(pid))
                log.error("worker %d exited (status %d); %d message(s) it held go back to the "
                          "queue; starting a new worker", pid, status, moved)
                self.workers.remove(pid)
                self.workers += self._spawn_one()
            time.sleep(0.2)
        self._terminate(self.workers)
        return 0

    def _spawn_one(self) -> list[int]:
        socks = self._sockets_for(self.config)
        pid = os.fork()
        if pid == 0:
            worker_main(self.config, socks, serve_metrics=False)
        return [pid]


def serve(config_path: Path) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    # aiosmtpd logs every command at INFO: far too much for a gateway under load.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        config = load_config(config_path)
        check_tls(config)
        check_stages(config)
    except (ConfigError, CertificateProblem) as exc:
        print(f"filterlang serve: invalid configuration, not starting:\n{exc}", file=sys.stderr)
        return 2
    try:
        return Supervisor(config).run()
    except OSError as exc:
        print(f"filterlang serve: cannot start: {exc}", file=sys.stderr)
        return 1
