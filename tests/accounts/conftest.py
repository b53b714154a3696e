"""An account store on either backend, a clock the test moves, and a cheap Argon2id hasher
(the real parameters cost ~0.5 s a hash here; the store's logic is the same)."""

from __future__ import annotations

import uuid

import pytest
from argon2 import PasswordHasher

from opentranscribe_pipeline.accounts import AccountStore


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=64, parallelism=1)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pg_schema_url(postgres_url):
    """A URL into a fresh schema of the session's throwaway PostgreSQL database (a database
    per test would cost a CREATE DATABASE each)."""
    import psycopg2

    schema = f"acct_{uuid.uuid4().hex[:10]}"
    base = f"postgresql://{postgres_url['user']}@{postgres_url['host']}:{postgres_url['port']}/{postgres_url['db']}"
    conn = psycopg2.connect(base)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base}?options=-csearch_path%3D{schema}"
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "accounts.sqlite")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def store(store_url, clock):
    with AccountStore.open(store_url, clock=clock, hasher=cheap_hasher()) as opened:
        yield opened
