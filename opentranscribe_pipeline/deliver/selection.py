"""Which media items a delivery covers and what its files are called: the ``exports`` asset
(one batch, files named by media id) and ``opentranscribe export`` (any selection, files
named after the source files) choose the same items. Dagster-free."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def exported_media(src) -> list[str]:
    """Ok media items with a finished transcript, and silent ones (empty files)."""
    ok_tx = (
        set(src.transcripts.filter(pl.col("status") == "ok")["media_id"].to_list()) if src.transcripts.height else set()
    )
    tried = set(src.transcripts["media_id"].to_list()) if src.transcripts.height else set()
    ids = src.media["media_id"].to_list() if src.media.height else []
    return sorted(m for m in ids if m in ok_tx or m not in tried)


def output_names(items: list[tuple[str, str]]) -> dict[str, str]:
    """media_id -> file stem: the source file's name without its extension; two sources
    with one name get the first 8 digits of their media id appended."""
    stems = {}
    for media_id, uri in items:
        stems[media_id] = Path(uri.rstrip("/").rsplit("/", 1)[-1]).stem or media_id
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {m: (f"{s}-{m[:8]}" if counts[s] > 1 else s) for m, s in stems.items()}


def select(wh, drop: str | None, batch: str | None, media: list[str] | None) -> dict[str, list[str] | None]:
    """batch id -> media ids (None: every exported item of the batch). Raises LookupError
    with a message for the user when the selection names nothing."""
    from ..query.core import QueryError, find_media

    if media:
        out: dict[str, list[str] | None] = {}
        for q in media:
            try:
                found = find_media(wh, q)
            except QueryError as exc:
                raise LookupError(str(exc)) from None
            current = out.setdefault(found["batch_id"], [])
            if current is not None and found["media_id"] not in current:
                current.append(found["media_id"])
        return out
    known = wh.batch_ids("media")
    if batch:
        if batch not in known:
            raise LookupError(f"no batch {batch!r} in {wh.root_uri} ({len(known)} batch(es) have media)")
        return {batch: None}
    if drop:
        batches = wh.scan("batches")
        ids = sorted(set(batches.filter(pl.col("drop") == drop)["batch_id"].to_list())) if batches is not None else []
        ids = [b for b in ids if b in known]
        if not ids:
            drops = sorted(set(batches["drop"].to_list())) if batches is not None else []
            raise LookupError(
                f"no processed batch of drop {drop!r} in {wh.root_uri} (drops: {', '.join(drops) or 'none'})"
            )
        return {b: None for b in ids}
    if not known:
        raise LookupError(f"no processed batch in {wh.root_uri}")
    return {b: None for b in known}
