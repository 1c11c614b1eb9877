"""`filterlang routes test ADDRESS...` through the real command line: the [routes] entry that
matched (or the [delivery] fallback), the next hops in order (an `mx` route looked up in a real
DNS server, NSD on loopback), the TLS policy; --json; exit 1 for an address without a route, 2
for a bad address or an invalid gateway.toml (lint --config and serve --check say the same)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.nsd import NSD, Nsd
from tests.gateway.test_cli_one_gateway import cli, golden

pytestmark = pytest.mark.skipif(not Path(NSD).exists() and shutil.which("nsd") is None,
                                reason="nsd is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    with Nsd(tmp_path_factory.mktemp("routes-dns"), {
        "mx.test": ["@ IN MX 20 second", "@ IN MX 10 first", "first IN A 127.0.0.3",
                    "second IN A 127.0.0.4"],
        "nomx.test": ["@ IN MX 0 ."],  # a null MX (RFC 7505): accepts no mail
    }) as server:
        yield server


def _config(tmp: Path, nsd: Nsd, routes: str) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(f"""[storage]
data_dir = "data"
[[listeners]]
port = 2525
[delivery]
relay = "127.0.0.1:10025"
mx_port = 2526
[dns]
nameservers = ["{nsd.address}"]
timeout = 2
[tls.outbound.domains."partner.example"]
level = "verify"
match = ["mx.partner.example"]
ca_file = "ca.pem"
[routes]
{routes}""")
    (tmp / "ca.pem").write_text("(a CA file)\n")
    return cfg


ROUTES = """"partner.example" = ["[10.0.0.1]:25", "backup.example:2525", "[2001:db8::1]"]
".sub.example" = [{ host = "b.example", preference = 20 }, { host = "a.example", port = 26, preference = 10 }]
"mx.test" = "mx"
"nomx.test" = "mx"
"local.example" = "maildir:boxes"
"""


def test_routes_test_prints_each_addresses_route(tmp_path: Path, nsd: Nsd) -> None:
    cfg = _config(tmp_path, nsd, ROUTES)
    addresses = ["bob@partner.example", "x@eu.sub.example", "y@MX.test", "z@other.org",
                 "q@local.example"]
    done = cli("routes", "-c", cfg, "test", *addresses)
    assert done.returncode == 0, done.stderr
    golden("routes_test", done.stdout, tmp_path)
    as_json = cli("routes", "test", "--json", "-c", cfg, *addresses)
    assert as_json.returncode == 0, as_json.stderr
    rows = {r["address"]: r for r in json.loads(as_json.stdout)}
    assert rows["y@MX.test"]["next_hops"] == ["127.0.0.3:2526", "127.0.0.4:2526"]
    assert rows["y@MX.test"]["mx"] and rows["y@MX.test"]["route"] == "mx.test"
    assert rows["z@other.org"]["route"] == "[delivery] relay"
    assert rows["z@other.org"]["source"] == "delivery"
    assert rows["x@eu.sub.example"]["next_hops"] == ["a.example:26", "b.example:25"]
    assert rows["bob@partner.example"]["tls"]["level"] == "verify"
    assert rows["q@local.example"]["tls"] is None


def test_an_address_without_a_route_exits_1_and_a_bad_one_2(tmp_path: Path, nsd: Nsd) -> None:
    cfg = _config(tmp_path, nsd, ROUTES)
    done = cli("routes", "-c", cfg, "test", "bob@partner.example", "a@nomx.test")
    assert done.returncode == 1
    assert "556 5.1.10 domain nomx.test accepts no mail (null MX)" in done.stdout
    bad = cli("routes", "-c", cfg, "test", "bob")
    assert bad.returncode == 2 and "'bob' is not an address" in bad.stderr
    assert cli("routes", "test", "a@b.example").returncode == 2  # which gateway?


def test_a_bad_route_is_one_error_in_routes_lint_and_serve_check(tmp_path: Path, nsd: Nsd) -> None:
    cfg = _config(tmp_path, nsd, '"partner.example" = "lmtp:127.0.0.1:24"\n')
    (tmp_path / "f.filter").write_text("stamp:\n    if subject == 'x' {\n        skip-filters();\n    }\n")
    outs = [cli(*args) for args in (["routes", "-c", cfg, "test", "a@partner.example"],
                                    ["lint", "-c", cfg, tmp_path / "f.filter"], ["serve", "--check", "-c", cfg])]
    assert [o.returncode for o in outs] == [2, 2, 2], [o.stderr for o in outs]
    for o in outs:
        lines = [ln for ln in o.stderr.splitlines() if "routes." in ln]
        assert len(lines) == 1, o.stderr
        assert 'routes."partner.example": \'lmtp:127.0.0.1:24\': lmtp: next hops are not ' \
               "supported" in lines[0]


def test_serve_check_names_a_maildir_route_it_cannot_write(tmp_path: Path, nsd: Nsd) -> None:
    (tmp_path / "afile").write_text("not a folder\n")
    cfg = _config(tmp_path, nsd, '"*" = "maildir:afile/boxes"\n')
    done = cli("serve", "--check", "-c", cfg)
    assert done.returncode == 2
    assert f'routes."*": {tmp_path.resolve()}/afile/boxes cannot be created' in done.stderr, \
        done.stderr
