"""``opentranscribe users ...`` and the audit entries of the CLI's speaker edits: the console
script in a subprocess for ``add`` (the password through --password-stdin, never shown), the
rest through ``cli.main`` in this process."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from opentranscribe_pipeline.accounts import AccountStore, User
from opentranscribe_pipeline.accounts.locate import locate, postgres_url_of_instance
from opentranscribe_pipeline.cli.users import cli_actor, record_cli_edit

from ..conftest import OPENTRANSCRIBE, ROOT, cli_in_process, write_instance_yaml

SECRET = "Tr0ub4dor & 3 horses"


def users(home, *args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli_in_process(["users", *args], home, {"OPENTRANSCRIBE_ACCOUNTS_URL": ""})


def test_users_add_in_a_subprocess_then_list_role_passwd_remove_audit(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "OPENTRANSCRIBE_ACCOUNTS_URL": ""}
    add = [*OPENTRANSCRIBE, "users", "add", "Ada Lovelace", "--role", "editor", "--password-stdin"]
    done = subprocess.run(add, input=SECRET + "\n", cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"added Ada Lovelace (editor) to {home / 'accounts.sqlite'}"
    assert SECRET not in done.stdout + done.stderr
    with AccountStore.open_existing(str(home / "accounts.sqlite")) as store:  # the real Argon2id parameters
        assert store.sign_in("ada lovelace", SECRET, "test") == User("Ada Lovelace", "editor")
    assert users(home, "list").stdout.splitlines()[1:] == ["  editor  Ada Lovelace"]

    refused = users(
        home, "add", "ADA LOVELACE", "--role", "viewer", "--password-stdin", stdin="another pw", monkeypatch=monkeypatch
    )
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: an account named 'Ada Lovelace' exists")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal, and no --password-stdin
    refused = users(home, "add", "grace", "--role", "viewer")
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr and len(refused.stderr.splitlines()) == 1
    refused = users(
        home, "add", "grace", "--role", "viewer", "--password-stdin", stdin="short\n", monkeypatch=monkeypatch
    )
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: a password has at least 8 characters")
    assert users(home, "role", "nobody", "admin").stderr.strip() == "error: no account named 'nobody'"

    assert users(home, "role", "ada lovelace", "admin").stdout.strip() == "Ada Lovelace is now admin"
    changed = users(
        home, "passwd", "Ada Lovelace", "--password-stdin", stdin="a new secret\r\n", monkeypatch=monkeypatch
    )
    assert changed.returncode == 0 and "a new secret" not in changed.stdout + changed.stderr
    with AccountStore.open_existing(str(home / "accounts.sqlite")) as store:
        assert store.sign_in("Ada Lovelace", "a new secret", "test").role == "admin"
    assert users(home, "remove", "Ada Lovelace").returncode == 0
    audit = users(home, "audit").stdout.splitlines()
    actor = cli_actor()
    assert [line.split("  ")[1:4] for line in audit] == [
        [actor, "user.remove", "Ada Lovelace"],
        [actor, "user.passwd", "Ada Lovelace"],
        [actor, "user.role", "Ada Lovelace"],
        [actor, "user.add", "Ada Lovelace"],
    ]
    assert users(home, "audit", "--limit", "1", "--user", actor).stdout.count("\n") == 1
    assert users(home, "audit", "--user", "nobody").stdout.strip() == "no changes recorded by nobody"


def test_users_against_postgresql_named_by_accounts(tmp_path, pg_schema_url, monkeypatch):
    home = tmp_path / "home"
    added = users(
        home,
        "add",
        "grace",
        "--role",
        "viewer",
        "--password-stdin",
        "--accounts",
        pg_schema_url,
        stdin=SECRET,
        monkeypatch=monkeypatch,
    )
    assert added.returncode == 0, added.stderr
    assert "viewer  grace" in users(home, "list", "--accounts", pg_schema_url).stdout
    assert not (home / "accounts.sqlite").exists()
    unreachable = users(home, "list", "--accounts", "postgresql://nobody:hunter2@127.0.0.1:9/none")
    assert unreachable.returncode == 2 and "cannot reach the accounts database" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr and len(unreachable.stderr.splitlines()) == 1


def test_the_default_store_is_the_instances_postgresql_when_dagster_yaml_names_one(
    tmp_path, own_postgres_db, monkeypatch
):
    home = write_instance_yaml(tmp_path / "home", postgres=own_postgres_db)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("OPENTRANSCRIBE_ACCOUNTS_URL", raising=False)
    location, default = locate()
    assert default and location.kind == "postgresql" and location.target.endswith(f"/{own_postgres_db['db']}")
    with AccountStore.open() as store:
        store.record("cli:test", "speaker.name", "spk-000001")
    assert not (home / "accounts.sqlite").exists()
    # Dagster's {env: NAME} values, and a missing variable named in the error
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: {env: PGU}\n      password: {env: PGP}\n"
        "      hostname: db.example\n      db_name: dagster\n"
    )
    monkeypatch.setenv("PGU", "dagster")
    monkeypatch.setenv("PGP", "p@ss:word")
    assert (
        postgres_url_of_instance(home / "dagster.yaml") == "postgresql://dagster:p%40ss%3Aword@db.example:5432/dagster"
    )
    assert locate()[0].shown == "postgresql://dagster:***@db.example:5432/dagster"
    monkeypatch.delenv("PGP")
    with pytest.raises(Exception, match="PGP, which is not set"):
        locate()


def test_cli_speaker_edits_are_audited_only_where_a_store_exists(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("OPENTRANSCRIBE_ACCOUNTS_URL", raising=False)
    record_cli_edit("speaker.name", "spk-000001", {"name": "Grace"})
    assert not (home / "accounts.sqlite").exists()  # none is created just for that
    AccountStore.open().close()
    record_cli_edit("speaker.merge", "spk-000002", {"into": "spk-000001"})
    with AccountStore.open() as store:
        (entry,) = store.audit_log()
    assert (entry.user, entry.action, entry.target, entry.detail) == (
        cli_actor(),
        "speaker.merge",
        "spk-000002",
        {"into": "spk-000001"},
    )
    (home / "accounts.sqlite").write_bytes(b"garbage" * 1000)  # the edit stands; a warning says it was not recorded
    record_cli_edit("speaker.split", "spk-000003")
    assert "warning: the edit was not recorded in the audit log" in capsys.readouterr().err
