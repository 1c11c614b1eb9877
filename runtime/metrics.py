"""Prometheus metrics (prometheus-client), served on a configured loopback port.

With several worker processes each one has its own registry; only the main worker serves the
endpoint and queue sizes are read from the shared spool, so they are host-wide.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from runtime.spool import STATES, Spool

log = logging.getLogger("filterlang.metrics")


class Metrics:
    def __init__(self, spool: Spool | None = None) -> None:
        self.registry = CollectorRegistry()
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
        self.queue = Gauge("filterlang_queue_size", "Spool files per state", ["state"], registry=r)
        if spool is not None:
            for state in STATES:
                self.queue.labels(state).set_function(
                    lambda s=state: float(len(spool.list_all(s)))  # type: ignore[misc]
                )

    def serve(self, address: str, port: int) -> None:
        """Serve in a background thread; retry while a draining old worker still holds the port."""

        def bind() -> None:
            for _ in range(240):
                try:
                    start_http_server(port, addr=address, registry=self.registry)
                    return
                except OSError:
                    time.sleep(0.5)
            log.error("metrics endpoint %s:%d could not be bound", address, port)

        threading.Thread(target=bind, name="metrics-bind", daemon=True).start()
