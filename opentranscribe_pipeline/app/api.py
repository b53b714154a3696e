"""The JSON API beside the pages (``/api/...``; the schema at ``/openapi.json``, read at ``/docs``).

Same session cookie as the pages; every POST carries the session's CSRF token in the
``X-CSRF-Token`` header (``GET /api/me`` returns it). Errors are ``{"error": "..."}`` with 401
(no session), 403 (CSRF or role), 404 (unknown id), 409 (an edit refused).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from . import edits
from .pages import _suggestion
from .web import Session, editor, media_id_or_404, speaker_id_or_404, viewer

router = APIRouter(prefix="/api")


class NameBody(BaseModel):
    name: str = Field(..., description="the person's name")


class MergeBody(BaseModel):
    into: str = Field(..., description="the global id that absorbs this one")


class SplitBody(BaseModel):
    media_ids: list[str] = Field(default_factory=list, description="files to move to one new id")
    by_file: bool = Field(False, description="every file its own voice")


def _edit(request: Request, s: Session, fn, *args):
    st = request.app.state
    try:
        out = fn(st.wh, st.services.search_backend, st.store, s.user.name, *args)
    except edits.EditError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return {"message": out.message, "global_speaker_id": out.target, "warnings": out.warnings}


@router.get("/me", tags=["session"], summary="Who is signed in, their role and CSRF token")
def me(s: Session = Depends(viewer)):
    return {"name": s.user.name, "role": s.user.role, "can_edit": s.can_edit, "csrf_token": s.csrf}


@router.get("/search", tags=["search"], summary="Passages: full text, by meaning, or both")
def api_search(
    request: Request,
    q: str = Query(..., min_length=1),
    mode: Literal["hybrid", "text", "semantic"] = "hybrid",
    speaker: str | None = None,
    language: str | None = None,
    drop: str | None = None,
    limit: int = Query(10, ge=1, le=100),
    min_quality: float | None = Query(None, ge=1, le=5),
    s: Session = Depends(viewer),
):
    from ..search.backends import SearchUnavailable, VectorSearchUnsupported
    from ..search.service import UnknownSpeakerFilter

    try:
        out = request.app.state.services.search(
            q, mode=mode, speaker=speaker, language=language, drop=drop, limit=limit, min_quality=min_quality
        )
    except (SearchUnavailable, VectorSearchUnsupported, UnknownSpeakerFilter, ValueError) as exc:
        return JSONResponse({"error": exc.args[0] if exc.args else str(exc)}, status_code=400)
    results = []
    for r in out.results:
        d = r.as_json()
        d["clip_url"] = f"/audio/{r.media_id}/clip?start={r.start_s:.3f}&end={r.end_s:.3f}"
        d["transcript_url"] = f"/media/{r.media_id}?t={r.start_s:.3f}"
        results.append(d)
    return {"results": results, "indexed": out.indexed, "warnings": out.warnings, "left_out": out.left_out}


@router.get("/media/{media_id}", tags=["media"], summary="One media item's transcript: segments with words")
def api_transcript(request: Request, media_id: str, s: Session = Depends(viewer)):
    media_id_or_404(media_id)
    # plain json.dumps: FastAPI's jsonable_encoder takes ~20 us a word (an hour: ~10,000 words)
    return JSONResponse(request.app.state.services.transcript(media_id))


@router.get("/speakers", tags=["speakers"], summary="Active global speakers by talk time, paged")
def api_speakers(
    request: Request,
    page: int = Query(1, ge=1),
    size: int = Query(25, ge=1, le=200),
    s: Session = Depends(viewer),
):
    return request.app.state.services.speakers(page, size)


@router.get("/speakers/{gid}", tags=["speakers"], summary="One voice: name, talk time, files")
def api_speaker(request: Request, gid: str, s: Session = Depends(viewer)):
    speaker_id_or_404(gid)
    info = request.app.state.services.speaker(gid)
    info.pop("updated_at", None)
    return info


@router.get("/speakers/{gid}/clips", tags=["speakers"], summary="2-3 short clips of the voice's clearest speech")
def api_clips(request: Request, gid: str, s: Session = Depends(viewer)):
    speaker_id_or_404(gid)
    clips = request.app.state.services.clips(gid)
    for c in clips:
        c["clip_url"] = f"/audio/{c['media_id']}/clip?start={c['start_s']:.3f}&end={c['end_s']:.3f}"
    return {"global_speaker_id": gid, "clips": clips}


@router.get("/suggestions", tags=["speakers"], summary="The suggestion queue: a voice close to a named one")
def api_suggestions(request: Request, limit: int = Query(50, ge=1, le=500), s: Session = Depends(viewer)):
    return {"suggestions": request.app.state.services.suggestions(limit)}


@router.post("/speakers/{gid}/name", tags=["edits"], summary="Name a voice (editor)")
def api_name(request: Request, gid: str, body: NameBody, s: Session = Depends(editor)):
    speaker_id_or_404(gid)
    return _edit(request, s, edits.name, gid, body.name)


@router.post("/speakers/{gid}/merge", tags=["edits"], summary="Merge this voice into another (editor)")
def api_merge(request: Request, gid: str, body: MergeBody, s: Session = Depends(editor)):
    speaker_id_or_404(gid)
    return _edit(request, s, edits.merge, gid, body.into)


@router.post("/speakers/{gid}/split", tags=["edits"], summary="Split a voice by file (editor)")
def api_split(request: Request, gid: str, body: SplitBody, s: Session = Depends(editor)):
    speaker_id_or_404(gid)
    return _edit(request, s, edits.split, gid, body.media_ids, body.by_file)


@router.post("/suggestions/{gid}/accept", tags=["edits"], summary="Accept the voice's suggested name (editor)")
def api_accept(request: Request, gid: str, s: Session = Depends(editor)):
    return _edit(request, s, edits.accept, _suggestion(request, gid))


@router.post("/suggestions/{gid}/reject", tags=["edits"], summary="Reject the voice's suggestion (editor)")
def api_reject(request: Request, gid: str, s: Session = Depends(editor)):
    st = request.app.state
    out = edits.reject(st.wh, st.store, s.user.name, _suggestion(request, gid))
    return {"message": out.message, "global_speaker_id": out.target, "warnings": []}
