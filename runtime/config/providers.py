"""When the configuration defines each outside provider the filters' rules may need.

filterlang.services says which provider a rule needs (rule -> provider name); this says, per
provider name, whether a gateway.toml defines it. A new provider adds one line here and one
per rule there. `lint --config`, `serve --check` and the gateway's start read both: a rule
whose provider is missing is an error naming the filter file and line, or a warning when the
top-level `allow_unavailable` lists the provider (the rule is then always false).
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.config.config import GatewayConfig

PROVIDERS: dict[str, Callable[[GatewayConfig], bool]] = {
    "ldap": lambda c: bool(c.ldap.queries),
    "reputation": lambda c: c.dns.reputation_zone is not None,
    "spf": lambda c: c.authentication is not None and c.authentication.spf,
    "dkim": lambda c: c.authentication is not None and c.authentication.dkim,
    "dmarc": lambda c: c.authentication is not None and c.authentication.dmarc,
    "antispam": lambda c: c.antispam is not None,
    "antivirus": lambda c: c.antivirus is not None,
}


def configured_providers(config: GatewayConfig) -> frozenset[str]:
    """The names of the providers `config` defines (a provider with no line here has none)."""
    return frozenset(name for name, defined in PROVIDERS.items() if defined(config))
