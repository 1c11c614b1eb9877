"""Where a gateway configuration keeps its spool and quarantines: kept apart from the
supervisor so that `filterlang queue` and `filterlang quarantine` open them without importing
the SMTP server and the pipeline."""

from __future__ import annotations

from runtime.config.config import GatewayConfig
from runtime.mta.quarantine import Quarantines
from runtime.mta.spool import Spool


def spool_for(config: GatewayConfig, owner: str = "main") -> Spool:
    return Spool(config.storage.data_dir / "spool", owner, config.storage.spool_sync)


def quarantines_for(config: GatewayConfig) -> Quarantines:
    return Quarantines(config.storage.data_dir / "quarantine", frozenset(config.quarantines))
