"""PostgreSQL backend (psycopg 3) for several gateway hosts sharing one store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from smime.errors import KeyStoreError
from smime.keystore._sqlstore import SqlKeyStore

# Every writer takes this transaction-scoped advisory lock first: the harvest governance reads
# recent changes and then writes, which must not interleave between hosts.
_LOCK_ID = 0x6B657973  # "keys"


class PostgresKeyStore(SqlKeyStore):
    serial = "BIGSERIAL PRIMARY KEY"

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        conn = self._conn

        def ex(sql: str, params: Sequence[Any] = ()) -> Any:
            return conn.execute(self._sql(sql), tuple(params))

        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            yield ex

    def _insert_id(self, ex: Callable[..., Any], sql: str, params: Sequence[Any]) -> int:
        return int(ex(sql + " RETURNING id", params).fetchone()[0])


def open_postgres(url: str) -> PostgresKeyStore:
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise KeyStoreError(f"cannot connect to the key store at {url.split('@')[-1]}: {exc}") from None
    return PostgresKeyStore(conn)
