"""The names a configuration defines, as the filter checker takes them (F405), and which
configuration to check against when none is named: shared by `lint --config` and the language
server, so that both check filters against the same names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from filterlang.check import ResourceNames
    from runtime.config.config import GatewayConfig

#: Used when no configuration is named; when it is not set either, names are not checked.
CONFIG_ENV = "FILTERLANG_CONFIG"


def config_from_env() -> str | None:
    """The configuration ``$FILTERLANG_CONFIG`` names, if any."""
    return os.environ.get(CONFIG_ENV) or None


def resource_names(config: GatewayConfig) -> ResourceNames:
    """The quarantines, sending and encryption profiles, dictionaries, listeners and text
    resources of ``config``, and the outside providers it defines (and allows to be missing)."""
    from filterlang.check import ResourceNames
    from runtime.config.providers import configured_providers

    names = config.names()
    return ResourceNames(
        quarantines=names["quarantine"],
        profiles=names["profile"],
        encryption_profiles=names["encryption_profile"],
        dictionaries=names["dictionary"],
        listeners=names["listener"],
        text_resources=names["text_resource"],
        services=configured_providers(config),
        allow_unavailable=config.allow_unavailable,
    )


def load_names(path: str | Path) -> ResourceNames:
    """The names the configuration at ``path`` defines; ``ConfigError`` lists its mistakes
    (a file that cannot be read is one of them)."""
    # Imported here: `lint` without a configuration never pays for loading one.
    from runtime.config.config import load_config
    from runtime.config.schema import ConfigError, ConfigIssue

    try:
        return resource_names(load_config(path))
    except OSError as exc:
        issue = ConfigIssue(str(path), "(file)", f"cannot read: {exc.strerror or exc}")
        raise ConfigError([issue]) from None
