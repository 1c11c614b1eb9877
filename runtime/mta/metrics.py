"""Prometheus metrics (prometheus-client), served on a configured loopback port.

Several worker processes: each worker counts into prometheus-client's multiprocess files under
`<data_dir>/metrics` (see `enable_multiprocess`), and the first worker serves the sum of all of
them, so counters are host-wide. Queue sizes are read from the shared spool at scrape time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from runtime.mta.spool import Spool

log = logging.getLogger("filterlang.metrics")


def enable_multiprocess(directory: Path) -> None:
    """Make metrics created from now on in this process count into shared files.

    Call in each worker after fork and before `Metrics()`; the supervisor empties the folder
    at start so a new run begins at zero.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)


# prometheus-client asks for the process id on every increment (to notice a fork and start
# files of the child's own); os.getpid() is a system call each time, several per message.
# The id, kept current across forks, answers the same without one.
_pid = os.getpid()


def _new_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_new_pid)


def _process_id() -> int:
    return _pid


def reset_multiprocess(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f in directory.glob("*.db"):
        f.unlink(missing_ok=True)


class QueueSizes(Collector):
    """`filterlang_queue_size{state}` read from the spool when scraped (host-wide)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("filterlang_queue_size", "Spool files per state", labels=["state"])
        for state, n in self.spool.counts().items():
            family.add_metric([state], float(n))
        yield family


class Metrics:
    def __init__(self, spool: Spool | None = None, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.received = Counter("filterlang_messages_received", "Messages accepted (250)", registry=r)
        self.delivered = Counter(
            "filterlang_recipients_delivered", "Recipient deliveries by outcome", ["outcome"], registry=r
        )
        self.filter_hits = Counter("filterlang_filter_hits", "Filter matches", ["filter"], registry=r)
        self.smime = Counter("filterlang_smime_outcomes", "S/MIME outcomes", ["outcome"], registry=r)
        self.harvest = Counter("filterlang_harvest", "Harvested keys", ["outcome"], registry=r)
        self.alerts = Counter("filterlang_alerts", "Alerts raised", ["kind"], registry=r)
        self.latency = Histogram(
            "filterlang_delivery_seconds",
            "Time from receipt to final delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.spool = spool
        if spool is not None:
            r.register(QueueSizes(spool))
        self._children: dict[tuple[Counter, str], Counter] = {}

    def child(self, counter: Counter, label: str) -> Counter:
        """`counter.labels(label)`, looked up once per process: `labels` validates, locks
        and builds a key on every call, several times per message."""
        try:
            return self._children[counter, label]
        except KeyError:
            found = self._children[counter, label] = counter.labels(label)
            return found

    def exposed_registry(self) -> CollectorRegistry:
        """What the endpoint serves: every worker's counters in multiprocess mode."""
        if self.multiprocess_dir is None:
            return self.registry
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(self.multiprocess_dir))
        if self.spool is not None:
            reg.register(QueueSizes(self.spool))
        return reg

    def serve(self, address: str, port: int) -> None:
        """Serve in a background thread; retry while a draining old worker still holds the port."""
        registry = self.exposed_registry()

        def bind() -> None:
            for _ in range(240):
                try:
                    start_http_server(port, addr=address, registry=registry)
                    return
                except OSError:
                    time.sleep(0.5)
            log.error("metrics endpoint %s:%d could not be bound", address, port)

        threading.Thread(target=bind, name="metrics-bind", daemon=True).start()
