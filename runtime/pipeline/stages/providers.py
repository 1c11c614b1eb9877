"""Each message's outside services, worked out once before the filters run (issue 16): the
SPF, DKIM, DMARC and ARC checks of inbound mail, the answers of the DNS lists the filters name
and the reputation score, all through the worker's one resolver; the LDAP group memberships
the group rules and mail policies can need (ldap3 blocks: asked from a thread); and DKIM signing of outgoing
mail once every stage (S/MIME included) is done.

`Providers.for_message` returns the message's `Services`; the rules read it through
`need(ctx.services, ...)`. A provider that is not configured stays None there, so its rules
are unavailable, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from attrs import define, field

from filterlang.compile import CBool, CFilter, CIf, CNot, CRule
from runtime.config.config import GatewayConfig
from runtime.engine.providers.auth import Authenticator, AuthSettings, AuthVerdict, org_domain
from runtime.engine.providers.dkimsign import DkimKeyError, DkimSigner, DomainKey, load_key
from runtime.engine.providers.dnslist import (
    DnsListAnswers,
    query_lists,
    query_reputation,
    query_uri_lists,
    url_hosts,
)
from runtime.engine.providers.ldap import Directory, LdapAnswers, LdapUnavailable
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


def group_names(filters: Iterable[CFilter], rule: str) -> frozenset[str]:
    """The groups `mail-from-group` / `rcpt-to-group` rules name, to ask about the message's
    addresses once, before the rules, from a thread (ldap3 blocks)."""
    return frozenset(str(r.operand).strip().lower() for f in filters for r in _rules(f.body)
                     if r.sig.name == rule and r.operand is not None)


def policy_groups(entries: Iterable[str]) -> frozenset[tuple[str, str]]:
    """(query, group) of mail policy entries written `NAME.ldapgroup: GROUP`."""
    out = set()
    for e in entries:
        query, sep, group = e.partition(".ldapgroup:")
        if sep:
            out.add((query.strip(), group.strip().lower()))
    return frozenset(out)


@define
class LdapLookups:
    """What the filters and mail policies ask the directory, and the directories to ask."""

    directories: dict[str, Directory]
    default: str | None  # [ldap] group_query
    by_listener: dict[str, str]  # listener name -> its ldap_group_query
    sender_groups: frozenset[str]  # mail-from-group == G
    rcpt_groups: frozenset[str]  # rcpt-to-group == G
    policy_senders: frozenset[tuple[str, str]]  # (query, group) of policies' senders
    policy_rcpts: frozenset[tuple[str, str]]
    # The stages' alert: one `ldap_unavailable` per query and outage in this process, not
    # one per message deferred meanwhile (as the key store's outage is alerted).
    alert: Callable[[str, str], None] = lambda kind, text: None
    _down: set[str] = field(factory=set, init=False)

    def query_for(self, listener: str) -> str:
        return self.by_listener.get(listener) or self.default or ""

    def wanted(self, env: Envelope) -> dict[str, set[tuple[str, str]]]:
        """query -> the (address, group) pairs this message can need."""
        out: dict[str, set[tuple[str, str]]] = {}
        query = self.query_for(env.listener)
        rcpts = [r for r in env.rcpt_tos if r]
        if query:
            out.setdefault(query, set()).update((env.mail_from, g) for g in self.sender_groups)
            out.setdefault(query, set()).update((r, g) for r in rcpts for g in self.rcpt_groups)
        for q, g in self.policy_senders:
            out.setdefault(q, set()).add((env.mail_from, g))
        for q, g in self.policy_rcpts:
            out.setdefault(q, set()).update((r, g) for r in rcpts)
        return {q: {(a, g) for a, g in pairs if a} for q, pairs in out.items()}

    async def for_message(self, env: Envelope) -> LdapAnswers:
        wanted = {q: pairs for q, pairs in self.wanted(env).items()
                  if pairs and q in self.directories}

        async def one(query: str, pairs: set[tuple[str, str]]) -> tuple[str, Any]:
            try:
                return query, await asyncio.to_thread(self.directories[query].answers, pairs)
            except LdapUnavailable as exc:
                return query, exc

        got = await asyncio.gather(*(one(q, p) for q, p in sorted(wanted.items())))
        for query, found in got:
            self._outage(query, found)
        answers = {(q, a, g): hit for q, found in got if isinstance(found, dict)
                   for (a, g), hit in found.items()}
        problems = {q: str(found) for q, found in got if not isinstance(found, dict)}
        return LdapAnswers(self.query_for(env.listener), answers, problems, self.directories)


    def _outage(self, query: str, found: Any) -> None:
        """Alert when `query`'s directory stops answering, log when it answers again."""
        if isinstance(found, LdapUnavailable):
            if query in self._down:
                log.info("%s", found)  # already alerted: each deferral is in tracking
                return
            self._down.add(query)
            log.warning("%s", found)
            self.alert("ldap_unavailable", f"{found}; mail whose filters or mail policies "
                       "need its groups waits in the deferred queue and is retried on the "
                       "retry schedule")
        elif query in self._down:
            self._down.discard(query)
            log.warning("LDAP %s answers again; deferred mail goes out at its next retry", query)


def load_ldap(config: GatewayConfig, filters: Iterable[CFilter]) -> LdapLookups | None:
    """The directory look-ups the filters and mail policies need; None when they need none
    or no [ldap.NAME] is configured (the group rules are then unavailable)."""
    every = list(filters)
    policies = (*config.incoming_policies, *config.outgoing_policies)
    lookups = LdapLookups(
        {name: Directory(q) for name, q in config.ldap.queries.items()},
        config.ldap.group_query,
        {lst.name: lst.ldap_group_query for lst in config.listeners if lst.ldap_group_query},
        group_names(every, "mail-from-group"), group_names(every, "rcpt-to-group"),
        policy_groups(e for p in policies for e in p.senders),
        policy_groups(e for p in policies for e in p.recipients))
    if not lookups.directories or not (lookups.sender_groups or lookups.rcpt_groups
                                       or lookups.policy_senders or lookups.policy_rcpts):
        return None
    return lookups


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
    ldap: LdapLookups | None = None
    uri_lists: frozenset[str] = frozenset()  # of `zones`, those asked about URL host names
    uri_limit: int = 20

    async def for_message(self, env: Envelope, data: bytes, direction: str,
                          base: Services | None) -> Services:
        ip = env.peer or "127.0.0.1"
        self.resolver.bind(asyncio.get_running_loop())
        auth = lists = rep = groups = None
        work: list[Any] = []
        if self.ldap is not None:
            work.append(self.ldap.for_message(env))
        if self.authenticator is not None and direction == "incoming":
            work.append(asyncio.to_thread(self.authenticator.check, ip, env.helo or "",
                                          env.mail_from, data))
        if self.zones:
            work.append(self._lists(ip, data))
        if self.reputation_zone:
            work.append(query_reputation(self.resolver, ip, self.reputation_zone))
        got = list(await asyncio.gather(*work))
        if self.ldap is not None:
            groups = got.pop(0)
        if self.authenticator is not None and direction == "incoming":
            auth = got.pop(0)
        if self.zones:
            lists = got.pop(0)
        if self.reputation_zone:
            rep = got.pop(0)
        services = base if base is not None else Services()
        return attrs.evolve(services, auth=auth or services.auth,
                            dnslist=lists or services.dnslist,
                            reputation=rep or services.reputation,
                            ldap=groups or services.ldap)


    async def _lists(self, ip: str, data: bytes) -> DnsListAnswers:
        """The IP lists asked about `ip`, the URI lists about the message's URL hosts."""
        by_ip = self.zones - self.uri_lists
        by_uri = self.zones & self.uri_lists
        answers = await query_lists(self.resolver, ip, by_ip)
        if by_uri:
            hosts = await asyncio.to_thread(url_hosts, data, self.uri_limit)
            answers = answers.merged(await query_uri_lists(self.resolver, hosts, by_uri,
                                                           org_domain))
        return answers


def load_providers(config: GatewayConfig, filters: Iterable[CFilter],
                   alert: Callable[[str, str], None] | None = None) -> Providers | None:
    """The checks and look-ups `config` asks for; None when it asks for none. `alert` is
    told when a directory stops answering (once per outage)."""
    filters = list(filters)
    zones = dnslist_zones(filters)
    ldap = load_ldap(config, filters)
    if ldap is not None and alert is not None:
        ldap.alert = alert
    a = config.authentication
    if a is None and not zones and config.dns.reputation_zone is None and ldap is None:
        return None
    d = config.dns
    resolver = shared_resolver(d.nameservers, d.timeout, d.cache_size)
    auth = (Authenticator(resolver, AuthSettings(a.spf, a.dkim, a.dmarc, a.arc))
            if a is not None else None)
    return Providers(resolver, auth, a.authserv_id if a is not None else "", zones,
                     d.reputation_zone, ldap, d.uri_lists & zones, d.uri_limit)


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


__all__ = ["DkimKeyError", "LdapLookups", "Providers", "dnslist_zones", "group_names",
           "load_ldap", "load_providers", "load_signer", "verdict_of"]
