"""DNS block lists (`dnslist('zone')`, reference 6.1 DNS) and the DNS reputation zone (REP).

Both are asked about the connecting IP with its address reversed under the zone (RFC 5782
2.1/2.4): an A record in 127.0.0.0/8 means listed, and its address is the list's code, which
`dnslist('zone') == '127.0.0.2'` compares. The reputation zone answers a TXT record holding a
score from -10 to 10. The zones the filters name are asked once per message, side by side,
before the filters run; the rules then read the answers.
"""

from __future__ import annotations

import asyncio
import ipaddress

from attrs import frozen

from runtime.engine.providers.resolver import Resolver


def reversed_name(ip: str, zone: str) -> str | None:
    """`4.3.2.1.zone` for 1.2.3.4, nibbles for IPv6 (RFC 5782 2.4); None for no address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    rev = addr.reverse_pointer.rsplit(".", 2)[0]  # drop in-addr.arpa / ip6.arpa
    return f"{rev}.{zone.strip('.')}"


@frozen
class DnsListAnswers:
    """The answers for one message's connecting IP: zone -> the list's code, or None."""

    ip: str
    answers: dict[str, str | None]
    problems: dict[str, str]  # zone -> a temporary failure (the rule counts as not listed)

    def lookup(self, zone: str, ip: str) -> str | None:
        return self.answers.get(zone.strip(".").lower())


async def query_lists(resolver: Resolver, ip: str, zones: frozenset[str]) -> DnsListAnswers:
    async def one(zone: str) -> tuple[str, str | None, str]:
        name = reversed_name(ip, zone)
        if name is None:
            return zone, None, ""
        found = await resolver.lookup(name, "A")
        if found.status == "temperror":
            return zone, None, found.problem
        codes = [r.address for r in found.records if r.address.startswith("127.")]
        return zone, (codes[0] if codes else None), ""

    got = await asyncio.gather(*(one(z) for z in sorted(zones)))
    return DnsListAnswers(ip, {z: code for z, code, _ in got}, {z: p for z, _, p in got if p})


@frozen
class ReputationAnswer:
    """The reputation score of the connecting IP, None when the zone has none."""

    value: float | None

    def score(self, ip: str) -> float | None:
        return self.value


async def query_reputation(resolver: Resolver, ip: str, zone: str) -> ReputationAnswer:
    name = reversed_name(ip, zone)
    if name is None:
        return ReputationAnswer(None)
    found = await resolver.lookup(name, "TXT")
    for text in found.texts:
        try:
            score = float(text.strip())
        except ValueError:
            continue
        if -10.0 <= score <= 10.0:
            return ReputationAnswer(score)
    return ReputationAnswer(None)
