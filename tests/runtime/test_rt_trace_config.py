"""`filterlang test -c gateway.toml`: the configured gateway's own pipeline, nothing sent and
nothing stored; the listener's refusals, S/MIME done for real, keys chosen and why, next hops,
the messages written with -o, and suites that name a configuration."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.commands.cli import main
from smime import compose
from smime.keystore import open_keystore
from smime.policy import VerifyPolicy
from smime.trust import TrustStore
from tests.smime.pki import Issued, issue, key_pem

FILTERLANG = Path(sys.executable).parent / "filterlang"

FILTERS = """
protect:
  if sendergroup == 'users' { insert-header('X-Out', 'yes'); smime-gateway-deferred('enc'); }
hold:
  if subject == '^hold' { quarantine('Policy'); smime-gateway('sign'); }
"""

TOML = """
local_domains = ["example.org"]
message_filters = ["f.filter"]
[storage]
data_dir = "data"
keystore_url = "sqlite:///{root}/keys.sqlite3"
[[listeners]]
name = "main"
hostname = "gw.example.org"
[sender_groups.users]
ips = ["127.0.0.2/32"]
policy = "users"
[policies.users]
action = "RELAY"
[policies.default]
action = "ACCEPT"
smime_decrypt_verify = true
harvest = true
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"
[smime]
trust_anchors = ["ca.pem"]
[profiles.sign]
mode = "sign"
signing_certificate = "org"
[profiles.enc]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "bounce"
[quarantines.Policy]
[delivery]
relay = "127.0.0.1:2600"
"""

MESSAGE = b"From: <a@example.org>\r\nTo: <bob@partner.example>\r\nSubject: {s}\r\n\r\nhello\r\n"


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = issue("test CA", ca=True)
        self.org = issue("gw.example.org", self.ca, key_usage=None, emails=["example.org"])
        self.bob: Issued = issue("bob", self.ca, key_usage=None, emails=["bob@partner.example"])
        self.partner = issue("partner", self.ca, key_usage=None, emails=["carol@partner.example"])
        (root / "org.crt.pem").write_bytes(self.org.pem)
        (root / "org.key.pem").write_bytes(key_pem(self.org.key))
        (root / "ca.pem").write_bytes(self.ca.pem)
        (root / "f.filter").write_text(FILTERS)
        self.config = root / "gateway.toml"
        self.config.write_text(TOML.format(root=root))
        store = open_keystore(f"sqlite:///{root}/keys.sqlite3")
        store.add_public("bob", self.bob.pem.decode("ascii"))
        store.close()

    def message(self, name: str, subject: str) -> Path:
        path = self.root / name
        path.write_bytes(MESSAGE.replace(b"{s}", subject.encode()))
        return path

    def keys_rows(self) -> list[Any]:
        with sqlite3.connect(self.root / "keys.sqlite3") as db:
            return list(db.execute("SELECT name, kind, last_used FROM keys ORDER BY id"))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def trace(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["test", *args, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_outbound_is_encrypted_with_the_stored_key_and_nothing_is_written(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    before = site.keys_rows()
    out = trace(capsys, "-c", str(site.config), "--remote-ip", "127.0.0.2", "--rcpt",
                "bob@partner.example", "-o", str(site.root / "out"), str(site.message("m.eml", "hi")))
    assert {"message", "filters", "final", "recipients", "stages"} <= set(out)
    assert out["recipients"] == {"bob@partner.example": "deliver"}
    assert out["next_hops"] == {"bob@partner.example": "127.0.0.1:2600"}
    stages = {s["stage"]: s for s in out["stages"]}
    assert stages["listener"]["sender_group"] == "users" and stages["listener"]["policy"] == "users"
    assert stages["mail_flow_policy"]["direction"] == "outgoing"
    key = stages["smime_outbound"]["keys"][0]
    assert key["recipient"] == "bob@partner.example" and key["key"] == "bob" and "matches" in key["why"]
    assert out["leaving"][0]["structure"].endswith("(authenveloped-data)") or \
        out["leaving"][0]["structure"].endswith("(enveloped-data)")
    # the written message is what bob gets: it decrypts with his key and verifies
    written = (site.root / "out" / "m.deliver.eml").read_bytes()
    # (signed with the organisation's domain certificate: what a partner gateway accepts)
    res = compose.unwrap(written, keys=[(site.bob.key, site.bob.cert)],
                         trust=TrustStore.load([site.root / "ca.pem"]),
                         policy=VerifyPolicy(domain_certificates=True))
    assert res.encrypted and res.verified and b"X-Out: yes" in res.content
    assert site.keys_rows() == before  # the key's use was not counted
    assert not (site.root / "data").exists()  # no quarantine, no spool


def test_listener_refusals_are_reported_per_recipient(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", "--rcpt",
                "bob@partner.example", str(site.message("m.eml", "hi")))
    assert out["recipients"] == {"dave@example.org": "deliver", "bob@partner.example": "refused"}
    assert out["bounce_reasons"]["bob@partner.example"].startswith("550 5.7.1 Relaying denied")


def test_missing_key_bounces_with_the_reason_and_the_dsn(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    out = trace(capsys, "-c", str(site.config), "--remote-ip", "127.0.0.2", "--mail-from",
                "a@example.org", "--rcpt", "nokey@else.example", str(site.message("m.eml", "hi")))
    assert out["recipients"] == {"nokey@else.example": "bounce"}
    assert "no usable S/MIME encryption key" in out["bounce_reasons"]["nokey@else.example"]
    keys = [s for s in out["stages"] if s["stage"] == "smime_outbound"][0]["keys"]
    assert keys[0]["key"] is None and "no stored key" in keys[0]["why"]
    assert [m["note"] for m in out["leaving"]] == ["DSN"]
    assert out["leaving"][0]["recipients"] == ["a@example.org"]


def test_quarantine_then_final_profile_parks_the_signed_message(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org",
                str(site.message("q.eml", "hold this")))
    assert out["recipients"] == {"dave@example.org": "quarantine(Policy)"}
    assert out["leaving"][0]["structure"] == "multipart/signed (detached signature)"
    assert not (site.root / "data").exists()  # not parked without --commit
    trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", "--commit",
          str(site.message("q.eml", "hold this")))
    assert len(list((site.root / "data" / "quarantine" / "Policy").iterdir())) == 1


def test_inbound_signed_message_is_verified_for_real_and_harvest_is_only_shown(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    from smime.compose import Signer

    plain = b"From: <carol@partner.example>\r\nTo: <dave@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"
    signed = compose.protect(plain, mode="sign", signer=Signer(site.partner.key, site.partner.cert, ()))
    (site.root / "s.eml").write_bytes(signed)
    before = site.keys_rows()
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", str(site.root / "s.eml"))
    smime = [s for s in out["stages"] if s["stage"] == "smime_inbound"]
    assert smime[0]["verified"] is True and smime[0]["signers"] == ["carol@partner.example"]
    assert smime[1]["action"] == "stored"  # what harvesting would do ...
    assert site.keys_rows() == before  # ... and did not
    trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", "--commit", str(site.root / "s.eml"))
    assert len(site.keys_rows()) == len(before) + 1


def test_partner_gateway_domain_certificate_binds_by_domain_unless_turned_off(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    from smime.compose import Signer

    gateway = issue("gw.partner.example", site.ca, key_usage=None, dns=["partner.example"])
    plain = b"From: <carol@partner.example>\r\nTo: <dave@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"
    signed = compose.protect(plain, mode="sign", signer=Signer(gateway.key, gateway.cert, ()))
    (site.root / "s.eml").write_bytes(signed)
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", str(site.root / "s.eml"))
    smime = [s for s in out["stages"] if s["stage"] == "smime_inbound"]
    assert (smime[0]["verified"], smime[0]["binding"]) == (True, "domain")
    assert smime[0]["signers"] == ["partner.example"]
    assert (smime[1]["action"], smime[1]["reason"]) == ("stored", "first key for this domain")
    # The switch off: the certificate names no address, so nothing binds carol to it.
    site.config.write_text(site.config.read_text().replace(
        'trust_anchors = ["ca.pem"]', 'trust_anchors = ["ca.pem"]\naccept_domain_certificates = false'))
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", str(site.root / "s.eml"))
    smime = [s for s in out["stages"] if s["stage"] == "smime_inbound"]
    assert (smime[0]["verified"], smime[0].get("binding")) == (False, None)
    assert any(r.startswith("certificate-without-address") for r in smime[0]["reasons"])
    assert smime[1]["action"] == "skipped"


def test_a_suite_can_name_the_gateway_configuration(site: Site) -> None:
    (site.root / "suite.toml").write_text(
        'config = "gateway.toml"\n[[case]]\nname = "users mail is encrypted"\nremote_ip = "127.0.0.2"\n'
        'rcpt = ["bob@partner.example"]\nraw = """Subject: x\n\ny\n"""\n[case.expect]\n'
        'matched = ["protect"]\nrecipients = {"bob@partner.example" = "deliver"}\n'
        'headers_present = ["X-Out"]\n')
    done = subprocess.run([str(FILTERLANG), "test", "--suite", str(site.root / "suite.toml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 0 failed" in done.stdout


def test_text_trace_shows_every_stage(site: Site) -> None:
    done = subprocess.run([str(FILTERLANG), "test", "-c", str(site.config), "--remote-ip", "127.0.0.2",
                           "--rcpt", "bob@partner.example", "--rcpt", "x@else.example",
                           str(site.message("m.eml", "hi"))], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for line in ("listener main: mail flow policy users (RELAY)", "mail flow policy users: outgoing",
                 "message filters:", "sending profile enc:", "key for bob@partner.example: bob",
                 "key for x@else.example: (none)", "x@else.example: bounce (550 5.7.1 no usable",
                 "messages leaving:", "DSN: deliver for sender@example.com"):
        assert line in text, text


def test_flags_of_the_configuration_free_mode_are_refused_or_warned(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "-c", str(site.config), str(site.root / "f.filter"),
                 str(site.message("m.eml", "hi"))]) == 2
    assert "with -c give messages only" in capsys.readouterr().err
    assert main(["test", "-c", str(site.config), "--direction", "outgoing",
                 str(site.message("m.eml", "hi"))]) == 0
    assert "warning: --direction has no effect with -c" in capsys.readouterr().err
    assert main(["test", "-c", str(site.config), "--listener", "nope", str(site.root / "m.eml")]) == 2
    assert "has no such listener (known: main)" in capsys.readouterr().err
    assert main(["test", "-c", str(site.config), "--remote-ip", "mx.example", str(site.root / "m.eml")]) == 2
    assert "is not an IP address" in capsys.readouterr().err


def test_bad_message_is_refused_as_the_listener_would(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    (site.root / "junk.eml").write_bytes(b"Subject: x\r\n\r\nnul \x00 and bare\nLF\r\n")
    out = trace(capsys, "-c", str(site.config), "--rcpt", "dave@example.org", str(site.root / "junk.eml"))
    assert out["recipients"] == {"dave@example.org": "refused"}
    assert out["bounce_reasons"]["dave@example.org"].startswith("550 5.6.0")
    assert out["leaving"] == []


def test_tls_client_subject_picks_the_partner_group_and_require_tls_refuses_plain(site: Site) -> None:
    """`filterlang test -c --tls-client-subject`: the sender groups' tls_subjects choose the
    policy as the listener would after STARTTLS, filters see $TLSClientSubject; without TLS,
    a policy with require_tls refuses at MAIL (530 5.7.0)."""
    (site.root / "f.filter").write_text(FILTERS + "stamp:\n  if true { insert-header('X-TLS', "
                                        "'[$TLSClientSubject]'); insert-header('X-Host', "
                                        "'$Hostname'); }\n")
    site.config.write_text('hostname = "mx1.example.org"\n' + site.config.read_text() + """
[sender_groups.partner]
tls_subjects = ["CN=mx.partner.example,*"]
policy = "partner"
[policies.partner]
action = "RELAY"
require_tls = true
""")
    site.config.write_text(site.config.read_text().replace(
        "[sender_groups.users]", "[sender_groups.partner_ip]\nips = [\"192.0.2.9/32\"]\n"
        "policy = \"partner\"\n[sender_groups.users]"))
    msg = str(site.message("m.eml", "hi"))

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run([str(FILTERLANG), "test", "-c", str(site.config), "--json",
                               "-o", str(site.root / "out"), *args, msg],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        out: dict[str, Any] = json.loads(done.stdout)
        return out

    out = run("--remote-ip", "198.51.100.7", "--rcpt", "x@else.example",
              "--tls-client-subject", "CN=mx.partner.example,O=Partner Ltd")
    listener = {s["stage"]: s for s in out["stages"]}["listener"]
    assert listener["sender_group"] == "partner" and listener["policy"] == "partner", listener
    assert listener["tls"] is True
    assert out["recipients"] == {"x@else.example": "deliver"}
    written = (site.root / "out" / "m.deliver.eml").read_bytes()
    assert b"X-TLS: [CN=mx.partner.example,O=Partner Ltd]" in written
    assert b"with ESMTPS" in written and b"by gw.example.org" in written  # the listener's own
    assert b"X-Host: mx1.example.org" in written  # $Hostname: the gateway's configured name

    plain = run("--remote-ip", "192.0.2.9", "--rcpt", "x@else.example")
    assert plain["recipients"] == {"x@else.example": "refused"}, plain
    assert "530 5.7.0" in json.dumps(plain)
