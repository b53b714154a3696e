"""What an account is: the roles, the records the store returns, its errors, and the rules a
name, a role and a password must meet before anything is written."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

ROLES = ("viewer", "editor", "admin")  # viewer: search, read, listen; editor: + name/merge/split; admin: + users
EDIT_ROLES = ("editor", "admin")

NAME_MAX_CHARS = 64
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 4096  # Argon2 hashes any length; this only bounds what one request may send


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_edit(self) -> bool:
        """May name, merge and split speakers."""
        return self.role in EDIT_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class AuditEntry:
    """One change: who made it, what it was, on what, when (UTC)."""

    at: datetime
    user: str
    action: str
    target: str
    detail: dict = field(default_factory=dict)


class AccountError(Exception):
    """Any refusal of the account store; the message is one line meant for the user."""


class InvalidAccount(AccountError, ValueError):
    """A name, role or password that breaks the rules (also a ValueError)."""


class AccountExists(AccountError):
    """``add_user`` with a name that is taken (names compare case-insensitively)."""


class UnknownAccount(AccountError):
    """No account of that name."""


class SignInRefused(AccountError):
    """A sign-in refused: wrong name or password (one message for both), or too many
    failures. ``retry_after_s`` is set when refused by the rate limit."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def normalize_name(name: str) -> str:
    """The name as stored: NFC, so one name typed on two keyboards is one account. Refused
    (:class:`InvalidAccount`) unless 1-64 printable characters with no space at either end.
    Any printable text is allowed: the app escapes names where it shows them."""
    if not isinstance(name, str):
        raise InvalidAccount("an account name is text")
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise InvalidAccount("an account name cannot be empty")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidAccount(f"an account name has at most {NAME_MAX_CHARS} characters")
    if not name.isprintable():
        raise InvalidAccount("an account name cannot hold control or invisible characters")
    if name != name.strip():
        raise InvalidAccount("an account name cannot begin or end with a space")
    return name


def name_key(name: str) -> str:
    """What makes two names the same account: ``Alice`` and ``alice`` are one name, so the
    audit log can never show two people who look alike."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())  # Unicode's caseless match


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidAccount(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def normalize_password(password: str) -> str:
    """NFKC (NIST SP 800-63B), so the same password typed on another system still matches;
    at least 8 characters."""
    if not isinstance(password, str):
        raise InvalidAccount("a password is text")
    password = unicodedata.normalize("NFKC", password)
    if len(password) < PASSWORD_MIN_CHARS:
        raise InvalidAccount(f"a password has at least {PASSWORD_MIN_CHARS} characters")
    if len(password) > PASSWORD_MAX_CHARS:
        raise InvalidAccount(f"a password has at most {PASSWORD_MAX_CHARS} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidAccount("a password must be valid Unicode text") from None
    return password
