"""`filterlang serve`: a supervisor process and N forked workers sharing sockets and spool.

Design (why): Python runs one core per process, so throughput grows with cores only with
several processes. The supervisor binds every listening socket once, recovers the spool (gives
`active` files of a crashed run back to `incoming`), then forks `workers` listener processes
and `queue_workers` queue processes (see worker_counts). A listener runs an asyncio
aiosmtpd server on the inherited sockets (the kernel spreads connections), makes each message
durable and rings the doorbell (runtime/doorbell.py) with its queue id. A queue process claims
messages, runs the pipeline and delivers, in one event loop (runtime/smtp_client.py), at a
lower CPU priority: accepting mail comes first. Queue processes share the spool safely because
every claim is an atomic rename from `incoming`/`deferred` into their own `active` folder.

SIGHUP: the supervisor loads the config again; if it fails, it logs why and keeps the running
workers; if it loads, it starts new workers on the new config, then drains the old ones.
SIGTERM: stop accepting, let open sessions finish (bounded), finish deliveries in flight, exit.
Workers die with the supervisor (PR_SET_PDEATHSIG), so a kill -9 leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from runtime.config.config import ConfigError, GatewayConfig, Listener, load_config
from runtime.engine.providers.resolver import shared_resolver
from runtime.mta import memtrim
from runtime.mta.connlimits import AcceptGuard
from runtime.mta.doorbell import Doorbell
from runtime.mta.hostlimits import MIN_REGIONS, HostCounters
from runtime.mta.listener import GatewayHandler, protocol_factory, tls_context
from runtime.mta.metrics import Metrics, enable_multiprocess, reset_multiprocess
from runtime.mta.mtasts import MtaSts
from runtime.mta.queue import AsyncTransport, QueueRunner, alert
from runtime.mta.smtp_client import AsyncSMTPTransport
from runtime.mta.smtp_client import tls_context as client_tls_context
from runtime.mta.spool import Spool
from runtime.mta.stores import quarantines_for, spool_for
from runtime.mta.tracking import Tracker
from runtime.mta.transport import DnsResolver, Resolver, Transport
from runtime.pipeline.flow import Stage, build_pipeline
from runtime.pipeline.stages import StageSetupError, build_stages, load_context

log = logging.getLogger("filterlang.gateway")

DRAIN_SECONDS = 30.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
LISTENER, QUEUE = "listener", "queue"  # the two kinds of worker process
QUEUE_NICE = 5
GC_YOUNG_THRESHOLD = 50_000  # allocations between two young collections (Python's default: 700)


def metrics_dir(config: GatewayConfig) -> Path:
    return config.storage.data_dir / "metrics"


def make_runner(
    config: GatewayConfig,
    spool: Spool,
    *,
    transport: Transport | AsyncTransport | None = None,
    resolver: Resolver | None = None,
    stages: Mapping[str, Stage] | None = None,
    metrics: Metrics | None = None,
) -> QueueRunner:
    return QueueRunner(
        spool,
        config.delivery,
        transport or AsyncSMTPTransport(config.delivery.connect_timeout, helo=config.hostname),
        stages=build_pipeline(stages),
        resolver=resolver or (mx_resolver(config) if config.delivery.mx or config.routes.uses_mx
                              else None),
        quarantines=quarantines_for(config),
        tracker=Tracker(config.storage.data_dir / "tracking.jsonl"),
        metrics=metrics,
        alerts=Tracker(config.alerts.log) if config.alerts.log else None,
        alert_email=config.alerts.email,
        tls=config.tls_outbound,
        hostname=config.hostname,
        postmaster=config.postmaster,
        routes=config.routes,
        mta_sts=mta_sts_for(config),
    )


def mta_sts_for(config: GatewayConfig) -> MtaSts | None:
    """MTA-STS look-ups where they can apply: [tls.outbound] mta_sts on, and some mail going
    by MX (RFC 8461 governs MX delivery, not a relay or a static route)."""
    tls = config.tls_outbound
    if not tls.mta_sts or not (config.delivery.mx or config.routes.uses_mx):
        return None
    d = config.dns
    return MtaSts(shared_resolver(d.nameservers, d.timeout, d.cache_size), port=tls.mta_sts_port,
                  ca_file=tls.default.ca_file, timeout=min(config.delivery.connect_timeout, 30.0))


def mx_resolver(config: GatewayConfig) -> DnsResolver:
    """MX delivery through the same resolver (and cache) as the authentication checks."""
    d = config.dns
    return DnsResolver(shared_resolver(d.nameservers, d.timeout, d.cache_size),
                       config.delivery.mx_port)


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
    """Load every listener's certificate, and every outbound policy's CA file, now, so a bad
    one stops start-up (or a reload) with a clear message instead of crashing the workers or
    deferring every message of a domain."""
    for i, lst in enumerate(config.listeners):
        try:
            tls_context(lst)
        except (OSError, ssl.SSLError) as exc:
            what = (f"{lst.tls_cert} / {lst.tls_key}" if lst.tls_client_ca is None
                    else f"{lst.tls_cert} / {lst.tls_key} / tls_client_ca {lst.tls_client_ca}")
            raise CertificateProblem(
                f"{config.source}: listeners[{i}].tls_cert: cannot load {what}: {exc}; give a "
                "PEM certificate and its private key (and PEM CA certificates)"
            ) from None
    outbound = config.tls_outbound
    for key, policy in [("tls.outbound", outbound.default),
                        *((f'tls.outbound.domains."{d}"', p) for d, p in outbound.domains.items())]:
        try:
            client_tls_context(policy)
        except (OSError, ssl.SSLError) as exc:
            raise CertificateProblem(
                f"{config.source}: {key}.ca_file: cannot load {policy.ca_file}: {exc}; give "
                "PEM CA certificates (a file, or a folder of them)") from None


def bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Replies go out at once (no Nagle), and each accepted socket inherits this (Linux).
    # asyncio turns Nagle off only for sockets made with proto IPPROTO_TCP, and ours has
    # proto 0: with Nagle on, a write that follows another unacknowledged one waited for the
    # client's delayed ACK, 40 ms. Every STARTTLS session paid that once (TLS 1.3's session
    # tickets, then the EHLO reply), and so can a pipelining client's second reply.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((listener.address, listener.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def stop_accepting(servers: list[asyncio.Server]) -> None:
    """Stop taking connections without dropping one the kernel has already handed over.

    asyncio accepts in a reader callback and sets each connection up in a task of its own;
    once Server.close() has run, that task fails an assert and the connection is closed
    before the greeting, silently. On a reload or a stop, a client that connected in that
    instant lost its session (tests/e2e/test_reload.py failed about one run in 20). So the
    listening sockets leave the selector first; set-up tasks already made run their first
    step (which attaches the connection to the server) before this one resumes; then the
    server closes."""
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())
    # Tasks made before remove_reader are ahead of this one in the ready queue; one turn
    # lets them run, a second gives any set-up step they scheduled its turn too.
    for _ in range(2):
        await asyncio.sleep(0)
    for server in servers:
        server.close()


async def _serve_listener(
    config: GatewayConfig,
    socks: list[tuple[Listener, socket.socket]],
    spool: Spool,
    stop: asyncio.Event,
    on_queued: Callable[[str], None],
    counters: HostCounters | None = None,
    region: int = 0,
) -> None:
    """A listener process: SMTP sessions, each message durable in the spool before its 250."""
    loop = asyncio.get_running_loop()
    AcceptGuard(loop)  # out of descriptors at accept(): 421 to the waiting clients, no traceback
    handler = GatewayHandler(config, spool, on_queued=on_queued, counters=counters,
                             region=region)
    servers = [
        await loop.create_server(protocol_factory(config, lst, handler), sock=sock)
        for lst, sock in socks
    ]
    await stop.wait()
    await stop_accepting(servers)  # open sessions go on
    deadline = loop.time() + DRAIN_SECONDS

    def sessions() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]

    while sessions() and loop.time() < deadline:
        await asyncio.sleep(0.1)


async def _serve_queue(
    config: GatewayConfig, runner: QueueRunner, stop: asyncio.Event, doorbell: Doorbell
) -> None:
    """A queue process: claims messages, runs the pipeline, delivers; until `stop`, then it
    finishes what it holds."""
    loop = asyncio.get_running_loop()
    doorbell.listen(loop, runner.offer)
    # SMTP delivery runs in this event loop (runtime/smtp_client.py says why).
    queue = loop.create_task(runner.run_async(), name="queue-runner")
    await stop.wait()
    runner.request_stop()
    await queue


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_main(config: GatewayConfig, socks: list[tuple[Listener, socket.socket]],
                role: str, doorbell: Doorbell, serve_metrics: bool = False,
                counters: HostCounters | None = None, region: int = 0) -> None:
    """Body of one forked worker, a LISTENER or a QUEUE process; never returns."""
    _die_with_parent()
    memtrim.tune_malloc()
    code = 0
    try:
        spool = spool_for(config, owner=str(os.getpid()))
        enable_multiprocess(metrics_dir(config))
        metrics = Metrics(spool, metrics_dir(config))
        if serve_metrics and config.metrics.port:
            metrics.serve(config.metrics.address, config.metrics.port)
        serve: Callable[[asyncio.Event], Awaitable[None]]
        if role == LISTENER:
            def queued(qid: str) -> None:
                metrics.received.inc()
                doorbell.ring(qid)

            def serve(stop: asyncio.Event) -> Awaitable[None]:
                return _serve_listener(config, socks, spool, stop, queued, counters, region)
        else:
            for _, sock in socks:
                sock.close()  # only listeners accept
            # Accepting mail comes first: when both want a core, the listeners get it and the
            # queue catches up in the gaps (the spool holds what waits).
            os.nice(QUEUE_NICE)
            sink = Tracker(config.alerts.log) if config.alerts.log else None
            stages = build_stages(config, alert=lambda kind, text: alert(metrics, kind, text, sink))
            runner = make_runner(config, spool, metrics=metrics, stages=stages)

            def serve(stop: asyncio.Event) -> Awaitable[None]:
                return _serve_queue(config, runner, stop, doorbell)

        # What is built by now (compiled filters, certificates, keys, modules) lives as long
        # as the process: out of the collector's sight, a full collection scans only what
        # messages create.
        gc.collect()
        gc.freeze()
        # A message makes thousands of short-lived containers (futures, MIME parts, filter
        # results) that die by reference count; at the default 700 allocations a young
        # collection ran every few dozen of them and walked those still alive. Every 50,000:
        # 4.6% fewer instructions per message in a queue process and 1.2% in a listener
        # (callgrind, bench/queue_cpu.py and an in-process listener under smtp-source).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor reloads
            await serve(stop)

        asyncio.run(main())
    except Exception:
        log.exception("worker failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def default_workers() -> int:
    """Listener processes for `workers = 0`: one per two cores this process may run on (at
    least one). A listener keeps about half a core busy per 1,000 messages a second; more
    listeners than that only trade the cores between them and make group commits smaller."""
    try:
        cores = len(os.sched_getaffinity(0))  # what taskset or a container allows
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def worker_counts(config: GatewayConfig) -> tuple[int, int]:
    """(listener processes, queue processes). Left automatic, there is one queue process more
    than listeners: a queue process does more per message than a listener (filters, signing,
    delivery: about 0.9 against 0.6 ms of CPU in bench/gateway.py), and one process can use no
    more than one core, so with one of each the queue process was the bottleneck while the
    machine still had a fifth of a core idle, and the backlog it left took one core to drain.
    On this 2-core machine (bench/gateway.py's set-up, three alternating pairs, best of two
    rounds each) 1 + 1 delivered 958-980 msg/s, 1 + 2 delivered 1,024-1,073. An explicit
    `workers` without `queue_workers` starts that many of each, as it did before."""
    listeners = config.workers or default_workers()
    if config.queue_workers:
        return listeners, config.queue_workers
    return listeners, listeners + (0 if config.workers else 1)


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.workers: dict[int, str] = {}  # pid -> LISTENER or QUEUE
        self.doorbell = Doorbell()
        # The host access table's counts, shared by the listener processes (made before they
        # are forked); each listener holds a region of it (see runtime/mta/hostlimits.py).
        self.counters = HostCounters(regions=max(MIN_REGIONS, 4 * worker_counts(config)[0]))
        self.regions: dict[int, tuple[HostCounters, int]] = {}  # listener pid -> its region
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

    def _fork(self, config: GatewayConfig, role: str, doorbell: Doorbell,
              serve_metrics: bool = False) -> int:
        socks = self._sockets_for(config)
        # The supervisor's own SIGTERM handler only sets a flag on its object: a worker that
        # inherited it would ignore a SIGTERM that came before its event loop took the signal
        # over, and the supervisor would wait for it forever. So the signals are held across
        # the fork, and the child puts back the defaults before it takes them again: a stop
        # during start-up ends the worker (it holds nothing yet).
        region = self._free_region() if role == LISTENER else 0
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            worker_main(config, socks, role, doorbell, serve_metrics, self.counters, region)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if role == LISTENER:
            self.regions[pid] = (self.counters, region)
        return pid

    def _free_region(self) -> int:
        taken = {r for table, r in self.regions.values() if table is self.counters}
        free = next((r for r in range(self.counters.regions) if r not in taken), None)
        if free is None:
            # More listener processes alive at once (a reload that raised `workers` while the
            # old ones drain) than the table has regions: the new ones count in a new table.
            self.counters = HostCounters(regions=max(MIN_REGIONS, 4 * len(taken)))
            free = 0
        return free

    def _reaped(self, pid: int) -> None:
        """A worker is gone (crashed, killed or drained): the connections its region still
        counts are closed, so they leave the shared per-IP counts, and the region is free."""
        table, region = self.regions.pop(pid, (None, 0))
        if table is not None:
            freed = table.release_region(region)
            if freed:
                log.info("listener %d left %d connection(s) counted; released", pid, freed)

    def _spawn(self, config: GatewayConfig, doorbell: Doorbell) -> dict[int, str]:
        """The listener and queue processes of worker_counts().

        Why two kinds: a process that both answers SMTP and runs filters and signing makes
        every session wait while it signs, and threads in one process spend their time
        handing the GIL to each other. Split, like Postfix's smtpd and its queue manager,
        each is one thread in one event loop, and the kernel shares the cores."""
        listeners, queues = worker_counts(config)
        pids = {self._fork(config, LISTENER, doorbell, serve_metrics=(i == 0)): LISTENER
                for i in range(listeners)}
        pids.update({self._fork(config, QUEUE, doorbell): QUEUE for _ in range(queues)})
        return pids

    def _terminate(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._reaped(pid)

    def reload(self) -> bool:
        try:
            new = load_config(self.config.source)
            check_tls(new)
            check_stages(new)
        except (ConfigError, CertificateProblem) as exc:
            log.error("reload failed; keeping the running configuration:\n%s", exc)
            return False
        old, old_bell = self.workers, self.doorbell
        self.doorbell = Doorbell()
        self.workers = self._spawn(new, self.doorbell)
        self.config = new
        self._terminate(list(old))
        old_bell.close()
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
        self.workers = self._spawn(self.config, self.doorbell)
        # Empty files for the spool to reuse (see Spool.remove), made beside the workers.
        threading.Thread(target=spool.reserve_free, name="spool-reserve", daemon=True).start()
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
            if pid:
                self._reaped(pid)
            if pid and pid not in self.workers:
                # A drained worker of an older configuration: its folder should be empty.
                spool_for(self.config).release_owner(str(pid))
            if pid and pid in self.workers and not self._stop:
                # A worker died unexpectedly: replace it (its active files wait for restart).
                moved = spool_for(self.config).release_owner(str(pid))
                role = self.workers.pop(pid)
                log.error("%s worker %d exited (status %d); %d message(s) it held go back to "
                          "the queue; starting a new one", role, pid, status, moved)
                self.workers[self._fork(self.config, role, self.doorbell)] = role
            time.sleep(0.2)
        self._terminate(list(self.workers))
        return 0


def serve(config_path: Path) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    # aiosmtpd logs every command at INFO: far too much for a gateway under load.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    from runtime.mta.preflight import is_soft, preflight

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"filterlang serve: invalid configuration, not starting:\n{exc}", file=sys.stderr)
        return 2
    # What `serve --check` checks, so a port in use or an unwritable folder is reported by the
    # key to change, not as a bare [Errno ...] from deep in the start-up.
    issues = preflight(config, keystore=False)
    for issue in [i for i in issues if is_soft(i)]:
        log.warning("%s", issue)
    hard = [i for i in issues if not is_soft(i)]
    if hard:
        print("filterlang serve: cannot start; fix these in the configuration:\n"
              + "\n".join(str(i) for i in hard), file=sys.stderr)
        return 2
    try:
        return Supervisor(config).run()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"filterlang serve: cannot start: {exc.strerror or exc}{where}; "
              f"run `filterlang serve --check -c {config_path}`", file=sys.stderr)
        return 2
