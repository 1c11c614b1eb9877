"""MTA-STS (RFC 8461) without the network: the TXT record, the policy text, and the cache
(fetched once per id, kept for max_age, a cached policy outliving a failed fetch). The fetch
over HTTPS from a real server is proven in tests/e2e/test_routes.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.engine.providers.resolver import Lookup
from runtime.mta.mtasts import MtaSts, StsError, StsPolicy, parse_policy, record_id


class _Txt:
    def __init__(self, text: str) -> None:
        self.strings = [text.encode()]


class FakeDns:
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}

    async def lookup(self, name: str, rdtype: str) -> Lookup:
        texts = self.txt.get(name)
        if texts is None:
            return Lookup(name, rdtype, "nxdomain")
        return Lookup(name, rdtype, "ok", tuple(_Txt(t) for t in texts))


def test_record_id() -> None:
    assert record_id(["v=STSv1; id=20260101T000000;"]) == "20260101T000000"
    assert record_id(["v=spf1 -all", "v=STSv1;id=abc"]) == "abc"
    assert record_id(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # two: none (RFC 8461 3.1)
    assert record_id(["v=STSv1; id=not-alnum"]) is None
    assert record_id([]) is None


POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"


def test_parse_policy() -> None:
    p = parse_policy("example.com", "1", POLICY)
    assert (p.mode, p.mx, p.max_age) == ("enforce", ("mx1.example.com", "*.example.net"), 86400)
    assert parse_policy("x", "1", "version: STSv1\nmode: none\nmax_age: 9999999999\n").max_age == 31557600
    for bad, why in [("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version"),
                     ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode"),
                     ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
                     ("version: STSv1\nmode: enforce\nmx: a\nmax_age: soon\n", "max_age"),
                     ("version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n", "mx"),
                     ("<html>\n", "key: value")]:
        with pytest.raises(StsError, match=why):
            parse_policy("x", "1", bad)


def test_cache_follows_the_record_id_and_max_age() -> None:
    dns = FakeDns()
    now = [1000.0]
    sts = MtaSts(dns, clock=lambda: now[0])  # type: ignore[arg-type]
    served: list[Any] = [parse_policy("example.com", "1", POLICY)]

    async def fetch(domain: str, policy_id: str) -> StsPolicy:
        sts.fetches += 1
        got = served[0]
        if isinstance(got, Exception):
            raise got
        assert isinstance(got, StsPolicy)
        return StsPolicy(domain, policy_id, got.mode, got.mx, got.max_age)

    sts._fetch = fetch  # type: ignore[method-assign]

    async def scenario() -> None:
        assert await sts.policy("example.com") is None  # no record: no policy, no fetch
        dns.txt["_mta-sts.example.com"] = ["v=STSv1; id=1"]
        first = await sts.policy("example.com")
        assert first is not None and first.mode == "enforce" and sts.fetches == 1
        assert await sts.policy("Example.COM.") == first and sts.fetches == 1  # cached
        # A new id: fetched again; the host failing keeps the cached policy (RFC 8461 5.1),
        # and is not asked again at once.
        dns.txt["_mta-sts.example.com"] = ["v=STSv1; id=2"]
        served[0] = StsError("cannot fetch")
        assert await sts.policy("example.com") == first and sts.fetches == 2
        assert await sts.policy("example.com") == first and sts.fetches == 2
        assert "cannot fetch" in sts.problems["example.com"]
        # The record gone: the cached policy holds until max_age, then nothing.
        del dns.txt["_mta-sts.example.com"]
        assert await sts.policy("example.com") == first and "example.com" not in sts.problems
        now[0] += 86399
        assert await sts.policy("example.com") == first
        now[0] += 2
        assert await sts.policy("example.com") is None

    asyncio.run(scenario())
