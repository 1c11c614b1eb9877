"""docs/gateway-toml.md is generated from runtime/config/reference.py, and that schema is the one
the loader reads: the same keys both ways, examples that load, the loader's defaults."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runtime.config import reference
from runtime.config.config import load_config
from runtime.config.schema import Table

ROOT = Path(__file__).resolve().parents[2]
# The administrator's own names, one per named section, chosen so the examples refer to each
# other (profiles sign with certificate "org", the S/MIME failure quarantine is "Policy"...).
NAMES = {"sender_groups": "loopback", "policies": "relayed", "certificates": "org",
         "profiles": "x", "incoming_policies": "in", "outgoing_policies": "out",
         "quarantines": "Policy", "encryption_profiles": "secret", "dkim": "example",
         "ldap": "corp"}
# Keys that exclude each other: the example gives the first, and the second is read too.
EXCLUSIVE = {("ldap", "bind_password")}
MAPS = ("dictionaries", "text_resources", "routes")  # NAME = value


def _prefix(header: str) -> str:
    inner = header.strip("[]")
    if not inner:
        return ""
    if header.startswith("[["):
        return f"{inner}[]."
    return f"{inner}." if inner not in MAPS else f"{inner}."


def documented() -> set[str]:
    return {_prefix(s.header) + k.name for s in reference.SECTIONS for k in s.keys}


def _normal(key: str) -> str:
    key = re.sub(r"\[\d+\]", "[]", key)
    key = key.replace('"', "")  # tls.outbound.domains."example.com": quoted, as TOML writes it
    section, _, rest = key.partition(".")
    if section in NAMES and rest:
        return f"{section}.NAME.{rest.partition('.')[2]}" if "." in rest else f"{section}.{rest}"
    if section in MAPS and rest:
        return f"{section}.NAME"
    return key


def example_toml(delivery: str = "maildir") -> str:
    """Every documented key with its example value, one delivery target."""
    targets = {"relay", "reinject", "mx", "maildir"}
    lines: list[str] = []
    for s in reference.SECTIONS:
        section = s.header.strip("[]").partition(".")[0]
        if s.header:
            lines.append(s.header.replace("NAME", NAMES.get(section, "NAME")))
        for k in s.keys:
            if section == "delivery" and k.name in targets - {delivery}:
                continue
            if (section, k.name) in EXCLUSIVE and s.header.endswith(".NAME]"):
                continue
            name = "MacroKeys" if k.name == "NAME" else k.name
            lines.append(f"{name} = {k.example}")
        lines.append("")
    return "\n".join(lines)


def _write_example(tmp_path: Path, delivery: str = "maildir") -> Path:
    for folder in ("certs/partners", "certs/crls"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "profiles.toml").write_text('[profiles.more]\nmode = "encrypt"\n')
    (tmp_path / "certs/partners/ca.pem").write_text("(a CA file)\n")
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys/dkim.pem").write_text("(a DKIM key)\n")
    (tmp_path / "users.db").write_text("# no users yet\n")
    (tmp_path / "ldap.secret").write_text("(a password)\n")
    path = tmp_path / "gateway.toml"
    path.write_text(example_toml(delivery))
    return path


def test_the_checked_in_page_is_generated_from_the_schema() -> None:
    page = (ROOT / reference.PAGE).read_text(encoding="utf-8")
    assert page == reference.render(), (
        f"{reference.PAGE} is out of date: run `make docs` (python -m runtime.config.reference --write)")


def test_the_page_regenerates_through_its_script() -> None:
    out = subprocess.run([sys.executable, "-m", "runtime.config.reference"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == reference.render()


def test_every_key_the_loader_reads_is_documented_and_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: set[str] = set()
    real_get, real_known = Table._get, Table.known

    def spy_get(self: Table, name: str, *args: Any) -> Any:
        read.add(self.key(name))
        return real_get(self, name, *args)

    def spy_known(self: Table, name: str) -> None:
        read.add(self.key(name))
        real_known(self, name)

    monkeypatch.setattr(Table, "_get", spy_get)
    monkeypatch.setattr(Table, "known", spy_known)
    load_config(_write_example(tmp_path))
    # Tables that hold sections: [dkim.NAME]'s dkim, [tls.outbound.domains.NAME]'s tls,
    # tls.outbound and tls.outbound.domains.
    containers = {".".join(parts[:i]) for s in reference.SECTIONS
                  for parts in [s.header.strip("[]").split(".")]
                  for i in range(1, len(parts) + (parts[-1] != "NAME"))
                  if parts[i - 1] != "NAME"}
    keys = {_normal(k) for k in read} - containers
    # profiles.toml's own profile: the same keys as [profiles.NAME]
    keys = {k for k in keys if not k.startswith("profiles.more")}
    assert keys - documented() == set(), "read by the loader, missing from reference.py"
    assert documented() - keys == set(), "in reference.py, never read by the loader"


@pytest.mark.parametrize("delivery", ["maildir", "relay", "reinject", "mx"])
def test_the_examples_load(tmp_path: Path, delivery: str) -> None:
    config = load_config(_write_example(tmp_path, delivery))
    assert config.listeners[0].port == 25


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return None  # prose ("this host's FQDN"): nothing to compare


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, frozenset):
        return tuple(sorted(value))
    return value


def test_literal_defaults_are_the_loaders(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[[listeners]]\n[delivery]\nmaildir = "m"\n[policies.p]\n'
                    '[profiles.x]\nmode = "encrypt"\n[quarantines.q]\n'
                    '[sender_groups.g]\npolicy = "p"\n')
    config = load_config(path)
    objects: dict[str, Any] = {
        "": config, "[storage]": config.storage, "[[listeners]]": config.listeners[0],
        "[policies.NAME]": config.policies["p"], "[profiles.NAME]": config.profiles["x"],
        "[quarantines.NAME]": config.quarantines["q"], "[delivery]": config.delivery,
        "[smime]": config.smime, "[metrics]": config.metrics,
        "[sender_groups.NAME]": config.sender_groups[0],
        "[tls.outbound]": config.tls_outbound.default,
    }
    compared = 0
    for s in reference.SECTIONS:
        obj = objects.get(s.header)
        for k in s.keys:
            want = _literal(k.default)
            if obj is None or want is None or "path" in k.type or not hasattr(obj, k.name):
                continue
            assert _plain(getattr(obj, k.name)) == _plain(want), f"{s.header} {k.name}"
            compared += 1
    assert compared > 40
