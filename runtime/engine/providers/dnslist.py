"""DNS block lists (`dnslist('zone')`, reference 6.1 DNS) and the DNS reputation zone (REP).

Both are asked about the connecting IP with its address reversed under the zone (RFC 5782
2.1/2.4): an A record in 127.0.0.0/8 means listed, and its address is the list's code, which
`dnslist('zone') == '127.0.0.2'` compares. The reputation zone answers a TXT record holding a
score from -10 to 10. The zones the filters name are asked once per message, side by side,
before the filters run; the rules then read the answers.

A zone configured as a URI list (`[dns] uri_lists`: Spamhaus DBL, SURBL, URIBL) is a list of
domain names (RFC 5782 2.3): it is asked about the host names of the URLs in the message's
text parts (each host's registrable domain, and the host itself when it is longer), and the
first listed one gives the code. Lists answer 127.255.255.0/24 for a refused query (Spamhaus:
a public resolver, over quota): that is a problem reported in the trace, never "listed".
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import ipaddress
import re
from collections.abc import Callable, Iterable

from attrs import field, frozen

from runtime.engine.providers.resolver import Resolver

# URLs as mail clients make them clickable: a scheme, or a bare www. host.
_URL_HOST = re.compile(
    rb"(?:\b(?:https?|ftp)://(?:[^\s/?#@\"'<>]{0,256}@)?|\bwww\.(?=[a-z0-9-]))"
    rb"(\[[0-9a-f:.]{2,45}\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)", re.IGNORECASE)
_TEXT_BYTES = 1 << 20  # text scanned for URLs per message: the first MiB of its text parts
_REFUSED = ipaddress.ip_network("127.255.255.0/24")  # a list's "query refused" codes


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
    listed: dict[str, str] = field(factory=dict)  # URI lists: zone -> the name found listed

    def lookup(self, zone: str, ip: str) -> str | None:
        return self.answers.get(zone.strip(".").lower())

    def merged(self, other: DnsListAnswers) -> DnsListAnswers:
        return DnsListAnswers(self.ip, {**self.answers, **other.answers},
                              {**self.problems, **other.problems},
                              {**self.listed, **other.listed})


def url_hosts(data: bytes, limit: int) -> list[str]:
    """The distinct host names (or [IP] literals) of the URLs in `data`'s text parts, in
    order of appearance, at most `limit`; decoded from their transfer encoding first."""
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    except Exception:  # a message the parser cannot read has no URLs we can find
        return []
    hosts: dict[str, None] = {}
    budget = _TEXT_BYTES
    for part in msg.walk():
        try:
            if part.get_content_maintype() != "text" or part.get_filename():
                continue
            payload = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - e.g. get_filename's ValueError for a NUL in an
            continue  # RFC 2231 charset, which made the DNS-list check fail the message
        if not isinstance(payload, bytes):
            continue
        text, budget = payload[:budget], budget - len(payload)
        for m in _URL_HOST.finditer(text):
            host = m.group(1).decode("ascii").lower().strip(".")
            if host.startswith("[") or "." in host:
                hosts.setdefault(host, None)
                if len(hosts) >= limit:
                    return list(hosts)
        if budget <= 0:
            break
    return list(hosts)


def uri_names(host: str, zone: str, registrable: Callable[[str], str]) -> list[str]:
    """The names to ask a domain list about one URL host: its registrable domain, then the
    host itself when it is longer; an IP literal reversed as in an IP list (SURBL, RFC 5782)."""
    if host.startswith("["):
        name = reversed_name(host.strip("[]"), zone)
        return [name] if name else []
    names = [registrable(host)]
    if host != names[0]:
        names.append(host)
    return [f"{n}.{zone}" for n in names if n]


async def query_uri_lists(resolver: Resolver, hosts: Iterable[str], zones: frozenset[str],
                          registrable: Callable[[str], str]) -> DnsListAnswers:
    """Each zone asked about the URL `hosts`; its answer is the first listed name's code."""
    hosts = list(hosts)

    async def ask(name: str) -> tuple[str | None, str]:
        found = await resolver.lookup(name, "A")
        if found.status == "temperror":
            return None, found.problem
        codes = [r.address for r in found.records if r.address.startswith("127.")]
        if codes and ipaddress.ip_address(codes[0]) in _REFUSED:
            return None, f"the list refused the query ({codes[0]})"
        return (codes[0] if codes else None), ""

    async def one(zone: str) -> tuple[str, str | None, str, str]:
        names = [n for h in hosts for n in uri_names(h, zone, registrable)]
        got = await asyncio.gather(*(ask(n) for n in names))
        problem = ""
        for name, (code, trouble) in zip(names, got, strict=True):
            if code is not None:
                return zone, code, name[: -len(zone) - 1], ""
            problem = problem or trouble
        return zone, None, "", problem

    got = await asyncio.gather(*(one(z) for z in sorted(zones)))
    return DnsListAnswers("", {z: code for z, code, _, _ in got},
                          {z: p for z, _, _, p in got if p},
                          {z: name for z, _, name, _ in got if name})


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
