"""One NSD for the authentication tests of this folder, serving tests/auth/zones.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from attrs import frozen

from tests.auth.zones import rsa_key, zones
from tests.e2e.nsd import NSD, Nsd


@frozen
class Dns:
    nsd: Nsd
    good_pem: bytes
    wrong_pem: bytes


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    if not shutil.which(NSD) and not Path(NSD).exists():
        pytest.skip("nsd is not installed (apt-get install nsd; .ci/run installs it)")
    good_pem, good = rsa_key()
    wrong_pem, wrong = rsa_key()
    with Nsd(tmp_path_factory.mktemp("nsd"), zones(good, wrong),
             broken_zones=("broken.test",)) as server:
        yield Dns(server, good_pem, wrong_pem)
