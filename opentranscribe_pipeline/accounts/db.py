"""The two databases the accounts live in, behind one small interface: a transaction that
runs parameterised SQL written once with ``?`` placeholders (``%s`` for psycopg2).

- SQLite: one connection per transaction (safe from any thread), writes under
  ``BEGIN IMMEDIATE`` so two processes queue on the file lock instead of failing; the file is
  created readable by its owner only (it holds password hashes).
- PostgreSQL (psycopg2): a few idle connections kept for reuse under a lock, checked with
  ``SELECT 1`` when they sat idle, so a server restart costs one reconnect, not an error.

The schema is created on open, under a lock (``BEGIN IMMEDIATE`` / an advisory lock), and
carries a version: a store written by a newer program is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .locate import Location
from .model import AccountError

SCHEMA_VERSION = 1
_ADVISORY_LOCK = 0x07_AC_C0_01  # any constant: serialises schema creation between processes
_SIGN_IN_LOCK = _ADVISORY_LOCK + 1
_IDLE_CHECK_S = 30.0
_KEEP_IDLE = 4

_TABLES = (
    "CREATE TABLE IF NOT EXISTS accounts_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS accounts_users (
        name_key TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, password_changed_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS accounts_sessions (
        token_sha256 TEXT PRIMARY KEY,
        name_key TEXT NOT NULL REFERENCES accounts_users (name_key) ON DELETE CASCADE,
        created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS accounts_sessions_user ON accounts_sessions (name_key)",
    "CREATE INDEX IF NOT EXISTS accounts_sessions_expiry ON accounts_sessions (expires_at)",
    """CREATE TABLE IF NOT EXISTS accounts_sign_in_failures (
        id {serial}, name_key TEXT NOT NULL, client TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS accounts_failures_name ON accounts_sign_in_failures (name_key, at)",
    "CREATE INDEX IF NOT EXISTS accounts_failures_client ON accounts_sign_in_failures (client, at)",
    """CREATE TABLE IF NOT EXISTS accounts_audit (
        id {serial}, at TEXT NOT NULL, user_name TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS accounts_audit_user ON accounts_audit (user_name, id)",
)
_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}


class Tx:
    """One open transaction: ``execute`` returns the rows (a list of tuples; empty for writes)."""

    def __init__(self, cursor, paramstyle: str):
        self._cursor = cursor
        self._pg = paramstyle == "format"

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        self._cursor.execute(sql.replace("?", "%s") if self._pg else sql, params)
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class Database:
    kind: str
    location: Location

    def transaction(self, write: bool = False) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether a store was created here (without creating one)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def serialize(self, tx: Tx) -> None:
        """Hold, until ``tx`` ends, the lock every sign-in's check of the limit takes (SQLite:
        the write lock ``BEGIN IMMEDIATE`` already holds)."""

    def create_schema(self) -> None:
        with self.transaction(write=True) as tx:
            if self.kind == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK,))
            for ddl in _TABLES:
                tx.execute(ddl.format(serial=_SERIAL[self.kind]))
            row = tx.one("SELECT MAX(version) FROM accounts_schema")
            version = row[0] if row else None
            if version is None:
                tx.execute("INSERT INTO accounts_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise AccountError(
                    f"the accounts store {self.location.shown} has schema version {version}, newer than this "
                    f"program's {SCHEMA_VERSION}: upgrade opentranscribe"
                )


def open_database(location: Location) -> Database:
    return SQLiteDatabase(location) if location.kind == "sqlite" else PostgresDatabase(location)


class SQLiteDatabase(Database):
    kind = "sqlite"

    def __init__(self, location: Location):
        self.location = location
        self.path = Path(location.target)

    def exists(self) -> bool:
        return self.path.is_file()

    def create_schema(self) -> None:
        if not self.path.parent.is_dir():
            raise AccountError(
                f"cannot create the accounts store {self.path}: folder {self.path.parent} does not exist"
            )
        try:  # owner-only from the first byte: it holds password hashes (SQLite's journals copy the mode)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise AccountError(f"cannot create the accounts store {self.path}: {exc.strerror}") from None
        super().create_schema()

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise AccountError(f"cannot open the accounts store {self.path}: {exc}") from None
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield Tx(conn.cursor(), "qmark")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:  # locked past the timeout, disk full, read-only, not SQLite
            raise AccountError(f"the accounts store {self.path} refused: {exc}") from None
        finally:
            conn.close()


class PostgresDatabase(Database):
    kind = "postgresql"

    def __init__(self, location: Location):
        self.location = location
        self._idle: list[tuple[object, float]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list = []  # a forked child's copies of the parent's connections

    def _connect(self):
        import psycopg2

        try:
            return psycopg2.connect(
                self.location.target, connect_timeout=10, application_name="opentranscribe-accounts"
            )
        except psycopg2.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AccountError(f"cannot reach the accounts database {self.location.shown}: {first}") from None

    def _checkout(self):
        import psycopg2

        while True:
            with self._lock:
                if self._pid != os.getpid():  # forked (a pre-forking server): the sockets are the parent's;
                    self._inherited += self._idle  # closing them here would end the parent's sessions
                    self._idle, self._pid = [], os.getpid()
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if conn.closed:
                continue
            if time.monotonic() - since < _IDLE_CHECK_S:
                return conn
            try:  # sat idle: the server may have restarted or cut it
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.rollback()
                return conn
            except psycopg2.Error:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
        return self._connect()

    def _checkin(self, conn, healthy: bool) -> None:
        with self._lock:
            if healthy and not conn.closed and len(self._idle) < _KEEP_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        with contextlib.suppress(Exception):
            conn.close()

    def exists(self) -> bool:
        with self.transaction() as tx:
            return tx.one("SELECT to_regclass('accounts_schema')")[0] is not None

    def serialize(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_SIGN_IN_LOCK,))

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        import psycopg2

        conn = self._checkout()
        try:
            with conn.cursor() as cur:
                try:
                    yield Tx(cur, "format")
                except BaseException:
                    with contextlib.suppress(psycopg2.Error):  # a dead connection: the error raised says why
                        conn.rollback()
                    raise
                conn.commit()
        except psycopg2.Error as exc:  # cut off, no privilege, no schema to create in: one line saying so
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AccountError(f"the accounts database {self.location.shown} refused: {first}") from None
        finally:  # reused only when it is back outside any transaction
            idle = psycopg2.extensions.TRANSACTION_STATUS_IDLE
            self._checkin(conn, not conn.closed and conn.get_transaction_status() == idle)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            with contextlib.suppress(Exception):
                conn.close()
