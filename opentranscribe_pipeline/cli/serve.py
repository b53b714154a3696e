"""``opentranscribe serve``: the review app (:mod:`..app`) over a warehouse, run by uvicorn."""

from __future__ import annotations

import os
import sys

from .common import EXIT_OK, EXIT_USAGE, add_verbose, open_warehouse


def cmd_serve(args) -> int:
    """Open the warehouse and the accounts store (each refusal one line, exit 2), then serve."""
    from ..accounts import AccountError, AccountStore
    from ..storage import StorageError

    wh = open_warehouse(args.warehouse)
    try:
        if wh.is_local and not os.path.isdir(wh.root):
            raise StorageError(f"no warehouse at {wh.root_uri} (run `opentranscribe process` first)")
        wh.check_reachable()
    except StorageError as exc:
        print(f"error: cannot reach the warehouse: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = AccountStore.open(args.accounts)
    except AccountError as exc:
        print(f"error: cannot open the accounts store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not store.list_users():
        print("warning: no accounts yet: add one with `opentranscribe users add NAME --role editor`", file=sys.stderr)
    import uvicorn

    from ..app import create_app

    app = create_app(wh, store, secure_cookies=args.secure_cookies)
    print(f"review app for {wh.root_uri} on http://{args.host}:{args.port} (accounts: {store.location})")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        # the client address (sign-in rate limit, audit) from X-Forwarded-For, only when the
        # request comes from a proxy named here
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return EXIT_OK


def add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="the review app: search, listen and name speakers in a browser")
    s.add_argument("--warehouse", required=True, help="local path or s3://bucket/prefix")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    s.add_argument(
        "--accounts",
        help="accounts store: a SQLite path or postgresql://... (default: OPENTRANSCRIBE_ACCOUNTS_URL, "
        "the Dagster instance's PostgreSQL, or accounts.sqlite in DAGSTER_HOME)",
    )
    s.add_argument(
        "--secure-cookies",
        dest="secure_cookies",
        action="store_true",
        help="mark the session cookie Secure (serve behind HTTPS)",
    )
    s.add_argument(
        "--forwarded-allow-ips",
        dest="forwarded_allow_ips",
        default="127.0.0.1",
        help="reverse proxies whose X-Forwarded-For names the client (comma-separated addresses or '*'; "
        "default 127.0.0.1): the sign-in rate limit then counts each real client, not the proxy",
    )
    add_verbose(s)
    s.set_defaults(func=cmd_serve)
