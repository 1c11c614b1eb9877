"""Verification (with path validation and CRLs) gives the same answer wherever it is called:
plain code, a coroutine running in an event loop (the gateway's queue process), a thread
beside a running loop, and with revocation fetching on (pyhanko's fetchers need a loop).

Issue 12: path validation started a loop of its own with asyncio's run(), which raises inside
a running loop; the queue process then put every small signed message in `hold`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from pki import NOW, Issued, Pki, crl, make_pki

from smime import TrustStore, sign, verify

MSG = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
       b"Content-Type: text/plain\r\n\r\nPay Bob 10 EUR.\r\n")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def outcome(pki: Pki, user: Issued, revoked: bool, fetch: str = "off") -> tuple[bool, list[str]]:
    signed = sign(MSG, user.key, user.asn1, [pki.inter.asn1], now=NOW)
    # The CRLs of both CAs: with any CRL held, every certificate of the path needs one.
    crls = [crl(pki.root, [], NOW), crl(pki.inter, [user] if revoked else [], NOW)]
    res = verify(signed, trust=TrustStore((pki.root.asn1,)), now=NOW, crls=crls,
                 fetch_revocation=fetch)
    return res.verified, [code for code, _ in res.reasons]


def in_loop(call: Callable[[], tuple[bool, list[str]]]) -> tuple[bool, list[str]]:
    async def main() -> tuple[bool, list[str]]:
        return call()  # synchronously, inside the running loop, as the queue's pipeline does

    return asyncio.run(main())


def in_thread_beside_loop(call: Callable[[], tuple[bool, list[str]]]) -> tuple[bool, list[str]]:
    async def main() -> tuple[bool, list[str]]:
        return await asyncio.to_thread(call)

    return asyncio.run(main())


def in_plain_thread(call: Callable[[], tuple[bool, list[str]]]) -> tuple[bool, list[str]]:
    got: list[tuple[bool, list[str]]] = []
    t = threading.Thread(target=lambda: got.append(call()))
    t.start()
    t.join(60)
    return got[0]


@pytest.mark.parametrize("where", [in_loop, in_thread_beside_loop, in_plain_thread,
                                   lambda call: call()])
@pytest.mark.parametrize("fetch", ["off", "soft"])
def test_verified_and_revoked_alike_in_every_context(
    pki: Pki, where: Callable[[Callable[[], tuple[bool, list[str]]]], tuple[bool, list[str]]],
    fetch: str,
) -> None:
    alice, mallory = pki.user(), pki.user("mallory@example.com")
    assert where(lambda: outcome(pki, alice, revoked=False, fetch=fetch)) == (True, [])
    verified, codes = where(lambda: outcome(pki, mallory, revoked=True, fetch=fetch))
    assert not verified and "revoked" in codes
