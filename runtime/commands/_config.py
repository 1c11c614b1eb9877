"""The gateway configuration for the administration commands (queue, quarantine, profiles)."""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.config.config import ConfigError, GatewayConfig, load_config


def config_or_none(path: Path) -> GatewayConfig | None:
    """Load `path`; on any mistake print every problem and return None (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
