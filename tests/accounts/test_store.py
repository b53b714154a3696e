"""The account store on SQLite and on a real PostgreSQL: users and roles, the sign-in rate
limit, session expiry and the audit log, with the clock moved by the test (no sleeping)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from opentranscribe_pipeline.accounts import (
    ROLES,
    AccountError,
    AccountExists,
    AccountStore,
    InvalidAccount,
    SignInRefused,
    UnknownAccount,
    User,
)
from opentranscribe_pipeline.accounts.store import MAX_FAILURES, WINDOW_S, WRONG

from .conftest import cheap_hasher

PASSWORD = "correct horse battery"


def test_users_roles_and_names_compare_without_letter_case(store):
    ada = store.add_user("Ada Lovelace", PASSWORD, "editor")
    assert ada == User("Ada Lovelace", "editor") and ada.can_edit and not ada.is_admin
    store.add_user("<script>alert(1)</script>", PASSWORD, "viewer")  # any printable text; the app escapes it
    with pytest.raises(AccountExists, match="Ada Lovelace"):
        store.add_user("ADA LOVELACE", "another password", "viewer")
    assert store.set_role("ada lovelace", "admin") == User("Ada Lovelace", "admin")
    assert {u.name: u.role for u in store.list_users()} == {
        "Ada Lovelace": "admin",
        "<script>alert(1)</script>": "viewer",
    }
    assert not User("x", "viewer").can_edit and ROLES == ("viewer", "editor", "admin")
    store.remove_user("Ada Lovelace")
    assert store.user("Ada Lovelace") is None
    for bad in (lambda: store.set_role("nobody", "viewer"), lambda: store.remove_user("nobody")):
        with pytest.raises(UnknownAccount):
            bad()
    with pytest.raises(ValueError, match="role"):
        store.add_user("eve", PASSWORD, "root")
    with pytest.raises(ValueError, match="at least 8"):
        store.add_user("eve", "short", "viewer")
    for name in ("", " eve", "x" * 65, "line\nbreak", "bidi\u202eoverride", "bell\x07"):
        with pytest.raises(InvalidAccount):
            store.add_user(name, PASSWORD, "viewer")
    assert [u.name for u in store.list_users()] == ["<script>alert(1)</script>"]


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(store):
    store.add_user("ada", PASSWORD, "viewer")
    assert store.sign_in("ADA", PASSWORD, "10.0.0.1") == User("ada", "viewer")
    refusals = []
    for name, password in (("ada", "wrong password"), ("nobody", PASSWORD), ("ada", "")):
        with pytest.raises(SignInRefused) as caught:
            store.sign_in(name, password, "10.0.0.1")
        refusals.append((str(caught.value), caught.value.retry_after_s))
    assert refusals == [(WRONG, None)] * 3


def test_five_failures_for_a_name_lock_it_from_every_client_until_the_window_passes(store, clock):
    store.add_user("ada", PASSWORD, "editor")
    for attempt in range(MAX_FAILURES):
        with pytest.raises(SignInRefused) as caught:
            store.sign_in("ada", f"guess {attempt}", f"10.0.0.{attempt}")  # five clients, one name
        clock.advance(10)
    assert caught.value.retry_after_s == pytest.approx(WINDOW_S - 40)  # the fifth failure locks
    with pytest.raises(SignInRefused, match="too many") as caught:  # the right password, a new client
        store.sign_in("ada", PASSWORD, "192.168.1.1")
    assert caught.value.retry_after_s == pytest.approx(WINDOW_S - 50)
    clock.advance(WINDOW_S - 60)  # refused attempts do not extend the lock
    with pytest.raises(SignInRefused, match="too many"):
        store.sign_in("ada", PASSWORD, "192.168.1.1")
    clock.advance(11)  # the first failure has left the window: four remain
    assert store.sign_in("ada", PASSWORD, "192.168.1.1").name == "ada"
    for _ in range(MAX_FAILURES - 1):  # a success cleared the name's failures
        with pytest.raises(SignInRefused, match=WRONG):
            store.sign_in("ada", "guess", "192.168.1.1")
    assert store.sign_in("ada", PASSWORD, "172.16.0.1").name == "ada"


def test_five_failures_from_a_client_lock_that_client_for_every_name(store, clock):
    store.add_user("ada", PASSWORD, "viewer")
    for attempt in range(MAX_FAILURES):
        with pytest.raises(SignInRefused):
            store.sign_in(f"user{attempt}", "guess guess", "10.9.9.9")
    with pytest.raises(SignInRefused, match="too many") as caught:
        store.sign_in("ada", PASSWORD, "10.9.9.9")
    assert 0 < caught.value.retry_after_s <= WINDOW_S
    assert store.sign_in("ada", PASSWORD, "10.0.0.2").name == "ada"  # others are not held back
    with pytest.raises(SignInRefused, match="too many"):  # and ada's success did not free the client
        store.sign_in("ada", PASSWORD, "10.9.9.9")
    clock.advance(WINDOW_S + 1)
    assert store.sign_in("ada", PASSWORD, "10.9.9.9").name == "ada"


def test_sessions_expire_end_and_follow_the_account(store, clock, monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_SESSION_HOURS", "2")
    ada = store.add_user("ada", PASSWORD, "viewer")
    token = store.create_session(ada)
    assert len(token) >= 43 and store.session_user(token) == ada
    clock.advance(2 * 3600 - 1)
    assert store.session_user(token) == ada
    clock.advance(2)
    assert store.session_user(token) is None  # expired
    for bad in (None, "", "x" * 10_000, token + "x"):
        assert store.session_user(bad) is None
    token = store.create_session(ada)
    store.set_role("ada", "editor")  # a role change applies to the open session at once
    assert store.session_user(token) == User("ada", "editor")
    store.end_session(token)
    assert store.session_user(token) is None
    token = store.create_session(ada)
    store.set_password("ada", "a new password")  # a new password ends every session
    assert store.session_user(token) is None
    token = store.create_session(ada)
    store.remove_user("ada")
    assert store.session_user(token) is None
    with pytest.raises(UnknownAccount):
        store.create_session(ada)


def test_the_audit_log_is_newest_first_with_who_what_when(store, clock):
    store.add_user("ada", PASSWORD, "editor", actor="cli:root")
    clock.advance(1.5)
    store.record("ada", "speaker.name", "spk-000001", {"name": "Grace <Hopper>", "asked": "spk-000001"})
    store.record("ada", "speaker.merge", "spk-000002", {"into": "spk-000001"})  # same instant: kept in order
    clock.advance(60)
    store.set_role("ada", "viewer", actor="cli:root")
    log = store.audit_log()
    assert [(e.user, e.action, e.target) for e in log] == [
        ("cli:root", "user.role", "ada"),
        ("ada", "speaker.merge", "spk-000002"),
        ("ada", "speaker.name", "spk-000001"),
        ("cli:root", "user.add", "ada"),
    ]
    assert log[0].at == datetime.fromtimestamp(clock.now, UTC) and log[0].detail == {"from": "editor", "to": "viewer"}
    assert log[2].detail == {"name": "Grace <Hopper>", "asked": "spk-000001"}
    assert [e.action for e in store.audit_log(user="ada")] == ["speaker.merge", "speaker.name"]
    assert [e.action for e in store.audit_log(limit=1)] == ["user.role"]


def test_only_the_sha256_of_a_session_token_is_stored(tmp_path, clock):
    path = tmp_path / "accounts.sqlite"
    with AccountStore.open(str(path), clock=clock, hasher=cheap_hasher()) as store:
        token = store.create_session(store.add_user("ada", PASSWORD, "viewer"))
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT token_sha256 FROM accounts_sessions").fetchall()
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM accounts_users")]
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert token.encode() not in path.read_bytes() and hashes[0].startswith("$argon2id$")
    assert path.stat().st_mode & 0o077 == 0  # owner only: it holds password hashes


def test_a_hash_made_with_older_parameters_is_redone_at_sign_in(store_url, clock):
    with AccountStore.open(store_url, clock=clock, hasher=cheap_hasher(time_cost=1)) as old:
        old.add_user("ada", PASSWORD, "viewer")
    newer = cheap_hasher(time_cost=2)
    with AccountStore.open(store_url, clock=clock, hasher=newer) as store:
        assert store.sign_in("ada", PASSWORD, "c") == User("ada", "viewer")
        with store._db.transaction() as tx:  # the stored hash, read back through the store's own connection
            (stored,) = tx.one("SELECT password_hash FROM accounts_users")
        assert "t=2" in stored and not newer.check_needs_rehash(stored)
        assert store.sign_in("ada", PASSWORD, "c").name == "ada"


def test_open_existing_creates_nothing_and_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "accounts.sqlite"
    assert AccountStore.open_existing(str(path)) is None and not path.exists()
    AccountStore.open(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE accounts_schema SET version = 99")
    with pytest.raises(AccountError, match="schema version 99, newer"):
        AccountStore.open_existing(str(path))
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AccountError, match="accounts store"):
        AccountStore.open(str(path))
    with pytest.raises(AccountError, match="does not exist"):
        AccountStore.open(str(tmp_path / "missing" / "accounts.sqlite"))


def test_concurrent_sign_ins_and_sessions_from_threads(store):
    store.add_user("ada", PASSWORD, "viewer")
    seen, errors = [], []

    def worker(n: int) -> None:
        try:
            for _ in range(5):
                token = store.create_session(store.sign_in("ada", PASSWORD, f"client {n}"))
                seen.append(store.session_user(token))
                store.end_session(token)
        except Exception as exc:  # reported below with the others
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and seen == [User("ada", "viewer")] * 20


def test_attempts_at_the_same_moment_try_no_more_than_the_limit_of_passwords(store):
    store.add_user("ada", PASSWORD, "viewer")
    start, refusals = threading.Barrier(12), []

    def attempt() -> None:
        start.wait()
        try:
            store.sign_in("ada", "a wrong guess", "10.1.1.1")
        except SignInRefused as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refusals) == 12
    with store._db.transaction() as tx:  # each password tried left one failure; the rest were turned away
        assert tx.one("SELECT COUNT(*) FROM accounts_sign_in_failures")[0] == MAX_FAILURES
    assert sum(r == WRONG for r in refusals) <= MAX_FAILURES - 1 and sum("too many" in r for r in refusals) >= 7
