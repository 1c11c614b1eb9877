"""gateway.toml: the example loads; every mistake is one line naming the key and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.config.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "config_errors.txt"

MINIMAL = """
[[listeners]]
port = 2525
[delivery]
maildir = "md"
"""

# (case name, TOML text). The expected lines live in golden/config_errors.txt.
BAD = [
    ("unknown-key", MINIMAL + "[policies.p]\nmax_recipient = 5\n"),
    ("unknown-top", "listner = 1\n" + MINIMAL),
    ("wrong-type", MINIMAL + "[policies.p]\nmax_recipients = \"ten\"\n"),
    ("bad-choice", MINIMAL + "[policies.p]\naction = \"ACCPET\"\n"),
    ("bad-cidr", MINIMAL + "[sender_groups.g]\nips = [\"10.0.0.0/33\"]\npolicy = \"default\"\n"),
    ("missing-policy", MINIMAL + "[sender_groups.g]\nips = [\"10.0.0.1\"]\npolicy = \"nope\"\n"),
    ("profile-no-cert", MINIMAL + "[profiles.p]\nmode = \"sign\"\n"),
    ("profile-unknown-cert", MINIMAL + "[profiles.p]\nmode = \"triple\"\nsigning_certificate = \"x\"\n"),
    ("profile-bad-action", MINIMAL + "[profiles.p]\nmode = \"encrypt\"\nmissing_key_action = \"splt\"\n"),
    ("no-listener", "[delivery]\nmaildir = \"md\"\n"),
    ("two-targets", "[[listeners]]\nport = 1\n[delivery]\nmaildir = \"md\"\nrelay = \"h:25\"\n"),
    ("bad-relay", "[[listeners]]\nport = 1\n[delivery]\nrelay = \"nohost\"\n"),
    ("bad-retry", MINIMAL + "retry_schedule = []\n"),
    ("metrics-not-loopback", MINIMAL + "[metrics]\naddress = \"0.0.0.0\"\nport = 9000\n"),
    ("tls-half", "[[listeners]]\nport = 1\ntls_cert = \"c.pem\"\n[delivery]\nmaildir = \"md\"\n"),
    ("syntax", "[[listeners]\nport = 1\n"),
    ("bool-not-int", MINIMAL + "[policies.p]\nmax_recipients = true\n"),
    ("dns-bad-server", MINIMAL + "[dns]\nnameservers = [\"ns.example\", \"127.0.0.1:x\", \"127.0.0.1:0\"]\n"),
    ("auth-no-id", MINIMAL + "[authentication]\nspf = true\n"),
    ("auth-bad-id", MINIMAL + "[authentication]\nauthserv_id = \"mx example; dkim=pass\"\n"),
    ("dkim-incomplete", MINIMAL + "[dkim.\"example.org\"]\nkey = \"none.pem\"\n"
     "canonicalization = \"loose\"\nheaders = [\"Subject\"]\n"),
    ("tls-dane", MINIMAL + "[tls.outbound.domains.\"partner.example\"]\nlevel = \"dane\"\n"),
    ("tls-level", MINIMAL + "[tls.outbound]\nlevel = \"verfy\"\n"),
    ("tls-match-level", MINIMAL + "[tls.outbound]\nlevel = \"encrypt\"\nmatch = [\"mx.example\"]\n"),
    ("tls-ciphers", MINIMAL + "[tls.outbound]\nciphers = \"NO-SUCH-CIPHER\"\n"),
    ("tls-version", MINIMAL + "[tls.outbound.domains.\".example\"]\nmin_version = \"SSLv3\"\n"),
    ("tls-unknown", MINIMAL + "[tls.outbound]\nlevl = \"may\"\n[tls.inbound]\nx = 1\n"),
    ("tls-ca-missing", MINIMAL + "[tls.outbound]\nlevel = \"verify\"\nca_file = \"nope.pem\"\n"),
    ("require-tls-no-cert", "[[listeners]]\nport = 1\nrequire_tls = true\ntls_client_ca = \"ca.pem\"\n"
                            "[delivery]\nmaildir = \"md\"\n"),
    ("bad-hostname", "hostname = \"gw example\"\npostmaster = \"nobody\"\n" + MINIMAL),
    ("routes-bad", MINIMAL + "[routes]\n"
     "\"lmtp.example\" = \"lmtp:127.0.0.1:24\"\n"
     "\"port.example\" = [\"a.example:0\", \"b.example:x\", \"2001:db8::1:25\"]\n"
     "\"mixed.example\" = [\"mx\", \"a.example:25\"]\n"
     "\"empty.example\" = []\n"
     "\"user@bad.example\" = \"a.example:25\"\n"
     "\"number.example\" = 25\n"
     "\"table.example\" = [{ host = \"a.example\", prio = 1 }, { host = 5 }]\n"
     "\"Dup.example\" = \"mx\"\n\"dup.example.\" = \"mx\"\n"
     "\"md.example\" = \"maildir:\"\n"
     "\"ip.example\" = \"[mx.example]:25\"\n"),
    ("host-limits", MINIMAL + "[policies.p]\nmax_recipients_per_hour = -1\n"
     "max_recipients_per_hour_per_sender = \"100\"\nmax_messages_per_connection = 1.5\n"
     "max_recipients_per_hour_per_ip = 5\n"),
    ("routes-no-target", "[[listeners]]\nport = 1\n[delivery]\n[routes]\n\"example.com\" = \"mx\"\n"),
    ("dns-uri-lists", "[[listeners]]\nport = 1\n[delivery]\nmaildir = \"m\"\n[dns]\n"
     "uri_lists = [5, \"dbl.example\", \"http://x.example/\", \"\"]\nuri_limit = 0\n"),
]


def _render(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).replace(str(path), "gateway.toml")


def _golden() -> dict[str, str]:
    cases: dict[str, str] = {}
    name = ""
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("== "):
            name = line[3:]
            cases[name] = ""
        elif name:
            cases[name] += line + "\n"
    return {k: v.rstrip("\n") for k, v in cases.items()}


def test_golden_errors(tmp_path: Path) -> None:
    got = {name: _render(tmp_path, text) for name, text in BAD}
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text("".join(f"== {k}\n{v}\n" for k, v in got.items()))
    assert got == _golden()


@pytest.mark.parametrize("name,text", BAD, ids=[b[0] for b in BAD])
def test_every_error_names_a_key(tmp_path: Path, name: str, text: str) -> None:
    for line in _render(tmp_path, text).splitlines():
        assert line.startswith("gateway.toml: "), line
        assert "Traceback" not in line


def test_tls_policy_per_domain(tmp_path: Path) -> None:
    """The exact domain wins, then the longest .suffix entry, then [tls.outbound]; a domain
    entry takes what it does not set from [tls.outbound]."""
    path = tmp_path / "gateway.toml"
    path.write_text('hostname = "gw.example.org"\n' + MINIMAL + """
[tls.outbound]
level = "encrypt"
min_version = "TLSv1.3"
[tls.outbound.domains."partner.example"]
level = "secure"
match = ["mx.partner.example"]
[tls.outbound.domains.".partner.example"]
level = "verify"
[tls.outbound.domains.".example"]
level = "may"
""")
    config = load_config(path)
    tls = config.tls_outbound
    assert tls.for_domain("Partner.Example.").level == "secure"
    assert tls.for_domain("Partner.Example.").match == ("mx.partner.example",)
    assert tls.for_domain("eu.partner.example").level == "verify"
    assert tls.for_domain("eu.partner.example").min_version == "TLSv1.3"
    assert tls.for_domain("other.example").level == "may"
    assert tls.for_domain("example.com").level == "encrypt"
    assert config.hostname == "gw.example.org"
    assert config.postmaster == "postmaster@gw.example.org"


def test_routes(tmp_path: Path) -> None:
    """[routes]: exact, then the longest .suffix, then "*"; host lists keep their order, tables
    go by preference; a "*" route lets [delivery] name no target."""
    path = tmp_path / "gateway.toml"
    path.write_text("""
[[listeners]]
[delivery]
[routes]
"Partner.example." = ["[10.0.0.1]:25", "backup.example:2525", "[2001:db8::1]"]
".partner.example" = [{ host = "b.example", preference = 20 }, { host = "a.example", port = 26, preference = 10 }]
".example" = "mx"
"*" = "maildir:boxes"
""")
    routes = load_config(path).routes
    exact = routes.for_domain("partner.example")
    assert exact is not None and exact.name == "partner.example" and exact.kind == "hosts"
    assert exact.hosts == (("10.0.0.1", 25), ("backup.example", 2525), ("2001:db8::1", 25))
    sub = routes.for_domain("EU.Partner.Example")
    assert sub is not None and sub.hosts == (("a.example", 26), ("b.example", 25))
    mx = routes.for_domain("other.example")
    assert mx is not None and (mx.name, mx.kind) == (".example", "mx")
    other = routes.for_domain("example.org")
    assert other is not None and other.kind == "maildir" and other.maildir == tmp_path / "boxes"
    assert routes.uses_mx


def test_example_config_loads() -> None:
    config = load_config(ROOT / "examples" / "gateway.toml")
    names = config.names()
    assert "sign" in names["profile"]
    assert "Policy" in names["quarantine"]
    assert names["listener"] == frozenset({"Outbound"})
    # Paths are relative to the file.
    assert config.delivery.maildir == (ROOT / "var" / "maildir").resolve()
    assert config.storage.keystore_url == f"sqlite:///{(ROOT / 'var' / 'keys.sqlite3').resolve()}"
    # The example's message filters compile (the certificate is created by `make run`).
    from runtime.engine.loader import load_program

    assert len(load_program(list(config.message_filters)).filters) >= 4


def test_profiles_file_is_included(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        "[profiles.enc]\nmode = \"encrypt\"\nmissing_key_action = \"split\"\ncipher = \"aes256-gcm\"\n"
    )
    path = tmp_path / "gateway.toml"
    path.write_text("profiles_file = \"profiles.toml\"\n" + MINIMAL)
    config = load_config(path)
    assert config.profiles["enc"].missing_key_action == "split"
    assert config.profiles["enc"].cipher == "aes256-gcm"


def test_errors_in_included_profiles_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text("[profiles.enc]\nmode = \"sing\"\n")
    path = tmp_path / "gateway.toml"
    path.write_text("profiles_file = \"profiles.toml\"\n" + MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{tmp_path / 'profiles.toml'}: profiles.enc.mode: must be one of sign, encrypt, "
        "sign-encrypt, triple, not 'sing' (did you mean 'sign'?)"
    )


def test_host_access_table(make_config) -> None:  # type: ignore[no-untyped-def]
    from runtime.mta.listener import choose_policy

    config = make_config(extra="[sender_groups.partners]\nips = [\"192.0.2.0/24\"]\n"
                               "hosts = [\"*.partner.example\"]\npolicy = \"reject\"\n")
    assert choose_policy(config, "127.0.0.1").name == "relay"
    assert choose_policy(config, "192.0.2.7").name == "reject"
    assert choose_policy(config, "198.51.100.1", "mx.partner.example").name == "reject"
    assert choose_policy(config, "198.51.100.1").name == "default"


def test_lint_checks_the_example_filters_against_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.commands.cli import main

    config = load_config(ROOT / "examples" / "gateway.toml")
    code = main(["lint", "--config", str(config.source), *(str(p) for p in config.message_filters)])
    assert code == 0, capsys.readouterr()
    # Every example filter names only what the example configuration defines (issue 15).
    every = main(["lint", "--config", str(config.source), str(ROOT / "examples/filters")])
    assert every == 0, capsys.readouterr().out


def test_a_config_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    from runtime.commands.cli import main

    bad = tmp_path / "gateway.toml"
    bad.write_bytes(b"[storage]\ndata_dir = \"v\xe9r\"\n")
    with pytest.raises(ConfigError, match="invalid UTF-8 byte at offset 23"):
        load_config(bad)
    # Every command that reads the config says so and exits 2, no traceback.
    assert main(["queue", "-c", str(bad), "list"]) == 2


@pytest.mark.parametrize(("keys", "expected"), [
    ("", "auto"),  # automatic: one queue process more than listeners
    ("workers = 3\n", (3, 3)),  # set: that many of each, as documented before queue_workers
    ("workers = 2\nqueue_workers = 5\n", (2, 5)),
    ("queue_workers = 4\n", "auto-4"),
])
def test_worker_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: str,
                       expected: object) -> None:
    from runtime.mta import supervisor as gateway

    monkeypatch.setattr(gateway, "default_workers", lambda: 1)  # as on a 2-core machine
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(keys + '[[listeners]]\nport = 2525\n[delivery]\nmaildir = "md"\n')
    counts = gateway.worker_counts(load_config(cfg))
    assert counts == {"auto": (1, 2), "auto-4": (1, 4)}.get(str(expected), expected)


def test_negative_worker_counts_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('queue_workers = -1\n[[listeners]]\nport = 2525\n[delivery]\nmaildir = "md"\n')
    with pytest.raises(ConfigError, match="queue_workers: must be at least 0"):
        load_config(cfg)


def test_integrity_settings(tmp_path: Path) -> None:
    """Issue 13: signed attributes required by default, structure limits per policy."""
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL + "[policies.small]\nmax_mime_parts = 10\nmax_header_bytes = 8192\n")
    cfg = load_config(path)
    assert cfg.smime.require_signed_attributes is True
    small = cfg.policies["small"]
    assert (small.max_mime_parts, small.max_header_bytes, small.max_header_fields) == (10, 8192, 1000)
    path.write_text(MINIMAL + "[smime]\nrequire_signed_attributes = false\n"
                    "[policies.p]\nmax_mime_depth = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "policies.p.max_mime_depth: must be at least 2, not 1" in str(info.value)
    path.write_text(MINIMAL + "[smime]\nrequire_signed_attributes = false\n")
    assert load_config(path).smime.require_signed_attributes is False


def test_accept_domain_certificates(tmp_path: Path) -> None:
    """Issue 14: a gateway accepts partner gateways' domain certificates unless told not to."""
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL)
    assert load_config(path).smime.accept_domain_certificates is True
    path.write_text(MINIMAL + "[smime]\naccept_domain_certificates = false\n")
    assert load_config(path).smime.accept_domain_certificates is False
    path.write_text(MINIMAL + "[smime]\naccept_domain_certificates = \"yes\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "smime.accept_domain_certificates" in str(info.value)


def test_smime_legacy_switches(tmp_path: Path) -> None:
    """Issue 14 item 5: `legacy`, `at_signing_time` (only with legacy) and `decrypt_3des`."""
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL)
    smime = load_config(path).smime
    assert (smime.legacy, smime.at_signing_time, smime.decrypt_3des) == (False, False, True)
    path.write_text(MINIMAL + "[smime]\nlegacy = true\nat_signing_time = true\n"
                    "decrypt_3des = false\n")
    smime = load_config(path).smime
    assert (smime.legacy, smime.at_signing_time, smime.decrypt_3des) == (True, True, False)
    path.write_text(MINIMAL + "[smime]\nat_signing_time = true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "smime.at_signing_time: validating at the signing time trusts the sender's clock" \
        in str(info.value)
