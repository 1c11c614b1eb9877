"""One OpenLDAP slapd for the LDAP tests of this folder (tests/support/slapd.py), with the
groups below; tests that stop the server start their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.slapd import Slapd, slapd_missing

GROUPS = {
    "engineers": ["alice@b.example", "Bob@b.example"],
    "sales": ["carol@b.example", "alice@b.example"],
    # A member whose address holds filter metacharacters: found only when escaped right.
    "odd": ["we*rd(x)@b.example"],
}


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    why = slapd_missing()
    if why:
        pytest.skip(why)
    with Slapd(tmp_path_factory.mktemp("slapd"), GROUPS) as server:
        yield server
