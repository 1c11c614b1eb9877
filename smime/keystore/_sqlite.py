"""SQLite backend: one file, WAL mode, writers serialised with BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smime.errors import KeyStoreError
from smime.keystore._sqlstore import SqlKeyStore


class SqliteKeyStore(SqlKeyStore):
    serial = "INTEGER PRIMARY KEY"

    @contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        # IMMEDIATE takes the write lock up front, so two gateway processes never interleave a
        # read-decide-write sequence (harvest governance depends on that).
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn.execute
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _insert_id(self, ex: Callable[..., Any], sql: str, params: Sequence[Any]) -> int:
        return int(ex(sql, params).lastrowid)


def open_sqlite(path: str) -> SqliteKeyStore:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except (OSError, sqlite3.Error) as exc:
        raise KeyStoreError(f"cannot open key store {path}: {exc}") from None
    return SqliteKeyStore(conn)
