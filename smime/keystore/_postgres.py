"""PostgreSQL backend (psycopg 3) for several gateway hosts sharing one store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from smime.errors import KeyStoreError
from smime.keystore import KeyStoreUnavailableError
from smime.keystore._sqlstore import SqlKeyStore

# Every writer takes this transaction-scoped advisory lock first: the harvest governance reads
# recent changes and then writes, which must not interleave between hosts.
_LOCK_ID = 0x6B657973  # "keys"
# Connection-level failures: the server is down, restarting, or the network dropped. SQL
# errors (constraint violations, bad statements) are not in this list and propagate as bugs.
_DOWN = (psycopg.OperationalError, psycopg.InterfaceError)


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except _DOWN as exc:
        raise KeyStoreUnavailableError(f"cannot connect to the key store at {_where(url)}: {exc}") from None


def _where(url: str) -> str:
    return url.split("@")[-1]  # never the password


class PostgresKeyStore(SqlKeyStore):
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._url = url
        super().__init__(conn)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _live(self) -> psycopg.Connection[Any]:
        # After the server went away the old connection is unusable; the next call (not the
        # failed one) reconnects, so a database restart heals without restarting the gateway.
        if self._conn.closed or self._conn.broken:
            self._conn = _connect(self._url)
        return self._conn

    def _unavailable(self, exc: Exception) -> KeyStoreUnavailableError:
        return KeyStoreUnavailableError(f"key store at {_where(self._url)} unavailable: {exc}")

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(self._live().execute(self._sql(sql), tuple(params)).fetchall())
        except _DOWN as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        conn = self._live()

        def ex(sql: str, params: Sequence[Any] = ()) -> Any:
            return conn.execute(self._sql(sql), tuple(params))

        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                yield ex
        except _DOWN as exc:
            raise self._unavailable(exc) from None

    def _insert_id(self, ex: Callable[..., Any], sql: str, params: Sequence[Any]) -> int:
        return int(ex(sql + " RETURNING id", params).fetchone()[0])

    def _reserve_ids(self, ex: Callable[..., Any], count: int) -> list[int]:
        rows = ex("SELECT nextval(pg_get_serial_sequence('keys', 'id')) FROM generate_series(1, ?)", (count,))
        return [int(r[0]) for r in rows.fetchall()]

    def _load(self, ex: Callable[..., Any], table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # COPY streams the whole batch in one round trip instead of one INSERT per row.
        with self._conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


    def _after_load(self, ex: Callable[..., Any]) -> None:
        # Without fresh statistics the planner still believes the tables are small and joins
        # key_names to keys by scanning: 143 lookups/s at 300k keys instead of thousands.
        # Autovacuum would catch up eventually; an import should not leave that window.
        ex("ANALYZE keys")
        ex("ANALYZE key_names")


def open_postgres(url: str) -> PostgresKeyStore:
    try:
        return PostgresKeyStore(_connect(url), url)
    except KeyStoreUnavailableError:
        raise
    except psycopg.Error as exc:
        raise KeyStoreError(f"cannot open the key store at {_where(url)}: {exc}") from None
