"""The authentication providers against a real authoritative server (NSD on loopback):
SPF results for MAIL FROM and HELO, DKIM signatures made by dkimpy and by OpenDKIM, DMARC
policies, DNS lists, the reputation zone, MX routing, and the resolver's cache."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dkim
import pytest

from runtime.engine.providers.auth import Authenticator, AuthVerdict, org_domain, strip_ours
from runtime.engine.providers.dkimsign import DkimSigner, DomainKey, load_key
from runtime.engine.providers.dnslist import (
    query_lists,
    query_reputation,
    query_uri_lists,
    url_hosts,
)
from runtime.engine.providers.resolver import Resolver
from runtime.mta.transport import Destination, DnsResolver, MxFailure
from tests.auth.conftest import Dns


def resolver(dns: Dns) -> Resolver:
    return Resolver((("127.0.0.1", dns.nsd.port),), timeout=2.0)


def check(dns: Dns, data: bytes, mail_from: str, helo: str = "helo.auth.test",
          ip: str = "127.0.0.1") -> AuthVerdict:
    r = resolver(dns)
    auth = Authenticator(r)

    async def go() -> AuthVerdict:
        r.bind(asyncio.get_running_loop())
        return await asyncio.to_thread(auth.check, ip, helo, mail_from, data)

    return asyncio.run(go())


def message(from_addr: str, subject: str = "hello") -> bytes:
    return (f"From: {from_addr}\r\nTo: bob@b.example\r\nSubject: {subject}\r\n"
            "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\nMessage-ID: <t1@auth.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello.\r\n").encode()


def dkimpy_sign(data: bytes, pem: bytes, domain: str, selector: str) -> bytes:
    return bytes(dkim.sign(data, selector.encode(), domain.encode(), pem,
                           include_headers=[b"from", b"to", b"subject", b"date"])) + data


@pytest.mark.parametrize(("domain", "expected"), [
    ("pass.auth.test", "Pass"), ("fail.auth.test", "Fail"), ("soft.auth.test", "SoftFail"),
    ("perm.auth.test", "PermError"), ("temp.auth.test", "TempError"),
    ("nothing.auth.test", "None"),
])
def test_spf_mail_from(dns_server: Dns, domain: str, expected: str) -> None:
    v = check(dns_server, message(f"a@{domain}"), f"a@{domain}")
    assert v.spf("mailfrom") == expected
    assert v.spf("") == expected
    assert v.spf("helo") == "Pass"  # helo.auth.test allows 127.0.0.1


def test_spf_helo_stands_in_for_an_empty_reverse_path(dns_server: Dns) -> None:
    v = check(dns_server, message("a@pass.auth.test"), "", helo="fail.auth.test")
    assert v.spf("helo") == "Fail" and v.spf("") == "Fail"
    assert v.spf("pra") == "None"


@pytest.mark.parametrize(("selector", "expected"), [
    ("good", "pass"), ("revoked", "permerror"), ("wrong", "hardfail"), ("absent", "permerror"),
])
def test_dkim_signed_by_dkimpy(dns_server: Dns, selector: str, expected: str) -> None:
    data = dkimpy_sign(message("a@pass.auth.test"), dns_server.good_pem, "pass.auth.test", selector)
    v = check(dns_server, data, "a@pass.auth.test")
    assert v.dkim() == expected, v.dkim_results


def test_dkim_altered_body_fails_and_no_signature_is_none(dns_server: Dns) -> None:
    data = dkimpy_sign(message("a@pass.auth.test"), dns_server.good_pem, "pass.auth.test", "good")
    v = check(dns_server, data.replace(b"Hello.", b"Hellp."), "a@pass.auth.test")
    assert v.dkim() == "hardfail"
    assert check(dns_server, message("a@pass.auth.test"), "a@pass.auth.test").dkim() == "none"


def test_signatures_dkimpy_cannot_read_are_failures_not_errors(dns_server: Dns) -> None:
    """dkimpy raises binascii.Error and IndexError on such input; out of the check they made
    an outsider's message wait for retries."""
    data = dkimpy_sign(message("a@pass.auth.test"), dns_server.good_pem, "pass.auth.test", "good")
    bad_b64 = re.sub(rb"bh=(....).", rb"bh=\1*", data, count=1)
    empty_i = data.replace(b"DKIM-Signature: v=1;", b"DKIM-Signature: v=1; i=;", 1)
    for mangled in (bad_b64, empty_i):
        assert check(dns_server, mangled, "a@pass.auth.test").dkim() in ("hardfail", "permerror")
    indented = b"\t" + data  # a header block that begins with white space
    assert check(dns_server, indented, "a@pass.auth.test").dkim() == "permerror"


def test_dkim_key_lookup_servfail_is_temperror(dns_server: Dns) -> None:
    data = dkimpy_sign(message("a@x.broken.test"), dns_server.good_pem, "x.broken.test", "good")
    assert check(dns_server, data, "a@pass.auth.test").dkim() == "temperror"


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("opendkim-testmsg") is None and
                    not Path("/usr/sbin/opendkim-testmsg").exists(),
                    reason="opendkim-tools not installed")
def test_dkim_signed_by_opendkim(dns_server: Dns, tmp_path: Path) -> None:
    key = tmp_path / "good.pem"
    key.write_bytes(dns_server.good_pem)
    exe = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"
    signed = subprocess.run([exe, "-C", "-d", "pass.auth.test", "-s", "good", "-k", str(key)],
                            input=message("a@pass.auth.test"), capture_output=True, check=True,
                            timeout=30).stdout
    assert signed.lower().startswith(b"dkim-signature:"), signed[:200]
    v = check(dns_server, signed, "a@pass.auth.test")
    assert v.dkim() == "pass", v.dkim_results
    assert v.dkim_results[0].domain == "pass.auth.test"


@pytest.mark.parametrize(("from_domain", "mail_from", "selector", "result", "policy"), [
    ("pass.auth.test", "a@pass.auth.test", None, "Pass", "none"),  # SPF aligned
    ("fail.auth.test", "a@fail.auth.test", None, "Fail", "reject"),  # SPF fails, no DKIM
    ("fail.auth.test", "a@fail.auth.test", "good", "Pass", "reject"),  # DKIM aligned passes
    ("soft.auth.test", "a@soft.auth.test", None, "Fail", "quarantine"),
    ("fail.auth.test", "a@elsewhere.test", None, "Fail", "reject"),  # SPF passes, unaligned
    ("fail.auth.test", "a@pass.auth.test", None, "Pass", "reject"),  # relaxed: same org domain
    ("nothing.auth.test", "a@nothing.auth.test", None, "None", "none"),
])
def test_dmarc(dns_server: Dns, from_domain: str, mail_from: str, selector: str | None,
               result: str, policy: str) -> None:
    data = message(f"a@{from_domain}")
    if selector:
        data = dkimpy_sign(data, dns_server.good_pem, from_domain, selector)
    v = check(dns_server, data, mail_from)
    assert (v.dmarc(), v.dmarc_policy()) == (result, policy), v.dmarc_result


def test_dmarc_of_a_from_the_parser_cannot_read_is_a_permerror(dns_server: Dns) -> None:
    # 5,000 nested comments made the address parser recurse past Python's limit, and the
    # whole check failed; it is the DMARC result for a message with no From domain.
    v = check(dns_server, message("(" * 5000 + "a@fail.auth.test"), "a@fail.auth.test")
    assert v.dmarc_result.result == "permerror"


def test_authentication_results_field(dns_server: Dns) -> None:
    data = dkimpy_sign(message("a@fail.auth.test"), dns_server.good_pem, "fail.auth.test", "good")
    parts = check(dns_server, data, "a@fail.auth.test").header_parts("mx.gw.test")
    text = " ".join(parts)
    assert parts[0] == "mx.gw.test;"
    assert "spf=fail smtp.mailfrom=fail.auth.test" in text
    assert "spf=pass smtp.helo=helo.auth.test" in text
    assert "dkim=pass header.d=fail.auth.test header.s=good" in text
    assert "dmarc=pass header.from=fail.auth.test policy.dmarc=reject" in text
    assert "arc=none" in text


def test_arriving_results_claiming_our_id_are_removed() -> None:
    data = (b"Authentication-Results: MX.gw.test; spf=pass\r\n"
            b"Authentication-Results: (comment) mx.gw.test;\r\n dkim=pass\r\n"
            b"Authentication-Results: other.example; spf=fail\r\n"
            b"Subject: x\r\n\r\nAuthentication-Results: mx.gw.test; in the body\r\n")
    out, removed = strip_ours(data, "mx.gw.test")
    assert removed == 2
    assert out == (b"Authentication-Results: other.example; spf=fail\r\nSubject: x\r\n\r\n"
                   b"Authentication-Results: mx.gw.test; in the body\r\n")


def test_dns_lists_and_reputation(dns_server: Dns) -> None:
    r = resolver(dns_server)

    async def go() -> tuple[Any, Any, Any, Any]:
        return (await query_lists(r, "127.0.0.1", frozenset({"bl.test", "x.broken.test"})),
                await query_lists(r, "127.0.0.9", frozenset({"bl.test"})),
                await query_reputation(r, "127.0.0.1", "rep.test"),
                await query_reputation(r, "127.0.0.9", "rep.test"))

    listed, clean, rep, none = asyncio.run(go())
    assert listed.lookup("bl.test", "127.0.0.1") == "127.0.0.2"
    assert listed.lookup("x.broken.test", "127.0.0.1") is None
    assert "x.broken.test" in listed.problems
    assert clean.lookup("bl.test", "127.0.0.9") is None
    assert rep.score("127.0.0.1") == -7.5 and none.score("127.0.0.9") is None


def test_uri_lists_ask_the_url_hosts(dns_server: Dns) -> None:
    """A domain list (RFC 5782 2.3) is asked about the message's URL hosts, decoded from
    quoted-printable: a subdomain counts by its registrable domain, an IP literal reversed;
    a refusal code (127.255.255.x) is a problem, never a listing."""
    r = resolver(dns_server)
    listed = (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
              b"Fine: https://good.example/ then https://login.bad.ex=\r\nample/x\r\n")
    literal = b"Content-Type: text/html\r\n\r\n<a href='http://[192.0.2.1]/'>x</a>\r\n"
    refused = b"\r\nhttps://www.refused.example/ and nothing else\r\n"
    assert url_hosts(listed, 20) == ["good.example", "login.bad.example"]

    async def go(data: bytes) -> Any:
        return await query_uri_lists(r, url_hosts(data, 20), frozenset({"dbl.test"}),
                                     org_domain)

    got = asyncio.run(go(listed))
    assert got.lookup("dbl.test", "") == "127.0.1.2"
    assert got.listed == {"dbl.test": "bad.example"}
    assert asyncio.run(go(literal)).lookup("dbl.test", "") == "127.0.1.4"
    none = asyncio.run(go(refused))
    assert none.lookup("dbl.test", "") is None
    assert "refused the query" in none.problems["dbl.test"]
    assert url_hosts(b"\r\n" + b" ".join(b"http://h%d.example/" % i for i in range(50)), 5) \
        == [f"h{i}.example" for i in range(5)]


def test_url_hosts_of_parts_the_email_package_cannot_read() -> None:
    # A NUL in an RFC 2231 charset made get_filename raise ValueError out of the check.
    data = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
            b"filename*=utf\x008''x%ff\r\n\r\nhttp://hidden.example/\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\nhttp://shown.example/\r\n--b--\r\n")
    assert url_hosts(data, 20) == ["shown.example"]


def test_mx_routing(dns_server: Dns) -> None:
    mx = DnsResolver(resolver(dns_server), port=2600)

    async def route(domain: str) -> list[Destination] | str:
        try:
            return await mx.mx_async(domain)
        except MxFailure as exc:
            return f"{exc.result.code} {exc.result.text}"

    async def go() -> list[Any]:
        return [await route(d) for d in
                ("mx.test", "nomx.mx.test", "null.mx.test", "gone.mx.test", "x.broken.test")]

    pref, implicit, null, gone, broken = asyncio.run(go())
    assert pref == [Destination("127.0.0.3", 2600), Destination("127.0.0.4", 2600)]
    assert implicit == [Destination("127.0.0.5", 2600)]
    assert isinstance(null, str) and null.startswith("556 5.1.10")
    assert isinstance(gone, str) and gone.startswith("550 5.1.2")
    assert isinstance(broken, str) and broken.startswith("451 4.4.3")


def test_resolver_caches_answers_and_not_failures(dns_server: Dns) -> None:
    r = resolver(dns_server)

    async def go() -> None:
        for _ in range(3):
            await r.lookup("pass.auth.test", "TXT")
            await r.lookup("gone.auth.test", "TXT")
            await r.lookup("x.broken.test", "TXT")

    asyncio.run(go())
    assert r.queries == 2 + 3  # the answer and the NXDOMAIN once each; SERVFAIL every time


def test_our_signature_verifies_with_dkimpy(dns_server: Dns, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(dns_server.good_pem)
    signer = DkimSigner({"pass.auth.test": DomainKey(
        "pass.auth.test", "good", load_key(key, "test"), (b"relaxed", b"simple"),
        (b"from", b"to", b"subject", b"date", b"message-id", b"cc"))})
    signed = signer.sign(message("Alice <a@sub.pass.auth.test>"))
    assert signed is not None and signed.startswith(b"DKIM-Signature:")
    assert signer.sign(message("a@other.test")) is None
    assert check(dns_server, signed, "a@pass.auth.test").dkim() == "pass"
    # A header block dkimpy cannot read leaves unsigned (it raised IndexError out of the stage).
    assert signer.sign(b" x\r\n" + message("a@pass.auth.test")) is None


def test_openssl_signs_the_same_bytes_as_dkimpy(tmp_path: Path, dns_server: Dns) -> None:
    """The RSA step goes to OpenSSL for our keys: the signature must be dkimpy's own."""
    from runtime.engine.providers import dkimsign

    key = tmp_path / "k.pem"
    key.write_bytes(dns_server.good_pem)
    pem = load_key(key, "test")  # registers the key with OpenSSL
    data = message("a@pass.auth.test")
    ours = dkim.sign(data, b"good", b"pass.auth.test", pem, include_headers=[b"from"])
    dkimsign._OPENSSL.clear()
    theirs = dkim.sign(data, b"good", b"pass.auth.test", pem, include_headers=[b"from"])
    load_key(key, "test")
    # Same header except t= (the signing time, in seconds) may tick between the two.
    strip = re.compile(rb"t=\d+;")
    assert strip.sub(b"", ours) == strip.sub(b"", theirs) or ours == theirs


def test_arc_chain_sealed_by_dkimpy_validates(dns_server: Dns) -> None:
    """A forwarder's ARC set (dkimpy's arc_sign over its own Authentication-Results)."""
    data = (b"Authentication-Results: fwd.pass.auth.test; spf=pass smtp.mailfrom=a@pass.auth.test\r\n"
            + message("a@pass.auth.test"))
    sealed = b"".join(dkim.arc_sign(data, b"good", b"pass.auth.test", dns_server.good_pem,
                                    b"fwd.pass.auth.test")) + data
    assert check(dns_server, sealed, "a@pass.auth.test").arc_result == "pass"
    broken = sealed.replace(b"Hello.", b"Hellp.")
    assert check(dns_server, broken, "a@pass.auth.test").arc_result == "fail"
