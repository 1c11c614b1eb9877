"""The provider interface for rules that need an outside service (reference 6.1).

A provider is any object with the method a rule calls; ``None`` means "service unavailable",
which makes the rule false (reference 6.1) and is reported in the trace.
"""

from __future__ import annotations

from typing import Protocol

from attrs import define


class Unavailable(Exception):
    """Raised by the runtime when a rule's provider is missing; the rule then counts as false."""

    def __init__(self, service: str) -> None:
        super().__init__(f"{service} service unavailable")
        self.service = service


class TemporaryFailure(Exception):
    """A provider that is configured could not answer now (a directory server down): the
    rule that needed it fails its stage as temporary, whatever `on_filter_error` says, so the
    message waits in the queue and is tried again; the rule is never taken as false."""


class LdapProvider(Protocol):
    def in_group(self, address: str, group: str) -> bool: ...


# How a provider plugs in: a rule asks `need(ctx.services, "name")` for the attribute of the
# message's `Services`; None there makes the rule unavailable (false, and said in the trace).
# The gateway fills each message's Services before the filters run (runtime.pipeline.stages.
# providers); an LDAP or scanning provider joins the same way, as one more attribute.


class DnsListProvider(Protocol):
    def lookup(self, zone: str, ip: str) -> str | None: ...


class ReputationProvider(Protocol):
    def score(self, ip: str) -> float | None: ...


class AuthProvider(Protocol):
    """SPF, DKIM and DMARC results of the message (runtime.engine.providers.auth.AuthVerdict):
    worked out once per message before the filters run, so the rules only read them."""

    def spf(self, identity: str) -> str: ...
    def dkim(self) -> str: ...
    def dmarc(self) -> str: ...
    def dmarc_policy(self) -> str: ...


class ScoreProvider(Protocol):
    """URL, image, language and forged-email detectors share this shape: one verdict string."""

    def verdict(self, rule: str, args: tuple[object, ...], raw: bytes) -> object: ...


class SpamProvider(Protocol):
    """Rspamd's answer for this splinter (runtime.engine.providers.scanners.SpamVerdict)."""

    def spam(self) -> SpamVerdictLike: ...


class VirusProvider(Protocol):
    """clamd's answer for this splinter (runtime.engine.providers.scanners.VirusVerdict)."""

    def virus(self) -> VirusVerdictLike: ...


class SpamVerdictLike(Protocol):
    @property
    def verdict(self) -> str: ...
    @property
    def score(self) -> float: ...


class VirusVerdictLike(Protocol):
    @property
    def verdict(self) -> str: ...
    @property
    def name(self) -> str: ...


@define
class Services:
    ldap: LdapProvider | None = None
    dnslist: DnsListProvider | None = None
    reputation: ReputationProvider | None = None
    auth: AuthProvider | None = None
    url: ScoreProvider | None = None
    image: ScoreProvider | None = None
    language: ScoreProvider | None = None
    forged: ScoreProvider | None = None
    spam: SpamProvider | None = None  # set per splinter by the anti-spam stage
    virus: VirusProvider | None = None  # set per splinter by the anti-virus stage
    counters: dict[str, int] | None = None  # header-repeats: shared store in the gateway


def need(services: Services | None, name: str) -> object:
    provider = getattr(services, name, None) if services is not None else None
    if provider is None:
        raise Unavailable(name)
    return provider
