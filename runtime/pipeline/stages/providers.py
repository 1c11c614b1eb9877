"""Each message's outside services, worked out once before the filters run (issue 16): the
SPF, DKIM, DMARC and ARC checks of inbound mail, the answers of the DNS lists the filters name
and the reputation score, all through the worker's one resolver; and DKIM signing of outgoing
mail once every stage (S/MIME included) is done.

`Providers.for_message` returns the message's `Services`; the rules read it through
`need(ctx.services, ...)`. A provider that is not configured stays None there, so its rules
are unavailable, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
from attrs import define

from filterlang.compile import CBool, CFilter, CIf, CNot, CRule
from runtime.config.config import GatewayConfig
from runtime.engine.providers.auth import Authenticator, AuthSettings, AuthVerdict
from runtime.engine.providers.dkimsign import DkimKeyError, DkimSigner, DomainKey, load_key
from runtime.engine.providers.dnslist import query_lists, query_reputation
from runtime.engine.providers.resolver import Resolver, shared_resolver
from runtime.engine.services import Services
from runtime.pipeline.envelope import Envelope

log = logging.getLogger("filterlang.providers")


def _rules(node: object) -> Iterator[CRule]:
    if isinstance(node, CRule):
        yield node
    elif isinstance(node, CNot):
        yield from _rules(node.operand)
    elif isinstance(node, CBool):
        for o in node.operands:
            yield from _rules(o)
    elif isinstance(node, CIf):
        yield from _rules(node.condition)
        for st in (*node.then, *node.else_):
            yield from _rules(st)


def dnslist_zones(filters: Iterable[CFilter]) -> frozenset[str]:
    """The zones `dnslist('zone')` rules name, to ask them once per message before the rules."""
    return frozenset(str(r.args[0]).strip(".").lower() for f in filters for r in _rules(f.body)
                     if r.sig.name == "dnslist" and r.args and r.args[0])


@define
class Providers:
    resolver: Resolver
    authenticator: Authenticator | None
    authserv_id: str
    zones: frozenset[str]
    reputation_zone: str | None

    async def for_message(self, env: Envelope, data: bytes, direction: str,
                          base: Services | None) -> Services:
        ip = env.peer or "127.0.0.1"
        self.resolver.bind(asyncio.get_running_loop())
        auth = lists = rep = None
        work: list[Any] = []
        if self.authenticator is not None and direction == "incoming":
            work.append(asyncio.to_thread(self.authenticator.check, ip, env.helo or "",
                                          env.mail_from, data))
        if self.zones:
            work.append(query_lists(self.resolver, ip, self.zones))
        if self.reputation_zone:
            work.append(query_reputation(self.resolver, ip, self.reputation_zone))
        got = list(await asyncio.gather(*work))
        if self.authenticator is not None and direction == "incoming":
            auth = got.pop(0)
        if self.zones:
            lists = got.pop(0)
        if self.reputation_zone:
            rep = got.pop(0)
        services = base if base is not None else Services()
        return attrs.evolve(services, auth=auth or services.auth,
                            dnslist=lists or services.dnslist,
                            reputation=rep or services.reputation)


def load_providers(config: GatewayConfig, filters: Iterable[CFilter]) -> Providers | None:
    """The checks and look-ups `config` asks for; None when it asks for none."""
    zones = dnslist_zones(filters)
    a = config.authentication
    if a is None and not zones and config.dns.reputation_zone is None:
        return None
    d = config.dns
    resolver = shared_resolver(d.nameservers, d.timeout, d.cache_size)
    auth = (Authenticator(resolver, AuthSettings(a.spf, a.dkim, a.dmarc, a.arc))
            if a is not None else None)
    return Providers(resolver, auth, a.authserv_id if a is not None else "", zones,
                     d.reputation_zone)


def load_signer(config: GatewayConfig) -> DkimSigner | None:
    """The DKIM signing keys of `[dkim.DOMAIN]`; DkimKeyError names a key that cannot be used."""
    if not config.dkim:
        return None
    keys = {}
    for domain, c in config.dkim.items():
        pem = load_key(c.key, f"{config.source}: dkim.{domain}.key")
        canon = tuple(part.encode() for part in c.canonicalization.split("/"))
        keys[domain] = DomainKey(domain, c.selector, pem, (canon[0], canon[1]),
                                 tuple(h.lower().encode() for h in c.headers))
    return DkimSigner(keys)


def verdict_of(services: object) -> AuthVerdict | None:
    found = getattr(services, "auth", None)
    return found if isinstance(found, AuthVerdict) else None


__all__ = ["DkimKeyError", "Providers", "dnslist_zones", "load_providers", "load_signer",
           "verdict_of"]
