"""SQLite backend: one file, WAL mode, writers serialised with BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smime.errors import KeyStoreError
from smime.keystore import KeyStoreUnavailableError
from smime.keystore._sqlstore import SqlKeyStore

# Primary result codes that mean "not now" rather than "wrong SQL": BUSY, LOCKED, READONLY,
# IOERR, FULL, CANTOPEN.
_TEMPORARY = {5, 6, 8, 10, 13, 14}


def _temporary(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _TEMPORARY


class SqliteKeyStore(SqlKeyStore):
    serial = "INTEGER PRIMARY KEY"

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._path = path
        super().__init__(conn)

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return super()._q(sql, params)
        except sqlite3.OperationalError as exc:
            if not _temporary(exc):
                raise
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: sqlite3.Error) -> KeyStoreUnavailableError:
        # "database is locked" after busy_timeout, I/O errors, a vanished directory: all
        # conditions that may clear, so callers treat them as temporary.
        return KeyStoreUnavailableError(f"key store {self._path} unavailable: {exc}")

    @contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        # IMMEDIATE takes the write lock up front, so two gateway processes never interleave a
        # read-decide-write sequence (harvest governance depends on that).
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _temporary(exc):
                raise
            raise self._unavailable(exc) from None
        try:
            yield self._conn.execute
        except sqlite3.OperationalError as exc:
            self._conn.execute("ROLLBACK")
            if not _temporary(exc):
                raise
            raise self._unavailable(exc) from None
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _insert_id(self, ex: Callable[..., Any], sql: str, params: Sequence[Any]) -> int:
        return int(ex(sql, params).lastrowid)

    def _reserve_ids(self, ex: Callable[..., Any], count: int) -> list[int]:
        # Safe because BEGIN IMMEDIATE excludes every other writer until COMMIT.
        top = int(ex("SELECT coalesce(max(id), 0) FROM keys").fetchone()[0])
        return list(range(top + 1, top + 1 + count))

    def _load(self, ex: Callable[..., Any], table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def open_sqlite(path: str) -> SqliteKeyStore:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except OSError as exc:
        raise KeyStoreUnavailableError(f"cannot open key store {path}: {exc}") from None
    except sqlite3.Error as exc:
        # An unreadable file or folder (CANTOPEN, IOERR ...) may come back: temporary, as a
        # PostgreSQL server that is down; a file that is not a database is not.
        if _temporary(exc):
            raise KeyStoreUnavailableError(f"cannot open key store {path}: {exc}") from None
        raise KeyStoreError(f"cannot open key store {path}: {exc}") from None
    return SqliteKeyStore(conn, path)
