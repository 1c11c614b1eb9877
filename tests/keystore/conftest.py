"""A fresh key store per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from smime.keystore import KeyStore, open_keystore

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "start-postgres.sh"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("FILTERLANG_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not any(Path(p).exists() for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL binaries not installed and FILTERLANG_TEST_POSTGRES_URL not set")
    out = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    try:
        yield env["FILTERLANG_TEST_POSTGRES_URL"]
    finally:
        data = env["FILTERLANG_TEST_POSTGRES_DIR"]
        ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
        cmd = [str(ctl), "-D", data, "stop", "-m", "immediate"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, capture_output=True, check=False)
        shutil.rmtree(Path(data).parent, ignore_errors=True)


def _fresh_postgres(base: str) -> str:
    import psycopg

    name = f"ks_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/keys.db"
    return _fresh_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[KeyStore]:
    s = open_keystore(store_url)
    yield s
    s.close()
