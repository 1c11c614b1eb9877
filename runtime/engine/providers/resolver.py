"""The gateway's one DNS resolver: dnspython's asyncio resolver, with a timeout per look-up
and a cache honouring TTLs (negative answers too), shared by SPF, DKIM keys, DMARC records,
DNS lists, reputation and MX delivery.

Look-ups are asynchronous and run in the worker's event loop. The libraries that check
SPF, DKIM and DMARC (pyspf, dkimpy, authheaders) ask for DNS synchronously; they run in a
thread and `lookup_sync` hands each query to the loop, so every query goes through the one
cache and the one set of name servers.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from attrs import frozen

Status = Literal["ok", "nxdomain", "nodata", "temperror"]

# Negative answers (NXDOMAIN, no data) are kept this long when the SOA gives no shorter time
# (RFC 2308 caps it at the SOA minimum; an hour is the usual ceiling).
NEGATIVE_TTL = 300


@frozen
class Lookup:
    """One answer: its status and its records (dnspython rdata objects, in answer order)."""

    name: str
    rdtype: str
    status: Status
    records: tuple[Any, ...] = ()
    problem: str = ""  # for temperror: what failed (a timeout, SERVFAIL from every server)

    @property
    def texts(self) -> list[str]:
        """TXT records as text, each record's strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.records
                if hasattr(r, "strings")]


class Resolver:
    """Asynchronous look-ups through configured name servers (or the system's), cached."""

    def __init__(self, nameservers: tuple[tuple[str, int], ...] = (), timeout: float = 5.0,
                 cache_size: int = 10000) -> None:
        self._r = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._r.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
        self._r.timeout = timeout  # one server's try
        self._r.lifetime = timeout  # the whole look-up, retries and servers included
        self.timeout = timeout
        self._cache: collections.OrderedDict[tuple[str, str], tuple[float, Lookup]] = (
            collections.OrderedDict())
        self._size = cache_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queries = 0  # sent to a server (the cache's misses), for tests and the bench

    def _cached(self, key: tuple[str, str]) -> Lookup | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return hit[1]

    def _keep(self, key: tuple[str, str], ttl: float, found: Lookup) -> None:
        if self._size <= 0 or found.status == "temperror":  # a failure is asked again
            return
        self._cache[key] = (time.monotonic() + ttl, found)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def lookup(self, name: str, rdtype: str) -> Lookup:
        """The answer for `name`/`rdtype`; never raises for a DNS problem (see `Lookup.status`)."""
        name = name.rstrip(".").lower()
        key = (name, rdtype)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        hit = self._cached(key)
        if hit is not None:
            return hit
        self.queries += 1
        try:
            answer = await self._r.resolve(name + ".", rdtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            found = Lookup(name, rdtype, "nxdomain")
            self._keep(key, _negative_ttl(exc), found)
            return found
        except dns.resolver.NoAnswer as exc:
            found = Lookup(name, rdtype, "nodata")
            self._keep(key, _negative_ttl(exc), found)
            return found
        except dns.resolver.NoNameservers as exc:  # SERVFAIL/REFUSED from every server
            return Lookup(name, rdtype, "temperror", problem=f"no server answered: {exc}")
        except dns.exception.Timeout:
            return Lookup(name, rdtype, "temperror", problem=f"timed out after {self.timeout:g} s")
        except dns.exception.DNSException as exc:  # a malformed name, an answer we cannot read
            return Lookup(name, rdtype, "temperror", problem=str(exc))
        found = Lookup(name, rdtype, "ok", tuple(answer))
        self._keep(key, answer.rrset.ttl if answer.rrset is not None else NEGATIVE_TTL, found)
        return found

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop `lookup_sync` hands queries to (the worker's)."""
        self._loop = loop

    def lookup_sync(self, name: str, rdtype: str) -> Lookup:
        """`lookup` from a thread other than the loop's (a library that asks synchronously)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("Resolver.lookup_sync before the resolver was bound to a loop")
        future = asyncio.run_coroutine_threadsafe(self.lookup(name, rdtype), loop)
        try:
            return future.result(self.timeout * 2 + 1)
        except TimeoutError:
            future.cancel()
            return Lookup(name, rdtype, "temperror", problem="timed out")


def _negative_ttl(exc: dns.exception.DNSException) -> float:
    """RFC 2308 5: the SOA's minimum (or its TTL, if lower) from the negative answer."""
    try:
        responses = exc.kwargs.get("responses") or {}  # NXDOMAIN
        response = exc.kwargs.get("response") or next(iter(responses.values()), None)  # NoAnswer
        for rrset in response.authority if response is not None else ():
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum, NEGATIVE_TTL))
    except (AttributeError, StopIteration, IndexError, TypeError):
        pass
    return NEGATIVE_TTL


_shared: dict[tuple[tuple[tuple[str, int], ...], float, int], Resolver] = {}


def shared_resolver(nameservers: tuple[tuple[str, int], ...] = (), timeout: float = 5.0,
                    cache_size: int = 10000) -> Resolver:
    """The process's one resolver for these settings: the checks, the DNS lists and MX
    delivery of a worker share its cache."""
    key = (nameservers, timeout, cache_size)
    found = _shared.get(key)
    if found is None:
        found = _shared[key] = Resolver(nameservers, timeout, cache_size)
    return found
