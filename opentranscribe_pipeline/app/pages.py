"""The review app's pages: sign-in, search, transcript, speakers; the audio they play."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from ..accounts import SignInRefused
from . import audio as audio_files
from . import edits, security
from .web import (
    NotFound,
    Session,
    editor,
    media_id_or_404,
    poster,
    redirect,
    render,
    session_of,
    speaker_id_or_404,
    viewer,
)

router = APIRouter()
MODES = ("hybrid", "text", "semantic")


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or ``https://...``) after signing in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/search"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/search"


# -- signing in and out -------------------------------------------------------------------------
@router.get("/signin", include_in_schema=False)
def signin_page(request: Request, next: str = "/search"):
    token = request.cookies.get(security.PRESESSION_COOKIE) or security.new_presession_token()
    resp = render(request, "signin.html", title="Sign in", next=_safe_next(next), form_token=token, error=None)
    resp.set_cookie(
        security.PRESESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.secure_cookies,
        path="/signin",
    )
    return resp


@router.post("/signin", include_in_schema=False)
def signin(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/search"),
):
    cookie = request.cookies.get(security.PRESESSION_COOKIE)
    target = _safe_next(next)

    def again(message: str, status: int, retry: float | None = None):
        resp = render(
            request, "signin.html", status, title="Sign in", next=target, form_token=cookie or "", error=message
        )
        if retry:
            resp.headers["Retry-After"] = str(int(retry) + 1)
        return resp

    if not security.presession_ok(cookie, csrf_token):
        return again("The sign-in form expired: reload the page and try again.", 403)
    store = request.app.state.store
    try:
        user = store.sign_in(name, password, request.client.host if request.client else "?")
    except SignInRefused as exc:
        return again(str(exc), 429 if exc.retry_after_s else 401, exc.retry_after_s)
    token = store.create_session(user)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        security.SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.app.state.secure_cookies,
        path="/",
    )
    resp.delete_cookie(security.PRESESSION_COOKIE, path="/signin")
    return resp


@router.post("/signout", include_in_schema=False)
def signout(request: Request, s: Session = Depends(poster)):
    request.app.state.store.end_session(s.token)
    resp = RedirectResponse("/signin", status_code=303)
    resp.delete_cookie(security.SESSION_COOKIE, path="/")
    return resp


@router.get("/", include_in_schema=False)
def home(s: Session = Depends(viewer)):
    return RedirectResponse("/search", status_code=303)


# -- search -------------------------------------------------------------------------------------
@router.get("/search", include_in_schema=False)
def search_page(
    request: Request,
    q: str = "",
    mode: str = "hybrid",
    speaker: str = "",
    language: str = "",
    drop: str = "",
    limit: int = Query(10, ge=1, le=100),
    min_quality: str = "",
    s: Session = Depends(viewer),
):
    from ..search.backends import SearchUnavailable, VectorSearchUnsupported
    from ..search.service import UnknownSpeakerFilter

    form = {"q": q, "mode": mode if mode in MODES else "hybrid", "speaker": speaker, "language": language}
    form |= {"drop": drop, "limit": limit, "min_quality": min_quality}
    outcome, error = None, None
    if q.strip():
        try:
            floor = float(min_quality) if min_quality.strip() else None
            outcome = request.app.state.services.search(
                q,
                mode=form["mode"],
                speaker=speaker,
                language=language,
                drop=drop,
                limit=limit,
                min_quality=floor,
            )
        except (SearchUnavailable, VectorSearchUnsupported, UnknownSpeakerFilter, ValueError) as exc:
            error = exc.args[0] if exc.args else str(exc)
    return render(request, "search.html", title="Search", session=s, form=form, outcome=outcome, error=error)


# -- one media item -------------------------------------------------------------------------------
@router.get("/media/{media_id}", include_in_schema=False)
def transcript_page(request: Request, media_id: str, t: float | None = None, s: Session = Depends(viewer)):
    media_id_or_404(media_id)
    view = request.app.state.services.transcript(media_id)
    return render(
        request,
        "transcript.html",
        title=view["source_uri"].rsplit("/", 1)[-1],
        session=s,
        view=view,
        start=t or 0.0,
        formats=("srt", "vtt", "txt", "json"),
    )


@router.get("/media/{media_id}/export.{fmt}", tags=["media"], summary="A fresh export (SRT/VTT/TXT/JSON)")
def export_file(request: Request, media_id: str, fmt: str, s: Session = Depends(viewer)):
    media_id_or_404(media_id)
    text = request.app.state.services.export(media_id, fmt)
    kind = {"json": "application/json", "vtt": "text/vtt"}.get(fmt, "text/plain")
    return Response(
        text,
        media_type=f"{kind}; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{media_id}.{fmt}"'},
    )


# -- audio ---------------------------------------------------------------------------------------
def _audio(request: Request, media_id: str) -> audio_files.AudioFile:
    media_id_or_404(media_id)
    services = request.app.state.services
    services.item(media_id)  # 404 for an unknown id
    try:
        return audio_files.locate(services.wh, media_id)
    except audio_files.AudioMissing as exc:
        raise NotFound(f"no audio: {exc}") from None


@router.get("/audio/{media_id}", tags=["audio"], summary="The item's 16 kHz FLAC (HTTP Range supported)")
def audio_full(request: Request, media_id: str, s: Session = Depends(viewer)):
    a = _audio(request, media_id)
    wh = request.app.state.wh
    size = a.size(wh)
    try:
        wanted = audio_files.parse_range(request.headers.get("range"), size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
    first, last = wanted if wanted else (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1), "Cache-Control": "private"}
    if wanted:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(
        audio_files.read_range(wh, a, first, last),
        status_code=206 if wanted else 200,
        media_type="audio/flac",
        headers=headers,
    )


@router.get("/audio/{media_id}/clip", tags=["audio"], summary="[start, end] of the item as a WAV clip")
def audio_clip(
    request: Request,
    media_id: str,
    start: float = Query(..., ge=0),
    end: float = Query(..., gt=0),
    s: Session = Depends(viewer),
):
    a = _audio(request, media_id)
    try:
        data = audio_files.clip_wav(request.app.state.wh, a, start, end)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    return Response(data, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})


# -- speakers ------------------------------------------------------------------------------------
@router.get("/speakers", include_in_schema=False)
def speakers_page(request: Request, page: int = Query(1, ge=1), s: Session = Depends(viewer)):
    services = request.app.state.services
    listing = services.speakers(page)
    queue = services.suggestions(limit=20)
    return render(request, "speakers.html", title="Speakers", session=s, listing=listing, queue=queue)


@router.get("/speakers/{gid}", include_in_schema=False)
def speaker_page(request: Request, gid: str, s: Session = Depends(viewer)):
    speaker_id_or_404(gid)
    services = request.app.state.services
    info = services.speaker(gid)
    clips = services.clips(gid) if info["status"] == "active" else []
    return render(request, "speaker.html", title=info["name"] or gid, session=s, info=info, clips=clips)


def _done(request: Request, back: str, outcome: edits.Outcome) -> RedirectResponse:
    note = outcome.message + ("; " + "; ".join(outcome.warnings) if outcome.warnings else "")
    return redirect(request, back, note)


def _run(request: Request, back: str, fn, *args):
    try:
        return _done(request, back, fn(*args))
    except edits.EditError as exc:
        return redirect(request, back, f"refused: {exc}")


def _edit_args(request: Request, s: Session):
    st = request.app.state
    return st.wh, st.services.search_backend, st.store, s.user.name


@router.post("/speakers/{gid}/name", include_in_schema=False)
def name_form(request: Request, gid: str, name: str = Form(""), s: Session = Depends(editor)):
    speaker_id_or_404(gid)
    return _run(request, f"/speakers/{gid}", edits.name, *_edit_args(request, s), gid, name)


@router.post("/speakers/{gid}/merge", include_in_schema=False)
def merge_form(request: Request, gid: str, into: str = Form(""), s: Session = Depends(editor)):
    speaker_id_or_404(gid)
    into = into.strip()
    return _run(request, f"/speakers/{into or gid}", edits.merge, *_edit_args(request, s), gid, into)


@router.post("/speakers/{gid}/split", include_in_schema=False)
def split_form(
    request: Request,
    gid: str,
    media: list[str] = Form(default_factory=list),
    by_file: str = Form(""),
    s: Session = Depends(editor),
):
    speaker_id_or_404(gid)
    chosen = [m for m in media if security.valid_media_id(m)]
    return _run(request, f"/speakers/{gid}", edits.split, *_edit_args(request, s), gid, chosen, bool(by_file))


def _suggestion(request: Request, gid: str) -> dict:
    speaker_id_or_404(gid)
    services = request.app.state.services
    found = [x for x in services.suggestions(limit=10_000) if x["global_speaker_id"] == gid]
    if not found:
        raise NotFound(f"no pending suggestion for {gid}")
    return found[0]


@router.post("/suggestions/{gid}/accept", include_in_schema=False)
def accept_form(request: Request, gid: str, back: str = Form("/speakers"), s: Session = Depends(editor)):
    sugg = _suggestion(request, gid)
    return _run(request, _safe_next(back), edits.accept, *_edit_args(request, s), sugg)


@router.post("/suggestions/{gid}/reject", include_in_schema=False)
def reject_form(request: Request, gid: str, back: str = Form("/speakers"), s: Session = Depends(editor)):
    sugg = _suggestion(request, gid)
    st = request.app.state
    return _run(request, _safe_next(back), edits.reject, st.wh, st.store, s.user.name, sugg)


# -- the API's documentation ----------------------------------------------------------------------
@router.get("/docs", include_in_schema=False)
def docs_page(request: Request, s: Session = Depends(viewer)):
    schema = request.app.openapi()
    ops = [
        {"method": method.upper(), "path": path, "summary": op.get("summary", ""), "params": op.get("parameters", [])}
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
    ]
    return render(request, "docs.html", title="API", session=s, ops=ops, info=schema.get("info", {}))


@router.get("/openapi.json", include_in_schema=False)
def openapi_json(request: Request):
    session_of(request)
    return request.app.openapi()
