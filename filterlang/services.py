"""Which outside provider each service-backed rule needs (reference 6.1, the dependency column).

One row per rule: the rule's name -> the provider's name, the name `allow_unavailable` in
gateway.toml uses and the gateway's configuration answers for (runtime.config.providers says
when a provider is configured). A new provider adds its rules here, one line each; a rule
without a row needs no outside provider.

`dnslist` asks the gateway's one resolver (the system's when `[dns]` names no name server),
which is always there, so it has no row: its answers are shown in the trace all the same.
"""

from __future__ import annotations

RULE_PROVIDERS: dict[str, str] = {
    "mail-from-group": "ldap",
    "rcpt-to-group": "ldap",
    "reputation": "reputation",
    "no-reputation": "reputation",
    "spf-status": "spf",
    "spf-passed": "spf",
    "dkim-authentication": "dkim",
    "dmarc-status": "dmarc",
    "dmarc-policy": "dmarc",
    "message-language": "language",
    "image-verdict": "image",
    "url-reputation": "url",
    "url-no-reputation": "url",
    "url-category": "url",
    "forged-email-detection": "forged",
    "spam-verdict": "antispam",
    "spam-score": "antispam",
    "virus-verdict": "antivirus",
}

#: Where gateway.toml defines each provider (the hint of F407).
PROVIDER_SETUP: dict[str, str] = {
    "ldap": "[ldap.NAME] with a group query",
    "reputation": "[dns] reputation_zone",
    "spf": "[authentication] with spf = true",
    "dkim": "[authentication] with dkim = true",
    "dmarc": "[authentication] with dmarc = true",
    "antispam": "[antispam] with rspamd",
    "antivirus": "[antivirus] with clamd",
}

#: Every provider name, for `allow_unavailable` (a name not here is a typo).
PROVIDER_NAMES: frozenset[str] = frozenset(RULE_PROVIDERS.values())


def provider_of(rule: str) -> str | None:
    """The provider `rule` needs, or None when it needs none."""
    return RULE_PROVIDERS.get(rule)
