"""The review app under test: a real uvicorn server on a free port over a copy of the session's
processed warehouse, a real accounts store (SQLite) with a viewer and an editor, and a small
HTTP client (stdlib only: no redirects followed, cookies kept) to talk to it."""

from __future__ import annotations

import http.cookies
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``create_app(...)`` run by uvicorn in a thread until :meth:`stop`."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class Client:
    """One browser-like user: a cookie jar, no redirects followed."""

    def __init__(self, base: str):
        self.base = base
        self.cookies: dict[str, str] = {}
        self.opener = urllib.request.build_opener(_NoRedirect())

    def request(self, method: str, path: str, *, form=None, body=None, headers=None) -> Answer:
        data, hdrs = None, dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=120) as r:
                status, got, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, got, payload = e.code, e.headers, e.read()
        for raw in got.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie(raw)
            for k, morsel in jar.items():
                if morsel["max-age"] == "0" or "expires=Thu, 01 Jan 1970" in raw:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = morsel.value
        return Answer(
            status, {k.lower(): v for k, v in got.items()} | {"set-cookie-all": got.get_all("Set-Cookie")}, payload
        )

    def get(self, path: str, **kw) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Answer:
        return self.request("POST", path, **kw)

    def sign_in(self, name: str, password: str = PASSWORD) -> Answer:
        page = self.get("/signin")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        return self.post("/signin", form={"name": name, "password": password, "csrf_token": token, "next": "/search"})

    def csrf(self) -> str:
        return self.get("/api/me").json()["csrf_token"]


@dataclass
class ReviewApp:
    url: str
    root: Path
    home: Path
    store: object
    served: Served

    def client(self, who: str | None = None) -> Client:
        c = Client(self.url)
        if who:
            assert c.sign_in(who).status == 303
        return c


def start_app(root: Path, accounts: Path):
    from opentranscribe_pipeline.accounts import AccountStore
    from opentranscribe_pipeline.app import create_app

    store = AccountStore.open(str(accounts))
    return store, Served(create_app(str(root), store))


@pytest.fixture(scope="module")
def review_app(_shared_archive_built, tmp_path_factory) -> ReviewApp:
    """The app over this module's own copy of the shared warehouse (edits allowed), with
    ``ada`` (editor) and ``vic`` (viewer)."""
    base = tmp_path_factory.mktemp("review-app")
    archive = _shared_archive_built.copy(base / "archive")
    store, served = start_app(archive.root, base / "accounts.sqlite")
    store.add_user("ada", PASSWORD, "editor")
    store.add_user("vic", PASSWORD, "viewer")
    yield ReviewApp(served.url, archive.root, archive.home, store, served)
    served.stop()
