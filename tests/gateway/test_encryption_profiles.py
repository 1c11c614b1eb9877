"""Encryption profiles through the real command line (subprocesses): `lint --config` and
`serve --check` refuse encrypt('P') naming a profile the configuration does not define (with
the filter file and line), the configuration's own mistakes are one line each, and
`filterlang test -c` shows what the profile did.

Each case's output (exit status, standard output and error, the folder written as `<dir>` and
what varies from run to run masked) is compared with golden/encryption/<case>.expected;
`pytest --update-golden` rewrites them for review.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FILTERLANG = Path(sys.executable).parent / "filterlang"
GOLDEN = Path(__file__).parent / "golden" / "encryption"

CONFIG = """
message_filters = ["{filters}"]
local_domains = ["b.example"]

[storage]
data_dir = "data"

[[listeners]]
name = "in"
port = 0

[profiles.enc]
mode = "encrypt"
missing_key_action = "bounce"

[profiles.sign]
mode = "sign"
signing_certificate = "org"

[certificates.org]
cert = "carol.crt.pem"
key = "carol.key.pem"

[encryption_profiles.Secure]
sending_profile = "enc"

[delivery]
relay = "127.0.0.1:2599"
{extra}"""

GOOD_FILTER = """always:
    if subject == '^always' {
        encrypt('Secure', 'Encrypted: $Subject', 0);
    }

tls_first:
    if subject == '^tls first' {
        encrypt-deferred('Secure', '$Subject', 1);
    }
"""

BAD_FILTER = """always:
    if subject == '^always' {
        encrypt('Secure', 'Encrypted: $Subject', 2);
    }

on_delivery:
    if subject == '^later' {
        encrypt-deferred('Secur');
    }
"""

# Every mistake an operator can make in [encryption_profiles], in one file.
BAD_SECTIONS = """
[encryption_profiles.NoSuchProfile]
sending_profile = "nope"

[encryption_profiles.SignsOnly]
sending_profile = "sign"

[encryption_profiles.Nameless]
tls_verify = true

[encryption_profiles.CaWithoutVerify]
sending_profile = "enc"
tls_ca_file = "carol.crt.pem"

[encryption_profiles.MissingCa]
sending_profile = "enc"
tls_verify = true
tls_ca_file = "absent.pem"

[encryption_profiles.Typo]
sending_profil = "enc"
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("encryption")
    _run(root, "cert", "create", "--cn", "Carol", "--san-email", "carol@b.example",
         "--out", str(root / "carol"))
    _run(root, "keys", "--store", f"sqlite:///{root}/data/keys.sqlite3", "add", "carol",
         str(root / "carol.crt.pem"))
    (root / "good.filter").write_text(GOOD_FILTER)
    (root / "bad.filter").write_text(BAD_FILTER)
    (root / "good.toml").write_text(CONFIG.format(filters="good.filter", extra=""))
    (root / "bad-filter.toml").write_text(CONFIG.format(filters="bad.filter", extra=""))
    (root / "bad-config.toml").write_text(CONFIG.format(filters="good.filter", extra=BAD_SECTIONS))
    for name, subject in (("always", "always: Q3"), ("tls", "tls first: Q3")):
        (root / f"{name}.eml").write_bytes(
            f"From: <bob@b.example>\r\nTo: <carol@b.example>\r\nSubject: {subject}\r\n"
            "Message-ID: <1@b.example>\r\n\r\nThe merger closes on Friday.\r\n".encode())
    yield root


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FILTERLANG), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _shown(cwd: Path, args: list[str]) -> str:
    proc = _run(cwd, *args)
    text = (f"$ filterlang {' '.join(args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"--- stderr\n{proc.stderr}")
    text = text.replace(str(cwd), "<dir>")
    # What differs from one run to the next: the key's validity and the message sizes.
    text = re.sub(r"notBefore \d+", "notBefore N", text)
    return re.sub(r"\d+ bytes", "N bytes", text)


CASES = {
    "lint_unknown_profile": ["lint", "--config", "bad-filter.toml", "bad.filter"],
    "serve_check_unknown_profile": ["serve", "--check", "-c", "bad-filter.toml"],
    "serve_check_config_mistakes": ["serve", "--check", "-c", "bad-config.toml"],
    "lint_clean": ["lint", "--config", "good.toml", "good.filter"],
    "test_always": ["test", "-c", "good.toml", "--mail-from", "bob@b.example", "--rcpt",
                    "carol@b.example", "--rcpt", "dave@b.example", "--remote-ip", "127.0.0.1",
                    "always.eml"],
    "test_always_keyed": ["test", "-c", "good.toml", "--mail-from", "bob@b.example", "--rcpt",
                          "carol@b.example", "--remote-ip", "127.0.0.1", "always.eml"],
    "test_tls_first": ["test", "-c", "good.toml", "--mail-from", "bob@b.example", "--rcpt",
                       "carol@b.example", "--remote-ip", "127.0.0.1", "tls.eml"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, folder: Path, update_golden: bool) -> None:
    actual = _shown(folder, CASES[case])
    expected = GOLDEN / f"{case}.expected"
    if update_golden or not expected.exists():
        GOLDEN.mkdir(exist_ok=True)
        expected.write_text(actual, encoding="utf-8")
        if not update_golden:
            raise AssertionError(f"{expected.name} was missing; written, please review it")
        return
    assert actual == expected.read_text(encoding="utf-8")


def test_exit_statuses(folder: Path) -> None:
    # The golden files hold them too; the contract in one place (serve --check: 2, a
    # configuration error, as every command has it).
    for case, status in (("lint_unknown_profile", 1), ("serve_check_unknown_profile", 2),
                         ("serve_check_config_mistakes", 2), ("lint_clean", 0),
                         ("test_always", 0), ("test_tls_first", 0)):
        text = (GOLDEN / f"{case}.expected").read_text(encoding="utf-8")
        assert text.splitlines()[1] == f"exit {status}", case
