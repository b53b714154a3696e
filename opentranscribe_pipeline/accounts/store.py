"""The account store: users and roles, Argon2id password hashes, sessions, the sign-in rate
limit and the audit log, in SQLite or PostgreSQL (:mod:`.db`).

- Passwords: Argon2id with argon2-cffi's defaults (its ``verify`` compares in constant
  time); a hash made with older parameters is redone at the next sign-in.
- Sign-in: one message for an unknown name and a wrong password, and an unknown name costs
  a hash verification too, so neither the text nor the time tells which it was. After
  ``MAX_FAILURES`` failures for one name, or from one client, within ``WINDOW_S``, every
  attempt for that name or from that client is refused, even with the right password, until
  the window has passed (refused attempts do not extend it). A success clears the name's
  failures, never the client's. Attempts at the same moment are counted exactly.
- Sessions: an opaque ``secrets.token_urlsafe(32)``; only its SHA-256 is stored. A session
  ends when it expires (``settings.session_hours()``), is ended, its user is removed, or its
  user's password changes; a role change applies to open sessions at once.
- Audit: who, what, on what, when (UTC), newest first. Changes made through the store with
  ``actor=...`` are recorded in the same transaction as the change.

``clock`` (epoch seconds) and ``hasher`` are parameters so tests need not sleep or pay for
full-strength hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .. import settings
from .db import Database, open_database
from .locate import locate
from .model import (
    AccountError,
    AccountExists,
    AuditEntry,
    SignInRefused,
    UnknownAccount,
    User,
    check_role,
    name_key,
    normalize_name,
    normalize_password,
)

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
WRONG = "wrong name or password"
TOKEN_MAX_CHARS = 256
CLIENT_MAX_CHARS = 200
AUDIT_MAX_LIMIT = 10_000


class AccountStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time, hasher: PasswordHasher | None = None):
        self._db = db
        self._clock = clock
        self._hasher = hasher or PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 low-memory
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, clock: Callable[[], float] = time.time, hasher=None) -> AccountStore:
        """The store ``url`` names, else the default one (:mod:`.locate`); its tables are
        created if missing. :class:`AccountError` when it cannot be opened."""
        location, default = locate(url)
        if default and location.kind == "sqlite":  # the instance's folder may not be made yet (./.dagster)
            try:
                Path(location.target).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AccountError(f"cannot create the folder of {location.target}: {exc.strerror}") from None
        return cls._ready(open_database(location), clock, hasher)

    @classmethod
    def open_existing(
        cls, url: str | None = None, *, clock: Callable[[], float] = time.time, hasher=None
    ) -> AccountStore | None:
        """Like :meth:`open`, but None where no store was ever created (nothing is created)."""
        db = open_database(locate(url)[0])
        try:
            there = db.exists()
        except BaseException:
            db.close()
            raise
        if not there:
            db.close()
            return None
        return cls._ready(db, clock, hasher)  # checks the schema version; creates nothing that is there

    @classmethod
    def _ready(cls, db: Database, clock, hasher) -> AccountStore:
        try:
            db.create_schema()
        except BaseException:
            db.close()
            raise
        return cls(db, clock=clock, hasher=hasher)

    @property
    def location(self) -> str:
        """Where the store is, for messages (a PostgreSQL password hidden)."""
        return self._db.location.shown

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AccountStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _now(self) -> float:
        return float(self._clock())

    # -- users -----------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str, *, actor: str | None = None) -> User:
        name, role = normalize_name(name), check_role(role)
        digest = self._hasher.hash(normalize_password(password))
        now = self._now()
        with self._db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO accounts_users (name_key, name, role, password_hash, created_at, password_changed_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name_key) DO NOTHING",
                (name_key(name), name, role, digest, now, now),
            )
            if tx.rowcount != 1:
                taken = tx.one("SELECT name FROM accounts_users WHERE name_key = ?", (name_key(name),))
                raise AccountExists(f"an account named {taken[0] if taken else name!r} exists")
            if actor is not None:
                self._record(tx, actor, "user.add", name, {"role": role})
        return User(name, role)

    def user(self, name: str) -> User | None:
        """The account of that name (any letter case), or None."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT name, role FROM accounts_users WHERE name_key = ?", (_key_of(name),))
        return User(*row) if row else None

    def list_users(self) -> list[User]:
        with self._db.transaction() as tx:
            rows = tx.execute("SELECT name, role FROM accounts_users ORDER BY name_key")
        return [User(name, role) for name, role in rows]

    def set_role(self, name: str, role: str, *, actor: str | None = None) -> User:
        check_role(role)
        with self._db.transaction(write=True) as tx:
            user = self._existing(tx, name)
            tx.execute("UPDATE accounts_users SET role = ? WHERE name_key = ?", (role, name_key(user.name)))
            if actor is not None:
                self._record(tx, actor, "user.role", user.name, {"from": user.role, "to": role})
        return User(user.name, role)

    def set_password(self, name: str, password: str, *, actor: str | None = None) -> None:
        """A new password; every open session of the account ends."""
        digest = self._hasher.hash(normalize_password(password))
        with self._db.transaction(write=True) as tx:
            user = self._existing(tx, name)
            key = name_key(user.name)
            tx.execute(
                "UPDATE accounts_users SET password_hash = ?, password_changed_at = ? WHERE name_key = ?",
                (digest, self._now(), key),
            )
            tx.execute("DELETE FROM accounts_sessions WHERE name_key = ?", (key,))
            if actor is not None:
                self._record(tx, actor, "user.passwd", user.name)

    def remove_user(self, name: str, *, actor: str | None = None) -> None:
        with self._db.transaction(write=True) as tx:
            user = self._existing(tx, name)
            key = name_key(user.name)
            tx.execute("DELETE FROM accounts_sessions WHERE name_key = ?", (key,))
            tx.execute("DELETE FROM accounts_users WHERE name_key = ?", (key,))
            if actor is not None:
                self._record(tx, actor, "user.remove", user.name, {"role": user.role})

    @staticmethod
    def _existing(tx, name: str) -> User:
        row = tx.one("SELECT name, role FROM accounts_users WHERE name_key = ?", (_key_of(name),))
        if row is None:
            raise UnknownAccount(f"no account named {name!r}")
        return User(*row)

    # -- signing in ------------------------------------------------------------------------------
    def sign_in(self, name: str, password: str, client: str) -> User:
        """The user, when ``password`` is theirs and neither the name nor the client is
        rate-limited; else :class:`SignInRefused`.

        Each attempt is counted as a failure before its password is checked, in the same
        transaction as the check of the limit (serialised), and un-counted on success: so
        however many attempts arrive at once, no more than ``MAX_FAILURES`` passwords per
        name or client are ever tried within the window."""
        key, client = _key_of(name), str(client)[:CLIENT_MAX_CHARS]
        now = self._now()
        with self._db.transaction(write=True) as tx:
            self._db.serialize(tx)
            wait = self._locked_for(tx, key, client, now)
            if not wait:
                row = tx.one("SELECT name, role, password_hash FROM accounts_users WHERE name_key = ?", (key,))
                tx.execute(
                    "INSERT INTO accounts_sign_in_failures (name_key, client, at) VALUES (?, ?, ?)", (key, client, now)
                )
        if wait:
            raise SignInRefused(_too_many(wait), retry_after_s=wait)
        if not self._verify(row[2] if row else None, password):
            with self._db.transaction(write=True) as tx:
                tx.execute("DELETE FROM accounts_sign_in_failures WHERE at <= ?", (now - WINDOW_S,))
                wait = self._locked_for(tx, key, client, now)
            raise SignInRefused(_too_many(wait) if wait else WRONG, retry_after_s=wait)
        user_name, role, digest = row
        rehashed = self._hasher.hash(normalize_password(password)) if self._hasher.check_needs_rehash(digest) else None
        with self._db.transaction(write=True) as tx:
            tx.execute("DELETE FROM accounts_sign_in_failures WHERE name_key = ?", (key,))  # this attempt's too
            if rehashed:
                tx.execute(
                    "UPDATE accounts_users SET password_hash = ? WHERE name_key = ? AND password_hash = ?",
                    (rehashed, key, digest),
                )
        return User(user_name, role)

    def _verify(self, digest: str | None, password) -> bool:
        if not isinstance(password, str):
            password = ""
        with contextlib.suppress(ValueError):  # too short: it fails below like any wrong password, as slowly
            password = normalize_password(password)
        try:
            return self._hasher.verify(digest or self._dummy_hash(), password) and digest is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
            return False

    def _dummy_hash(self) -> str:
        """A hash to verify against for unknown names, so they take as long as known ones."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            return self._dummy

    @staticmethod
    def _locked_for(tx, key: str, client: str, now: float) -> float | None:
        """Seconds until the name and the client each have fewer than MAX_FAILURES failures in
        the window, or None when neither is locked."""
        wait = 0.0
        for column, value in (("name_key", key), ("client", client)):
            rows = tx.execute(
                f"SELECT at FROM accounts_sign_in_failures WHERE {column} = ? AND at > ? ORDER BY at DESC LIMIT ?",
                (value, now - WINDOW_S, MAX_FAILURES),
            )
            if len(rows) >= MAX_FAILURES:  # locked until the oldest of the last MAX_FAILURES leaves the window
                wait = max(wait, rows[-1][0] + WINDOW_S - now)
        return wait if wait > 0 else None

    # -- sessions --------------------------------------------------------------------------------
    def create_session(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        now = self._now()
        with self._db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO accounts_sessions (token_sha256, name_key, created_at, expires_at)"
                " SELECT ?, name_key, ?, ? FROM accounts_users WHERE name_key = ?",
                (_digest(token), now, now + settings.session_hours() * 3600.0, name_key(user.name)),
            )
            if tx.rowcount != 1:
                raise UnknownAccount(f"no account named {user.name!r}")
            tx.execute("DELETE FROM accounts_sessions WHERE expires_at <= ?", (now,))
        return token

    def session_user(self, token: str | None) -> User | None:
        """The user of a live session, or None (no token, unknown, expired, user removed)."""
        if not isinstance(token, str) or not token or len(token) > TOKEN_MAX_CHARS:
            return None
        with self._db.transaction() as tx:
            row = tx.one(
                "SELECT u.name, u.role FROM accounts_sessions s JOIN accounts_users u ON u.name_key = s.name_key"
                " WHERE s.token_sha256 = ? AND s.expires_at > ?",
                (_digest(token), self._now()),
            )
        return User(*row) if row else None

    def end_session(self, token: str) -> None:
        if not isinstance(token, str) or not token or len(token) > TOKEN_MAX_CHARS:
            return
        with self._db.transaction(write=True) as tx:
            tx.execute("DELETE FROM accounts_sessions WHERE token_sha256 = ?", (_digest(token),))

    # -- audit -----------------------------------------------------------------------------------
    def record(self, user: str, action: str, target: str, detail: dict | None = None) -> None:
        """One change in the audit log: ``user`` did ``action`` to ``target`` (now, UTC)."""
        with self._db.transaction(write=True) as tx:
            self._record(tx, user, action, target, detail)

    def _record(self, tx, user: str, action: str, target: str, detail: dict | None = None) -> None:
        at = datetime.fromtimestamp(self._now(), UTC).isoformat(timespec="microseconds")
        text = json.dumps(detail or {}, sort_keys=True, ensure_ascii=False, default=str)
        tx.execute(
            "INSERT INTO accounts_audit (at, user_name, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (at, str(user), str(action), str(target), text),
        )

    def audit_log(self, limit: int = 100, user: str | None = None) -> list[AuditEntry]:
        """The latest changes, newest (last recorded) first; only ``user``'s when given."""
        limit = max(1, min(int(limit), AUDIT_MAX_LIMIT))
        sql = "SELECT at, user_name, action, target, detail FROM accounts_audit"
        params: tuple = ()
        if user is not None:
            sql, params = sql + " WHERE user_name = ?", (user,)
        with self._db.transaction() as tx:
            rows = tx.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            AuditEntry(datetime.fromisoformat(at), who, what, on, json.loads(detail))
            for at, who, what, on, detail in rows
        ]


def _key_of(name) -> str:
    """The lookup key of a name as typed (not validated: an impossible name finds nothing)."""
    return name_key(str(name)[:200])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _too_many(wait: float) -> str:
    minutes = max(1, round(wait / 60))
    return f"too many failed sign-ins: try again in {minutes} minute{'s' if minutes != 1 else ''}"
