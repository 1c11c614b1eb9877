"""Transport TLS both ways and the gateway's own name (issue 17 items 1, 2 and 6), through
`filterlang serve` with real peers on loopback: a throwaway Postfix with its own test
certificates plays the partner MTA, an aiosmtpd sink the next hop without STARTTLS.

Certificates are made here with openssl (a test CA, an MX certificate for mx.partner.test that
Postfix serves and presents as its client certificate, and two gateway certificates), never
fetched from anywhere.
"""

from __future__ import annotations

import shutil
import smtplib
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    CA,
    Gateway,
    Postfix,
    Received,
    Sink,
    dialogue,
    message,
    replies_to,
    running,
    send,
    wait_until,
)

ALICE = "alice@b.example"
HOSTNAME = "gw.example.test"


class Pki:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = CA(folder, "Transport Test CA")
        self.mx = self.ca.tls_identity(folder, "mx", "mx.partner.test", ["mx.partner.test"])
        self.gw = self.ca.tls_identity(folder, "gw", HOSTNAME, [HOSTNAME])
        self.gw2 = self.ca.tls_identity(folder, "gw2", "renewed." + HOSTNAME, ["renewed." + HOSTNAME])


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    # Readable by the postfix user's processes too (pytest's tmp folders are 0700).
    folder = Path(tempfile.mkdtemp(prefix="fl-tls-pki-"))
    folder.chmod(0o755)
    yield Pki(folder)
    shutil.rmtree(folder, ignore_errors=True)


def needs_postfix() -> None:
    why = Postfix.available()
    if why:
        pytest.skip(why)


ROUTE_PLAIN = """
to_plain:
  if rcpt-to == '@plain\\\\.test$' {{
      alt-mailhost('127.0.0.1:{port}');
  }}
"""


@pytest.mark.interop
@pytest.mark.timeout(180)
def test_outbound_policies_against_postfix(tmp_path: Path, pki: Pki, sink: Sink) -> None:
    """verify against the right name delivers through Postfix over TLS; against the wrong name,
    or a CA not trusted, the message is deferred with the reason in tracking and, once it
    expires, in the DSN; encrypt towards a next hop without STARTTLS is deferred, never sent in
    the clear. The gateway greets Postfix with its configured host name and signs its DSN as
    MAILER-DAEMON@ that name."""
    needs_postfix()
    mx_cert, mx_key = pki.mx
    partner = Postfix(main=f"""
smtpd_tls_cert_file = {mx_cert}
smtpd_tls_key_file = {mx_key}
smtpd_tls_security_level = may
relayhost = [127.0.0.1]:{sink.port}
""")
    plain = Sink()  # aiosmtpd: no STARTTLS offered
    gw = Gateway(tmp_path / "gw", next_hop=partner.port, lifetime=5,
                 filters={"route.filter": ROUTE_PLAIN.format(port=plain.port)},
                 top=f'hostname = "{HOSTNAME}"\npostmaster = "hostmaster@b.example"',
                 extra=f"""
[tls.outbound]
level = "may"
min_version = "TLSv1.2"

[tls.outbound.domains."right.test"]
level = "verify"
match = ["mx.partner.test"]
ca_file = "{pki.ca.cert}"

[tls.outbound.domains."wrong.test"]
level = "verify"
match = ["other.partner.test"]
ca_file = "{pki.ca.cert}"

[tls.outbound.domains."untrusted.test"]
level = "secure"
match = [".partner.test"]

[tls.outbound.domains."plain.test"]
level = "encrypt"
""")
    with running(partner, plain, gw):
        right = gw.send(ALICE, "bob@right.test", message(ALICE, "bob@right.test", "right name"))
        wrong = gw.send(ALICE, "bob@wrong.test", message(ALICE, "bob@wrong.test", "wrong name"))
        untrusted = gw.send(ALICE, "bob@untrusted.test",
                            message(ALICE, "bob@untrusted.test", "unknown CA"))
        clear = gw.send(ALICE, "bob@plain.test", message(ALICE, "bob@plain.test", "no STARTTLS"))

        got, _ = gw.delivered(sink, "bob@right.test", right)
        # Postfix's trace line: our EHLO name, and TLS on the gateway -> Postfix hop.
        received = got.header("Received") or ""
        assert f"from {HOSTNAME}" in received and "ESMTPS" in received, received
        partner.wait_log("Postfix to log the TLS session", r"TLS connection established from")

        def reply(mid: str, rcpt: str) -> str:
            return str(gw.wait_event(mid, "deferred", rcpt)["reply"])

        assert reply(wrong, "bob@wrong.test").startswith("451 4.7.5 TLS policy 'verify' for "
                                                         "wrong.test"), gw.explain()
        assert "mx.partner.test do not match other.partner.test" in reply(wrong, "bob@wrong.test")
        untrusted_reply = reply(untrusted, "bob@untrusted.test")
        assert "4.7.5" in untrusted_reply and "not verified" in untrusted_reply, untrusted_reply
        assert "unable to get local issuer certificate" in untrusted_reply, untrusted_reply
        clear_reply = reply(clear, "bob@plain.test")
        assert clear_reply.startswith("451 4.7.4 TLS policy 'encrypt' for plain.test"), clear_reply
        assert "does not offer STARTTLS" in clear_reply
        assert not plain.messages and not sink.to("bob@wrong.test")

        # Expired: the DSN (through Postfix) carries the policy's reason, from our own name.
        def dsn_for(rcpt: str) -> Received | None:
            found = [d for d in sink.dsns(ALICE) if f"rfc822; {rcpt}".encode() in d.data]
            return found[0] if found else None

        dsn = wait_until("the DSN for bob@wrong.test", lambda: dsn_for("bob@wrong.test"),
                         explain=gw.explain)
        assert b"4.7.5 TLS policy 'verify' for wrong.test" in dsn.data
        assert dsn.header("From") == f"MAILER-DAEMON@{HOSTNAME}"
        assert b"Reporting-MTA: dns; " + HOSTNAME.encode() in dsn.data
        assert b"<hostmaster@b.example>" in dsn.data
    plain.stop()


STAMP = """
stamp:
  if true {
      insert-header('X-TLS-Client', '[$TLSClientSubject]');
  }
"""


@pytest.mark.interop
@pytest.mark.timeout(180)
def test_require_tls_listener_with_postfix_as_partner(tmp_path: Path, pki: Pki, sink: Sink) -> None:
    """Postfix with smtp_tls_security_level = encrypt delivers to a require_tls listener; its
    client certificate verifies against the listener's tls_client_ca, and the subject picks
    the partner's sender group (which may relay) and reaches the filters. The same Postfix
    without TLS (a transport with smtp_tls_security_level = none) is refused 530 5.7.0."""
    needs_postfix()
    mx_cert, mx_key = pki.mx
    gw_cert, gw_key = pki.gw
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, local_domains=["tls.test", "plain.test"],
                 filters={"stamp.filter": STAMP},
                 top=f'hostname = "{HOSTNAME}"',
                 listener=f'tls_cert = "{gw_cert}"\ntls_key = "{gw_key}"\nrequire_tls = true\n'
                          f'tls_client_ca = "{pki.ca.cert}"',
                 extra="""
[sender_groups.partner]
tls_subjects = ["CN=mx.partner.test,*"]
policy = "partner"

[policies.partner]
action = "RELAY"
""")
    partner = Postfix(main=f"""
smtp_tls_security_level = encrypt
smtp_tls_cert_file = {mx_cert}
smtp_tls_key_file = {mx_key}
transport_maps = inline:{{tls.test=smtp:[127.0.0.1]:{gw.port}, elsewhere.test=smtp:[127.0.0.1]:{gw.port}, plain.test=plain:[127.0.0.1]:{gw.port}}}
""", master="plain unix - - n - - smtp\n  -o smtp_tls_security_level=none")
    with running(gw, partner):
        # Straight to the listener without STARTTLS: refused before MAIL.
        banner = replies_to(gw.port, "x@partner.test", ["bob@tls.test"], b"Subject: x\r\n\r\nx")
        assert banner[0].startswith("530 5.7.0"), banner
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
            code, text = s.ehlo("client.test")
            assert s.has_extn("starttls") and HOSTNAME in text.decode(), text

        for rcpt in ("bob@tls.test", "carol@elsewhere.test", "dan@plain.test"):
            send(partner.port, "mx-user@partner.test", [rcpt],
                 message("mx-user@partner.test", rcpt, f"via Postfix to {rcpt}"), source="127.0.0.1")

        (got,) = sink.wait_for("bob@tls.test", explain=lambda: gw.explain() + partner.explain())
        received = got.header("Received") or ""
        assert f"by {HOSTNAME} (filterlang) with ESMTPS" in received, received
        assert "CN=mx.partner.test" in (got.header("X-TLS-Client") or ""), got.headers
        # Not a local domain: relayed only because the verified certificate chose the partner's
        # sender group (RELAY); by its IP alone the client gets the default ACCEPT policy.
        (other,) = sink.wait_for("carol@elsewhere.test",
                                 explain=lambda: gw.explain() + partner.explain())
        assert "CN=mx.partner.test" in (other.header("X-TLS-Client") or "")

        refused = partner.wait_log("Postfix to give up on dan@plain.test",
                                   r"to=<dan@plain\.test>.*status=bounced \((.*)\)")
        assert "530 5.7.0 Must issue a STARTTLS command first" in refused[1], refused[0]
        assert "in reply to MAIL FROM" in refused[1], refused[0]
        assert not sink.to("dan@plain.test")


def _served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.starttls(context=ctx)
        assert isinstance(s.sock, ssl.SSLSocket)
        der = s.sock.getpeercert(binary_form=True)
        assert der is not None
        s.ehlo()
        # Every session carries a message: the per-IP cap must see STARTTLS sessions end.
        s.sendmail(ALICE, ["zed@elsewhere.example"],
                   message(ALICE, "zed@elsewhere.example", "over TLS"))
        return der


def test_sighup_reloads_the_listener_certificate(tmp_path: Path, pki: Pki, sink: Sink) -> None:
    """A renewed certificate and key, written over the old files, are served after SIGHUP.
    Sessions that did STARTTLS are counted once by the per-IP cap (2 here): six in a row from
    one address all get in."""
    root = tmp_path / "gw"
    root.mkdir()
    cert, key = root / "tls.crt.pem", root / "tls.key.pem"
    cert.write_bytes(pki.gw[0].read_bytes())
    key.write_bytes(pki.gw[1].read_bytes())
    gw = Gateway(root, next_hop=sink.port, listener=f'tls_cert = "{cert}"\ntls_key = "{key}"',
                 extra="""
[sender_groups.loopback]
ips = ["127.0.0.1/32"]
policy = "capped"

[policies.capped]
action = "RELAY"
max_connections_per_ip = 2
""")

    def der(path: Path) -> bytes:
        return ssl.PEM_cert_to_DER_cert(path.read_text())

    with running(gw):
        for _ in range(3):
            assert _served_certificate(gw.port) == der(pki.gw[0])
        cert.write_bytes(pki.gw2[0].read_bytes())
        key.write_bytes(pki.gw2[1].read_bytes())
        gw.reload()
        wait_until("the renewed certificate to be served",
                   lambda: _served_certificate(gw.port) == der(pki.gw2[0]), explain=gw.explain)
        for _ in range(3):
            assert _served_certificate(gw.port) == der(pki.gw2[0])
        wait_until("every message delivered", lambda: len(sink.to("zed@elsewhere.example")) >= 7,
                   explain=gw.explain)


def test_policy_require_tls_and_the_gateways_name(tmp_path: Path, pki: Pki, sink: Sink) -> None:
    """A mail flow policy's require_tls: its clients get 530 5.7.0 at MAIL until they do
    STARTTLS, other clients of the same listener are served in the clear. The configured
    hostname greets and stamps Received lines; the postmaster address is accepted under an
    ACCEPT policy although its domain is not local, and nothing else of that domain is."""
    gw_cert, gw_key = pki.gw
    gw = Gateway(tmp_path / "gw", next_hop=sink.port,
                 top=f'hostname = "{HOSTNAME}"\npostmaster = "hostmaster@{HOSTNAME}"',
                 listener=f'tls_cert = "{gw_cert}"\ntls_key = "{gw_key}"',
                 extra="""
[sender_groups.strict]
ips = ["127.0.0.3/32"]
policy = "strict"

[policies.strict]
action = "ACCEPT"
require_tls = true
""")
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.check_hostname = False  # connected by address; the name is checked below
    rcpt = "bob@b.example"
    with running(gw):
        assert dialogue(gw.port, [b"QUIT"])[0].startswith(f"220 {HOSTNAME} "), "the greeting"
        with smtplib.SMTP("127.0.0.1", gw.port, source_address=("127.0.0.3", 0), timeout=30) as s:
            assert s.ehlo("strict.client")[1].decode().startswith(HOSTNAME)
            assert s.mail("carol@partner.example") == (
                530, b"5.7.0 Must issue a STARTTLS command first")
            s.rset()
            s.starttls(context=ctx)  # the chain verified against the test CA
            assert isinstance(s.sock, ssl.SSLSocket)
            assert ("DNS", HOSTNAME) in (s.sock.getpeercert() or {}).get("subjectAltName", ())
            s.ehlo("strict.client")
            s.sendmail("carol@partner.example", [rcpt],
                       message("carol@partner.example", rcpt, "strict over TLS"))
        # The default policy (127.0.0.1) is not bound to TLS.
        mid = gw.send("dave@partner.example", [rcpt, f"hostmaster@{HOSTNAME}"],
                      message("dave@partner.example", rcpt, "plain"), source="127.0.0.1")
        got, _ = gw.delivered(sink, f"hostmaster@{HOSTNAME}", mid)
        received = got.header("Received") or ""
        assert f"by {HOSTNAME} (filterlang) with ESMTP " in received, received
        (strict,) = sink.wait_for(rcpt, match=lambda m: b"strict over TLS" in m.data)
        assert f"by {HOSTNAME} (filterlang) with ESMTPS" in (strict.header("Received") or "")
        refused = replies_to(gw.port, "dave@partner.example", [f"other@{HOSTNAME}"],
                             b"Subject: x\r\n\r\nx")
        assert refused[1].startswith("550 5.7.1"), refused
