"""The review app: :func:`create_app` builds the FastAPI application (Dagster-free).

Server-rendered pages (:mod:`.pages`) and a JSON API under ``/api`` (:mod:`.api`) over the same
services (:mod:`.services`, :mod:`.edits`); audio from the warehouse's FLAC (:mod:`.audio`).
Nobody sees anything without a session: a page redirects to ``/signin``, the API answers 401.
Every POST needs the session's CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``); an edit by a viewer is 403.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import jinja2
import markupsafe
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..query import QueryError
from ..storage import StorageError, Warehouse
from . import security
from .services import Services

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


# -- who is asking ------------------------------------------------------------------------------
class NotSignedIn(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class NotFound(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class Session:
    user: object  # accounts.User
    token: str

    @property
    def csrf(self) -> str:
        return security.csrf_for(self.token)

    @property
    def can_edit(self) -> bool:
        return self.user.can_edit


def session_of(request: Request) -> Session:
    """The signed-in session of the request, else :class:`NotSignedIn`."""
    token = request.cookies.get(security.SESSION_COOKIE)
    user = request.app.state.store.session_user(token) if token else None
    if user is None:
        raise NotSignedIn()
    return Session(user, token)


async def csrf_given(request: Request) -> str | None:
    given = request.headers.get(security.CSRF_HEADER)
    if given:
        return given
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(security.CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def viewer(request: Request) -> Session:
    """Dependency of every GET: a signed-in user of any role."""
    return session_of(request)


async def poster(request: Request) -> Session:
    """Dependency of every POST of a signed-in user: the CSRF token must match the session."""
    s = session_of(request)
    if not security.csrf_ok(s.token, await csrf_given(request)):
        raise Forbidden("the form's CSRF token is missing or belongs to another session: reload the page")
    return s


async def editor(request: Request) -> Session:
    """Dependency of every edit: CSRF as :func:`poster`, and a role that may edit."""
    s = await poster(request)
    if not s.can_edit:
        raise Forbidden(f"{s.user.name} is a {s.user.role}: only an editor may change speakers")
    return s


def media_id_or_404(media_id: str) -> str:
    if not security.valid_media_id(media_id):
        raise NotFound(f"no media item {media_id[:80]!r} (a media id is 64 hex digits)")
    return media_id


def speaker_id_or_404(gid: str) -> str:
    if not security.valid_speaker_id(gid):
        raise NotFound(f"no global speaker {gid[:80]!r} (ids look like spk-000042)")
    return gid


# -- the application ----------------------------------------------------------------------------
def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name: names and text are shown as text
        undefined=jinja2.StrictUndefined,
    )
    env.filters["clock"] = clock
    env.filters["words_html"] = words_html
    env.filters["urlq"] = lambda v: quote(str(v), safe="")
    return Jinja2Templates(env=env)


def words_html(words: list[dict]) -> markupsafe.Markup:
    """A segment's words as clickable spans, each word escaped (an hour holds ~10,000 words:
    one f-string per word instead of a template loop keeps the transcript page fast)."""
    esc = markupsafe.escape
    return markupsafe.Markup(
        " ".join(
            f'<span class="w" data-start="{float(w["start_s"]):.3f}" data-end="{float(w["end_s"]):.3f}">{esc(w["word"])}</span>'
            for w in words
        )
    )


def clock(seconds) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(max(0.0, float(seconds)), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"


def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
    s = context.pop("session", None)
    raw = request.cookies.get("ot_flash")
    flash = unquote(raw) if raw else None
    resp = request.app.state.templates.TemplateResponse(
        request,
        name,
        {"session": s, "flash": flash, "title": context.pop("title", ""), **context},
        status_code=status,
    )
    if raw:
        resp.delete_cookie("ot_flash", path="/")
    return resp


def redirect(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    resp = RedirectResponse(url, status_code=303)
    if flash:
        resp.set_cookie("ot_flash", quote(flash[:300]), httponly=True, samesite="lax", path="/")
    return resp


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/openapi.json"))


def create_app(
    root: str | Warehouse,
    store=None,
    *,
    backend=None,
    accounts_url: str | None = None,
    secure_cookies: bool = False,
) -> FastAPI:
    """The review app over the warehouse ``root`` (a path, ``s3://...`` or a Warehouse).

    ``store``: an :class:`~..accounts.AccountStore` (default: ``AccountStore.open(accounts_url)``);
    ``backend``: a search backend (default: the configured one, opened on first search);
    ``secure_cookies``: mark the session cookie ``Secure`` (behind HTTPS)."""
    from ..storage import S3Options

    wh = root if isinstance(root, Warehouse) else Warehouse(str(root), S3Options.from_env())
    if store is None:
        from ..accounts import AccountStore

        store = AccountStore.open(accounts_url)
    app = FastAPI(
        title="OpenTranscribe review app",
        description="Search, listen to and name the speakers of an OpenTranscribe warehouse.",
        docs_url=None,  # /docs is our own page: Swagger UI would load from a CDN
        redoc_url=None,
        openapi_url=None,  # served behind the session below
    )
    app.state.wh = wh
    app.state.store = store
    app.state.services = Services(wh, backend=backend)
    app.state.templates = _templates()
    app.state.secure_cookies = secure_cookies
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _handlers(app)
    from . import api, pages

    app.include_router(pages.router)
    app.include_router(api.router)
    return app


def _handlers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; media-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
        )
        if request.url.path.startswith(("/api/", "/media/", "/speakers", "/search")):
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if wants_json(request):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        if request.method != "GET":
            return render(request, "error.html", 401, title="Signed out", message="Sign in first.")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        if wants_json(request):
            return JSONResponse({"error": exc.why}, status_code=403)
        return render(request, "error.html", 403, title="Not allowed", message=exc.why)

    async def not_found(request: Request, why: str):
        if wants_json(request) or request.url.path.startswith("/audio/"):
            return JSONResponse({"error": why}, status_code=404)
        return render(request, "error.html", 404, title="Not found", message=why)

    @app.exception_handler(NotFound)
    async def unknown(request: Request, exc: NotFound):
        return await not_found(request, exc.why)

    @app.exception_handler(QueryError)
    async def no_match(request: Request, exc: QueryError):
        return await not_found(request, exc.message)

    @app.exception_handler(404)
    async def no_route(request: Request, exc):
        return await not_found(request, "nothing here")

    @app.exception_handler(StorageError)
    async def storage(request: Request, exc: StorageError):
        log.error("storage error on %s: %s", request.url.path, exc)
        why = "the warehouse cannot be read right now; try again shortly"
        if wants_json(request):
            return JSONResponse({"error": why}, status_code=503)
        return render(request, "error.html", 503, title="Warehouse unavailable", message=why)

    @app.exception_handler(Exception)
    async def broken(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        why = f"something went wrong ({type(exc).__name__}); it is in the server's log"
        if wants_json(request):
            return JSONResponse({"error": why}, status_code=500)
        return Response(
            request.app.state.templates.get_template("error.html").render(
                session=None, flash=None, title="Error", message=why
            ),
            status_code=500,
            media_type="text/html",
        )
