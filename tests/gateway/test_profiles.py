"""`filterlang profiles`: list, show, search, check, export, and all-or-nothing import."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.commands.cli import main

CONFIG = """
profiles_file = "profiles.toml"
[[listeners]]
port = 2525
[certificates.org]
cert = "org.pem"
key = "org.key"
[profiles.sign]
mode = "sign"
signing_certificate = "org"
[delivery]
maildir = "md"
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    (tmp_path / "gateway.toml").write_text(CONFIG)
    (tmp_path / "profiles.toml").write_text(
        '[profiles.enc]\nmode = "encrypt"\nmissing_key_action = "split"\n')
    return tmp_path / "gateway.toml"


def test_list_show_search_export(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "-c", str(cfg), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["enc", "sign"]
    assert main(["profiles", "-c", str(cfg), "search", "split"]) == 0
    assert capsys.readouterr().out.startswith("enc\t")
    assert main(["profiles", "-c", str(cfg), "show", "sign"]) == 0
    assert capsys.readouterr().out == (
        '[profiles.sign]\nmode = "sign"\nsigning_certificate = "org"\nsign_mode = "detached"\n'
        'missing_key_action = "bounce"\n')


def test_export_import_round_trip(cfg: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "-c", str(cfg), "export", "enc"]) == 0
    exported = capsys.readouterr().out
    new = tmp_path / "new.toml"
    new.write_text(exported.replace("profiles.enc", "profiles.enc2"))
    assert main(["profiles", "-c", str(cfg), "import", str(new)]) == 0
    assert "[profiles.enc2]" in (tmp_path / "profiles.toml").read_text()


@pytest.mark.parametrize("text,err", [
    ('[profiles.a]\nmode = "sign"\nsigning_certificate = "org"\n[profiles.b]\nmode = "sing"\n',
     "profiles.b.mode: must be one of"),
    ('[profiles.a]\nmode = "triple"\nsigning_certificate = "nope"\n', "no certificate 'nope'"),
    ('[profiles.enc]\nmode = "encrypt"\n', "already exists; use --replace"),
    ("[profiles.a\n", "fix the TOML syntax"),
])
def test_failed_import_changes_nothing(cfg: Path, tmp_path: Path, text: str, err: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = (tmp_path / "profiles.toml").read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["profiles", "-c", str(cfg), "import", str(bad)]) == 1
    assert err in capsys.readouterr().err
    assert (tmp_path / "profiles.toml").read_bytes() == before


def test_check_reports_missing_certificate_files(cfg: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "-c", str(cfg), "check"]) == 1
    assert "sign: certificate of 'org' not found" in capsys.readouterr().out
