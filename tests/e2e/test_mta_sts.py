"""MTA-STS (RFC 8461) through `filterlang serve`: recipient domains routed by `mx` publish
`_mta-sts` TXT records in a real DNS server (NSD on loopback) and their policies on a real
HTTPS server on loopback (a certificate from a test CA for each mta-sts.DOMAIN); the MX host is
a sink offering STARTTLS with a certificate for mx.sts.test from the same CA.

- sts.test, mode enforce, mx mx.sts.test: delivered over TLS, the certificate checked against
  the policy's names; the policy is fetched once and then cached;
- bad.test, mode enforce, mx *.bad.test: the MX's certificate does not carry such a name, so
  the mail is deferred (4.7.5, the reason in tracking), never sent without the check;
- try.test, mode testing: recorded in tracking, delivered as without a policy;
- gone.test publishes the TXT record but its policy host answers 404: delivered as without a
  policy, the failed fetch in tracking.
"""

from __future__ import annotations

import shutil
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .harness import CA, Gateway, Sink, free_port, message, running
from .nsd import NSD, Nsd

pytestmark = pytest.mark.skipif(
    (not Path(NSD).exists() and shutil.which("nsd") is None) or shutil.which("openssl") is None,
    reason="nsd and openssl are needed (.ci/run installs them)")

ALICE = "alice@a.example"
POLICIES = {
    "mta-sts.sts.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n",
    "mta-sts.bad.test": "version: STSv1\nmode: enforce\nmx: *.bad.test\nmax_age: 86400\n",
    "mta-sts.try.test": "version: STSv1\nmode: testing\nmx: mx.try.test\nmax_age: 86400\n",
}


class PolicyServer:
    """The domains' policy host: HTTPS on loopback, one policy per Host, every request kept."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host = (self.headers.get("Host") or "").partition(":")[0]
                outer.requests.append(f"{host}{self.path}")
                body = POLICIES.get(host, "").encode()
                ok = body and self.path == "/.well-known/mta-sts.txt"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PolicyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def zone(name: str) -> list[str]:
    return ["@ IN MX 10 mx", "mx IN A 127.0.0.1", "mta-sts IN A 127.0.0.1",
            '_mta-sts IN TXT "v=STSv1; id=20261207"']


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[CA, Nsd, PolicyServer, Path]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = CA(pki, "Test Web CA")
    web = ca.tls_identity(pki, "policy", "mta-sts.sts.test",
                          dns=[*POLICIES, "mta-sts.gone.test"])
    domains = ("sts.test", "bad.test", "try.test", "gone.test")
    with Nsd(tmp_path / "nsd", {d: zone(d) for d in domains}) as nsd, \
            PolicyServer(*web) as https:
        yield ca, nsd, https, pki


def test_mta_sts_enforce_testing_and_a_policy_the_mx_does_not_meet(
        tmp_path: Path, world: tuple[CA, Nsd, PolicyServer, Path]) -> None:
    ca, nsd, https, pki = world
    mx = Sink(tls=ca.tls_identity(pki, "mx", "mx.sts.test", dns=["mx.sts.test"]))
    gw = Gateway(tmp_path / "gw", next_hop=free_port(), extra=f"""
[dns]
nameservers = ["{nsd.address}"]
timeout = 2

[routes]
".test" = "mx"

[tls.outbound]
ca_file = "{ca.cert}"
mta_sts_port = {https.port}
""")
    gw.config.write_text(gw.config.read_text().replace(
        "connect_timeout = 5", f"connect_timeout = 5\nmx_port = {mx.port}"))
    rcpts = ["bob@sts.test", "carol@bad.test", "dave@try.test", "erin@gone.test"]
    with running(mx, gw):
        mid = gw.send(ALICE, rcpts, message(ALICE, rcpts, "mta-sts"))
        got, rec = gw.delivered(mx, "bob@sts.test", mid)
        assert got.tls and rec["route"] == ".test", rec
        sts = {r["domain"]: r for r in gw.records(mid) if r["event"] == "mta_sts"}
        assert sts["sts.test"]["mode"] == "enforce" and sts["sts.test"]["applied"] == "verify"
        assert sts["sts.test"]["mx"] == ["mx.sts.test"]

        deferred = gw.wait_event(mid, "deferred", "carol@bad.test")
        assert deferred["reply"].startswith("4"), deferred
        assert "4.7.5" in deferred["reply"] and "*.bad.test" in deferred["reply"], deferred
        assert not mx.to("carol@bad.test")

        got, rec = gw.delivered(mx, "dave@try.test", mid)
        assert sts["try.test"]["mode"] == "testing"
        assert sts["try.test"]["applied"] == "report only"

        gw.delivered(mx, "erin@gone.test", mid)
        assert "answered HTTP 404" in sts["gone.test"]["problem"], sts["gone.test"]

        # Cached: a second message fetches nothing again.
        mid2 = gw.send(ALICE, "bob@sts.test", message(ALICE, "bob@sts.test", "again"))
        gw.delivered(mx, "bob@sts.test", mid2)
        assert https.requests.count("mta-sts.sts.test/.well-known/mta-sts.txt") == 1, \
            https.requests

    # What the administrator asks: the policy that applies, per address.
    shown = gw.cli("routes", "test", "bob@sts.test", "dave@try.test")
    assert "tls        verify (names mx.sts.test;" in shown, shown
    assert "mta-sts    enforce (id 20261207; mx mx.sts.test)" in shown, shown
    assert "mta-sts    testing (id 20261207; mx mx.try.test): not applied" in shown, shown
