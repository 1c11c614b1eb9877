"""Email authentication, DKIM signing and MX delivery through `filterlang serve` (issue 16),
against a real authoritative DNS server (NSD on loopback) serving the test's zones:

- inbound mail is checked (SPF, DKIM, DMARC) and stamped with one Authentication-Results under
  our authserv-id, a forged one claiming our id removed; a message failing DMARC under the
  From domain's p=reject is held by examples/filters/dmarc.filter as written;
- a message DKIM-signed by OpenDKIM's opendkim-testmsg verifies;
- mail our users relay is DKIM-signed with a key made by `filterlang dkim keygen` (its printed
  record published in the zone) and verifies with dkimpy against that zone; skip-dkim-signing()
  leaves a message unsigned;
- with `mx = true`, delivery follows the MX records: the preferred host first, the next one
  when it does not answer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.auth.zones import rsa_key, txt
from tests.e2e.harness import Gateway, Sink, filterlang, message, running, send
from tests.e2e.nsd import NSD, Nsd

pytestmark = pytest.mark.skipif(not Path(NSD).exists() and shutil.which("nsd") is None,
                                reason="nsd is not installed (.ci/run installs it)")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"
OPENDKIM = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"


class Zones:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Our signing key, made as an administrator makes it; its record goes in the zone.
        self.key = root / "gw.dkim.pem"
        out = filterlang("dkim", "keygen", "--domain", "pass.auth.test", "--selector", "gw",
                         "--bits", "1024", "--out", str(self.key)).stdout.decode().strip()
        assert out.startswith("gw._domainkey.pass.auth.test. IN TXT"), out
        self.partner_pem, partner = rsa_key()
        self.nsd = Nsd(root / "nsd", {
            "auth.test": [
                f"pass IN TXT {txt('v=spf1 ip4:127.0.0.1 -all')}",
                f"_dmarc.pass IN TXT {txt('v=DMARC1; p=none')}",
                f"partner._domainkey.pass IN TXT {txt(partner)}",
                out,
                f"fail IN TXT {txt('v=spf1 ip4:192.0.2.1 -all')}",
                f"_dmarc.fail IN TXT {txt('v=DMARC1; p=reject')}",
            ],
            # Two MX hosts: the preferred one (127.0.0.3) has nobody listening.
            "mx.test": ["@ IN MX 10 first", "@ IN MX 20 second", "first IN A 127.0.0.3",
                        "second IN A 127.0.0.1"],
        })

    def txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's dnsfunc, asking the test's NSD directly (dkimverify asks the system's)."""
        qname = name.decode() if isinstance(name, bytes) else name
        reply = dns.query.udp(dns.message.make_query(qname, "TXT"), "127.0.0.1", timeout=5,
                              port=self.nsd.port)
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zones]:
    z = Zones(tmp_path_factory.mktemp("authzones"))
    with z.nsd:
        yield z


def auth_config(z: Zones, extra: str = "") -> str:
    return f"""
[dns]
nameservers = ["{z.nsd.address}"]
timeout = 2

[authentication]
authserv_id = "gw.test"

[quarantines.DMARC]

[dkim."pass.auth.test"]
selector = "gw"
key = "{z.key}"
{extra}"""


def inbound(sender: str, subject: str, *, headers: str = "") -> bytes:
    return (f"{headers}From: {sender}\r\nTo: bob@b.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n"
            "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\n\r\nHello.\r\n").encode()


def test_inbound_checks_stamp_and_the_dmarc_example_filter(zones: Zones, tmp_path: Path) -> None:
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, extra=auth_config(zones),
                 filters={"dmarc.filter": (EXAMPLES / "dmarc.filter").read_text()})
    with running(sink, gw):
        # Fails SPF, no DKIM: DMARC fails under p=reject; the example filter holds it.
        held = inbound("ceo@fail.auth.test", "wire transfer")
        send(gw.port, "ceo@fail.auth.test", ["bob@b.example"], held, source="127.0.0.1")
        # Passes SPF (aligned): delivered, stamped once, the forged claim of our id gone.
        forged = "Authentication-Results: gw.test; dmarc=pass header.from=fail.auth.test\r\n"
        good = inbound("alice@pass.auth.test", "statement", headers=forged)
        send(gw.port, "alice@pass.auth.test", ["bob@b.example"], good, source="127.0.0.1")
        # Signed by OpenDKIM with the partner's key.
        if Path(OPENDKIM).exists():
            key = tmp_path / "partner.pem"
            key.write_bytes(zones.partner_pem)
            signed = subprocess.run(
                [OPENDKIM, "-C", "-d", "pass.auth.test", "-s", "partner", "-k", str(key)],
                input=inbound("carol@pass.auth.test", "signed by opendkim"),
                capture_output=True, check=True, timeout=30).stdout
            send(gw.port, "", ["bob@b.example"], signed, source="127.0.0.1")

        rec = gw.wait_event("<wire-transfer@test>", "quarantine")
        assert rec["quarantine"] == "DMARC"
        got, _ = gw.delivered(sink, "bob@b.example", "<statement@test>")
        fields = [v for k, v in _fields(got.data) if k.lower() == "authentication-results"]
        assert len(fields) == 1, fields
        ar = " ".join(fields[0].split())
        assert ar.startswith("gw.test;"), ar
        assert "spf=pass smtp.mailfrom=pass.auth.test" in ar
        assert "dmarc=pass header.from=pass.auth.test policy.dmarc=none" in ar
        assert "dkim=" not in ar  # no signature: nothing to report
        if Path(OPENDKIM).exists():
            got, _ = gw.delivered(sink, "bob@b.example", "<signed-by-opendkim@test>")
            ar = " ".join(got.header("Authentication-Results").split())  # type: ignore[union-attr]
            assert "dkim=pass header.d=pass.auth.test header.s=partner" in ar, ar
            assert "dmarc=pass" in ar, ar


def _fields(data: bytes) -> list[tuple[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out: list[tuple[str, str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            k, _, v = line.partition(":")
            out.append((k, v.strip()))
    return out


def test_a_signature_dkimpy_cannot_read_is_a_failure_not_a_hold(zones: Zones,
                                                                tmp_path: Path) -> None:
    """dkimpy raised binascii.Error on a bh= that is not base64, out of the check: the
    outsider's message went to hold. It is delivered, with the signature's failure stamped."""
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, extra=auth_config(zones))
    with running(sink, gw):
        signed = dkim.sign(inbound("carol@pass.auth.test", "mangled"), b"partner",
                           b"pass.auth.test", zones.partner_pem,
                           include_headers=[b"from", b"subject"], linesep=b"\r\n")
        # One character of bh= turned to "*": dkimpy's check lets it by, its decoding raised.
        mangled = re.sub(rb"bh=(....).", rb"bh=\1*", signed, count=1) + inbound(
            "carol@pass.auth.test", "mangled")
        send(gw.port, "carol@pass.auth.test", ["bob@b.example"], mangled, source="127.0.0.1")
        got, _ = gw.delivered(sink, "bob@b.example", "<mangled@test>")
        ar = " ".join(got.header("Authentication-Results").split())  # type: ignore[union-attr]
        assert "dkim=fail" in ar or "dkim=permerror" in ar, ar


NOSIGN = """nosign:
    if subject == '^no signature' {
        skip-dkim-signing();
    }
"""


def test_relayed_mail_is_dkim_signed_and_verifies(zones: Zones, tmp_path: Path) -> None:
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, extra=auth_config(zones),
                 filters={"nosign.filter": NOSIGN})
    with running(sink, gw):
        mid = gw.send("alice@pass.auth.test", "x@partner.example",
                      message("alice@pass.auth.test", "x@partner.example", "quarterly report"))
        mid2 = gw.send("alice@pass.auth.test", "x@partner.example",
                       message("alice@pass.auth.test", "x@partner.example", "no signature please"))
        got, _ = gw.delivered(sink, "x@partner.example", mid)
        assert got.data.startswith(b"DKIM-Signature:"), got.data[:300]
        assert b"d=pass.auth.test" in got.data.split(b"\r\n\r\n")[0]
        assert dkim.verify(got.data, dnsfunc=zones.txt)
        # Our own relayed mail is not stamped with inbound results.
        assert got.header("Authentication-Results") is None
        unsigned, _ = gw.delivered(sink, "x@partner.example", mid2)
        assert unsigned.header("DKIM-Signature") is None


def test_mx_delivery_follows_preference(zones: Zones, tmp_path: Path) -> None:
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, local_domains=("mx.test",),
                 extra=f'\n[dns]\nnameservers = ["{zones.nsd.address}"]\ntimeout = 2\n')
    text = gw.config.read_text().replace(f'relay = "127.0.0.1:{sink.port}"',
                                         f"mx = true\nmx_port = {sink.port}")
    gw.config.write_text(text)
    with running(sink, gw):
        mid = gw.send("alice@pass.auth.test", "bob@mx.test",
                      message("alice@pass.auth.test", "bob@mx.test", "by mx"))
        _, rec = gw.delivered(sink, "bob@mx.test", mid)
        assert rec["dest"] == f"127.0.0.1:{sink.port}"  # the second MX: the first refused
