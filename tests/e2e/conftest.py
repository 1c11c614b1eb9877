"""Session fixtures for the end-to-end scenarios: certificates are made once per run (RSA key
generation is the slowest step of setting a scenario up)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .harness import CA, FILTERLANG, Identity, Sink


class Identities:
    """The people and organisations of the scenarios.

    - `ca`: a public CA that everyone here trusts and that signed the requests below.
    - `a`, `b`: the gateway certificates of Org A (a.example) and Org B (b.example), as each
      operator makes them with `filterlang cert create`: the domain and the users it signs for.
    - `carol`: a partner's own S/MIME client (carol@partner.example), played by openssl.
    A fourth party, dave@partner.example, has no certificate anywhere.
    """

    def __init__(self, folder: Path) -> None:
        self.ca = CA(folder, "Example Public CA")
        specs = {
            "a": ("a.example", ["alice@a.example", "postmaster@a.example"], ["a.example"]),
            "b": ("b.example", ["bob@b.example", "postmaster@b.example"], ["b.example"]),
            "carol": ("Carol Partner", ["carol@partner.example"], []),
        }
        # Key generation runs in the filterlang processes; threads only wait for them.
        with ThreadPoolExecutor(len(specs)) as pool:
            made = {name: pool.submit(Identity, folder, name, cn, emails=emails, domains=domains,
                                      ca=self.ca)
                    for name, (cn, emails, domains) in specs.items()}
        self.a, self.b, self.carol = (made[n].result() for n in ("a", "b", "carol"))


@pytest.fixture(scope="session")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    if not FILTERLANG.exists():
        pytest.skip(f"{FILTERLANG} is not installed (make test installs it)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (the partner's S/MIME client); .ci/run installs it")
    return Identities(tmp_path_factory.mktemp("identities"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A running next hop for one test."""
    s = Sink().start()
    yield s
    s.stop()
