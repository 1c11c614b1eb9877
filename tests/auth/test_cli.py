"""The command line of issue 16: `filterlang dkim keygen`, a DKIM key that cannot sign, and
suite cases that state authentication results (through the real CLI, in a subprocess)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import dkim

FILTERLANG = Path(sys.executable).parent / "filterlang"


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FILTERLANG), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_keygen_prints_the_record_and_keeps_the_key_private(tmp_path: Path) -> None:
    out = cli("dkim", "keygen", "--domain", "Example.ORG", "--selector", "mail2026", "--bits",
              "1024", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = out.stdout.strip()
    assert record.startswith('mail2026._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; p=')
    key = tmp_path / "mail2026.example.org.dkim.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "[dkim.example.org]" in out.stderr
    # The record holds the key's public half: a signature made with the key verifies with it.
    value = "".join(part for part in record.split('"')[1::2]).encode()
    msg = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    sig = dkim.sign(msg, b"mail2026", b"example.org", key.read_bytes())
    assert dkim.verify(sig + msg, dnsfunc=lambda name, timeout=5: value)
    again = cli("dkim", "keygen", "--domain", "example.org", "--selector", "mail2026",
                cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr


def test_keygen_refuses_a_name_that_is_not_a_dns_name(tmp_path: Path) -> None:
    out = cli("dkim", "keygen", "--domain", "example.org", "--selector", "a b", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("filterlang dkim keygen: --selector 'a b' is not a DNS name "
                                  "(letters, digits and '-' between dots)")


def test_a_dkim_key_that_cannot_sign_stops_the_start(tmp_path: Path) -> None:
    key = tmp_path / "ec.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                    str(key)], check=True, capture_output=True)
    (tmp_path / "gateway.toml").write_text(
        '[[listeners]]\nport = 2525\n[delivery]\nmaildir = "md"\n'
        f'[dkim."example.org"]\nselector = "s"\nkey = "{key.name}"\n')
    out = cli("serve", "-c", tmp_path / "gateway.toml", "--check")
    assert out.returncode == 2
    assert "dkim.example.org.key" in out.stderr and "not an RSA key" in out.stderr


def test_suite_cases_state_authentication_results(tmp_path: Path) -> None:
    (tmp_path / "f.filter").write_text(
        "spf_bad:\n    if spf-status == 'Fail, SoftFail' { tag-message('spf'); }\n"
        "dmarc_reject:\n    if (dmarc-status == 'Fail') and (dmarc-policy == 'reject') "
        "{ tag-message('dmarc'); }\n")
    (tmp_path / "s.toml").write_text('''filters = ["f.filter"]
[[case]]
name = "softfail and a DMARC reject"
authentication = {spf = "SoftFail", dmarc = "Fail", dmarc_policy = "reject"}
raw = "Subject: x\\n\\nx\\n"
[case.expect]
matched = ["spf_bad", "dmarc_reject"]
[[case]]
name = "a typo is one clear error"
authentication = {dmrac = "Fail"}
raw = "Subject: x\\n\\nx\\n"
''')
    out = cli("test", "--suite", tmp_path / "s.toml")
    assert "authentication.dmrac: unknown key; use spf, spf_helo, dkim, dmarc, dmarc_policy" in (
        out.stdout + out.stderr), out.stdout + out.stderr
    (tmp_path / "s.toml").write_text((tmp_path / "s.toml").read_text().split("[[case]]\nname = \"a typo")[0])
    out = cli("test", "--suite", tmp_path / "s.toml")
    assert out.returncode == 0, out.stdout + out.stderr
