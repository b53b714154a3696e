"""``opentranscribe users add|list|role|passwd|remove|audit``: the review app's accounts
(:mod:`..accounts`), kept where the app reads them: ``--accounts URL``, else
``OPENTRANSCRIBE_ACCOUNTS_URL``, else the Dagster instance's PostgreSQL, else
``accounts.sqlite`` beside the instance.

A password is asked twice on a terminal (never echoed); without one, ``--password-stdin``
reads it from standard input (one trailing newline dropped). It is never printed or logged.
Every change is recorded in the audit log as ``cli:<OS user>``.

Exit status (:mod:`.common`): 0 done; 2 a refusal (unknown or taken name, bad role or
password, no password given, a store that cannot be opened), with one line saying why.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys

from .. import settings
from .common import EXIT_OK, EXIT_USAGE, dagster_home

PASSWORD_STDIN_MAX = 8192


def cli_actor() -> str:
    """Who the audit log names for a change made from this terminal: ``cli:<OS user>``."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry (a container's arbitrary uid)
        who = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{who}"


def cmd_users(args) -> int:
    from ..accounts import AccountError, AccountStore

    try:
        password = read_new_password(args) if args.action in ("add", "passwd") else None
        if not (args.accounts or settings.accounts_url()):
            dagster_home()  # the instance folder every command uses (./.dagster seeded with ./dagster.yaml)
        with AccountStore.open(args.accounts) as store:
            return ACTIONS[args.action](args, store, password)
    except (AccountError, PasswordNotGiven) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


class PasswordNotGiven(Exception):
    pass


def read_new_password(args) -> str:
    """From standard input with ``--password-stdin``, else asked twice on the terminal."""
    if args.password_stdin:
        text = sys.stdin.read(PASSWORD_STDIN_MAX + 2)
        if len(text) > PASSWORD_STDIN_MAX:
            raise PasswordNotGiven("the password on standard input is too long")
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise PasswordNotGiven("no password on standard input")
        return text
    if not sys.stdin.isatty():
        raise PasswordNotGiven("no terminal to ask for the password: pass --password-stdin and write it to stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise PasswordNotGiven("the two passwords differ; nothing changed")
    return first


def users_add(args, store, password) -> int:
    user = store.add_user(args.name, password, args.role, actor=cli_actor())
    print(f"added {user.name} ({user.role}) to {store.location}")
    return EXIT_OK


def users_list(args, store, _password) -> int:
    users = store.list_users()
    print(f"{len(users)} account(s) in {store.location}")
    for user in users:
        print(f"  {user.role:7s} {user.name}")
    return EXIT_OK


def users_role(args, store, _password) -> int:
    if not args.role_value:
        print("error: usage: opentranscribe users role NAME ROLE", file=sys.stderr)
        return EXIT_USAGE
    user = store.set_role(args.name, args.role_value, actor=cli_actor())
    print(f"{user.name} is now {user.role}")
    return EXIT_OK


def users_passwd(args, store, password) -> int:
    store.set_password(args.name, password, actor=cli_actor())
    print(f"new password for {store.user(args.name).name}; their open sessions have ended")
    return EXIT_OK


def users_remove(args, store, _password) -> int:
    store.remove_user(args.name, actor=cli_actor())
    print(f"removed {args.name}")
    return EXIT_OK


def users_audit(args, store, _password) -> int:
    entries = store.audit_log(limit=args.limit, user=args.user)
    for entry in entries:
        detail = " ".join(f"{k}={v}" for k, v in sorted(entry.detail.items()))
        line = f"{entry.at:%Y-%m-%d %H:%M:%S}Z  {entry.user}  {entry.action}  {entry.target}  {detail}".rstrip()
        print(printable(line))
    if not entries:
        print("no changes recorded" + (f" by {args.user}" if args.user else ""))
    return EXIT_OK


def printable(text: str) -> str:
    """``text`` with any control character shown escaped (what the app recorded is not
    checked here, and a terminal must not run escape sequences from the log)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


ACTIONS = {
    "add": users_add,
    "list": users_list,
    "role": users_role,
    "passwd": users_passwd,
    "remove": users_remove,
    "audit": users_audit,
}


def record_cli_edit(action: str, target: str, detail: dict | None = None) -> None:
    """An edit made by another command (``speakers name|merge|split``) in the audit log, as
    ``cli:<OS user>``, when an account store exists (none is created for it). A failure to
    record is a warning: the edit itself is already committed."""
    from ..accounts import AccountError, AccountStore

    try:
        store = AccountStore.open_existing()
        if store is None:
            return
        with store:
            store.record(cli_actor(), action, target, detail)
    except (AccountError, OSError, ValueError) as exc:
        logging.getLogger(__name__).debug("audit record failed", exc_info=True)
        print(f"warning: the edit was not recorded in the audit log: {exc}", file=sys.stderr)


def add_users_command(sub) -> None:
    up = sub.add_parser("users", help="the review app's accounts: add, list, role, passwd, remove, audit")
    actions = up.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_: str, with_name: bool = True):
        p = actions.add_parser(name, help=help_)
        if with_name:
            p.add_argument("name", help="account name")
        p.add_argument("--accounts", help="the store: postgresql://... or a SQLite file (default: beside the instance)")
        p.add_argument("-v", "--verbose", action="store_true")
        p.set_defaults(func=cmd_users)
        return p

    from ..accounts import ROLES

    add = action("add", "create an account")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--password-stdin", dest="password_stdin", action="store_true", help="read the password from stdin"
    )
    action("list", "list the accounts", with_name=False)
    role = action("role", "change an account's role")
    role.add_argument("role_value", metavar="ROLE", choices=ROLES)
    passwd = action("passwd", "set a new password (ends the account's sessions)")
    passwd.add_argument(
        "--password-stdin", dest="password_stdin", action="store_true", help="read the password from stdin"
    )
    action("remove", "remove an account (and its sessions)")
    audit = action("audit", "the latest changes, newest first", with_name=False)
    audit.add_argument("--limit", type=int, default=50, help="entries to show (default 50)")
    audit.add_argument("--user", help="only this user's changes (an account name, or cli:<OS user>)")
