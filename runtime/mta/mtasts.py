"""MTA-STS (RFC 8461): a recipient domain's published TLS policy for mail to its MX hosts.

`_mta-sts.DOMAIN` TXT ("v=STSv1; id=...") says that a policy exists and which version;
the policy itself is fetched over HTTPS from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
(the certificate verified for that name, no redirects, a short timeout, at most 64 KiB) and
kept for its max_age. It is fetched again only when the TXT record shows a new id (or the
cached one has expired); while a fetch fails, a cached policy that has not expired still
applies (RFC 8461 5.1). The cache is in memory, per queue process: a restart fetches again.

The HTTP client is aiohttp (a maintained client, already installed for the certificate
validator), given a resolver that asks the gateway's own DNS resolver, so that the policy
host is found through [dns] like the MX hosts are.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen

from runtime.engine.providers.resolver import Resolver

MODES = ("enforce", "testing", "none")
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: policies are small; more is refused
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: a year
# A fetch that failed is not tried again for this long (per domain and record id), so a domain
# whose policy host is down does not cost every message to it an HTTPS timeout.
RETRY_FAILED_AFTER = 300.0
_ID = re.compile(r"[A-Za-z0-9]{1,32}")


@frozen
class StsPolicy:
    domain: str
    id: str
    mode: str
    mx: tuple[str, ...]  # as published: "mx.example.com" or "*.example.com"
    max_age: int

    @property
    def match(self) -> tuple[str, ...]:
        """The MX patterns as names a certificate must carry (TlsPolicy.match): "*.x" covers
        one label below x, as RFC 8461 4.1 has it."""
        return tuple(p.lower().rstrip(".") for p in self.mx)


class StsError(Exception):
    """No usable policy from the policy host (the reason, for the log and tracking)."""


def record_id(texts: list[str]) -> str | None:
    """The id of the one "v=STSv1" TXT record (RFC 8461 3.1); None when there is none, more
    than one, or it is malformed (then the domain is treated as publishing no policy)."""
    records = [t for t in texts if t.strip().startswith("v=STSv1")]
    if len(records) != 1:
        return None
    fields = dict(f.strip().partition("=")[::2] for f in records[0].split(";") if f.strip())
    found = fields.get("id", "").strip()
    return found if _ID.fullmatch(found) else None


def parse_policy(domain: str, policy_id: str, text: str) -> StsPolicy:
    """RFC 8461 3.2: "key: value" lines (LF or CRLF); version STSv1, mode, max_age, and mx
    (one or more, except in mode none) required; other keys ignored."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise StsError(f"policy line {line[:60]!r} is not 'key: value'")
        fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise StsError(f"policy version {fields.get('version')!r} is not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in MODES or len(fields["mode"]) != 1:
        raise StsError(f"policy mode {mode!r} is not one of {', '.join(MODES)}")
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit() or len(age) > 10:
        raise StsError(f"policy max_age {age!r} is not a number of seconds")
    mx = tuple(fields.get("mx", ()))
    if mode != "none" and not mx:
        raise StsError("policy names no mx")
    for pattern in mx:
        bare = pattern.removeprefix("*.")
        if not bare or "*" in bare or " " in bare:
            raise StsError(f"policy mx {pattern!r} is not a host name or *.domain")
    return StsPolicy(domain, policy_id, mode, mx, min(int(age), MAX_AGE_LIMIT))


class _DnsForHttp:
    """aiohttp's resolver interface over the gateway's resolver (A, then AAAA)."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rdtype, fam in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
            found = await self.resolver.lookup(host, rdtype)
            out += [{"hostname": host, "host": r.address, "port": port, "family": fam,
                     "proto": 0, "flags": socket.AI_NUMERICHOST} for r in found.records]
        if not out:
            raise OSError(f"no address for {host}")
        return out

    async def close(self) -> None:
        return None


class MtaSts:
    """Policies per domain, looked up and cached as RFC 8461 5 describes."""

    def __init__(self, resolver: Resolver, *, port: int = 443, ca_file: Path | None = None,
                 timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.resolver = resolver
        self.port = port
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock
        self._cache: dict[str, tuple[float, StsPolicy]] = {}  # domain -> (expires, policy)
        self._failed: dict[tuple[str, str], float] = {}  # (domain, id) -> when to try again
        self._fetching: dict[tuple[str, str], asyncio.Future[StsPolicy]] = {}
        self.fetches = 0  # HTTPS requests made, for tests
        # domain -> why the fetch of its current record's policy failed (until one works)
        self.problems: dict[str, str] = {}

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy that applies to `domain` now, or None."""
        domain = domain.lower().rstrip(".")
        now = self.clock()
        cached = self._cache.get(domain)
        if cached is not None and cached[0] <= now:
            del self._cache[domain]
            cached = None
        found = await self.resolver.lookup(f"_mta-sts.{domain}", "TXT")
        current = record_id(found.texts) if found.status == "ok" else None
        if current is None or (cached is not None and cached[1].id == current):
            # No record (or DNS failing): a cached policy that has not expired still holds.
            self.problems.pop(domain, None)
            return cached[1] if cached is not None else None
        if self._failed.get((domain, current), 0.0) > now:
            return cached[1] if cached is not None else None
        try:
            fresh = await self._fetch_once(domain, current)
        except StsError as exc:
            self.problems[domain] = str(exc)
            self._failed[(domain, current)] = now + RETRY_FAILED_AFTER
            return cached[1] if cached is not None else None
        self._cache[domain] = (now + fresh.max_age, fresh)
        self.problems.pop(domain, None)
        return fresh

    async def _fetch_once(self, domain: str, policy_id: str) -> StsPolicy:
        """One fetch per domain and id at a time; messages that ask meanwhile wait for it."""
        key = (domain, policy_id)
        running = self._fetching.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[StsPolicy] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            result = await self._fetch(domain, policy_id)
        except StsError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: no "never retrieved" warning without waiters
            raise
        finally:
            del self._fetching[key]
        future.set_result(result)
        return result

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()  # chain and host name checked (RFC 8461 3.3)
        if self.ca_file is not None:
            ctx.load_verify_locations(**({"capath": str(self.ca_file)} if self.ca_file.is_dir()
                                         else {"cafile": str(self.ca_file)}))
        return ctx

    async def _fetch(self, domain: str, policy_id: str) -> StsPolicy:
        import aiohttp  # only where a policy is fetched: a gateway without MX delivery never needs it

        self.fetches += 1
        host = f"mta-sts.{domain}"
        url = f"https://{host}{'' if self.port == 443 else f':{self.port}'}/.well-known/mta-sts.txt"
        connector = aiohttp.TCPConnector(resolver=_DnsForHttp(self.resolver),  # type: ignore[arg-type]
                                         ssl=self._context(), use_dns_cache=False)
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
                    session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:  # RFC 8461 3.3: redirects are not followed
                    raise StsError(f"{url} answered HTTP {resp.status}")
                if resp.content_type != "text/plain":
                    raise StsError(f"{url} sent {resp.content_type!r}, not text/plain")
                body = b""
                while len(body) <= MAX_POLICY_BYTES:  # one byte more tells a policy too large
                    chunk = await resp.content.read(MAX_POLICY_BYTES + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StsError(f"cannot fetch {url}: {exc or type(exc).__name__}") from None
        if len(body) > MAX_POLICY_BYTES:
            raise StsError(f"{url} is larger than {MAX_POLICY_BYTES} bytes")
        return parse_policy(domain, policy_id, body.decode("utf-8", "replace"))
