"""Accounts of the review app: users with roles, Argon2id password hashes, sessions, the
sign-in rate limit and the audit log, stored beside the Dagster instance (SQLite) or in its
PostgreSQL. Dagster-free. See ``docs/accounts.md``."""

from .model import (
    ROLES,
    AccountError,
    AccountExists,
    AuditEntry,
    InvalidAccount,
    SignInRefused,
    UnknownAccount,
    User,
)
from .store import AccountStore

__all__ = [
    "ROLES",
    "AccountError",
    "AccountExists",
    "AccountStore",
    "AuditEntry",
    "InvalidAccount",
    "SignInRefused",
    "UnknownAccount",
    "User",
]
