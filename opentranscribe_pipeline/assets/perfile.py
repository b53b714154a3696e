"""Per-file resume state shared by the model steps (transcription, diarization).

A model step writes one *state* table (one row per media item: status, model version) and
some row tables (e.g. segments). While a run works through a batch, each finished file's
rows are staged under ``_staging/`` (rows first, state row last); at the end the staged rows
are folded into the visible per-batch tables. A re-run after a crash reads the visible
tables with the staged files on top, so finished files are never redone and a file whose
state row was not staged yet counts as not done.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
from pydantic import Field

from ..schemas import conform
from ..storage import Warehouse


def empty(model) -> pl.DataFrame:
    return conform(pl.DataFrame(), model).clear()


def load_previous(wh: Warehouse, batch_id: str, models: dict[str, type], state_table: str) -> dict[str, pl.DataFrame]:
    """Visible tables of the batch, with staged results of an unfinished run taking precedence."""
    out = {}
    for table, model in models.items():
        visible = wh.read_table(table, batch_id)
        visible = conform(visible, model) if visible is not None else empty(model)
        staged = wh.staged(table, batch_id)
        if staged:
            staged_df = pl.concat([conform(df, model) for df in staged.values()])
            visible = pl.concat([visible.filter(~pl.col("media_id").is_in(list(staged))), staged_df])
        out[table] = visible
    # staged rows of a file whose state row was not staged yet are incomplete: drop them
    done_ids = out[state_table]["media_id"].implode()
    for table in models:
        if table != state_table:
            out[table] = out[table].filter(pl.col("media_id").is_in(done_ids))
    return out


def current_ids(prev_state: pl.DataFrame, wanted_ids: pl.Series, model_version: str) -> pl.DataFrame:
    """State rows that need no work: ok, made with ``model_version``, still wanted."""
    return prev_state.filter(
        (pl.col("status") == "ok")
        & (pl.col("model_version") == model_version)
        & pl.col("media_id").is_in(wanted_ids.implode())
    )


def fold(
    wh: Warehouse,
    batch_id: str,
    prev: dict[str, pl.DataFrame],
    new: dict[str, list[pl.DataFrame]],
    wanted_ids: pl.Series,
    state_table: str,
    sort_keys: dict[str, list[str]],
) -> dict[str, pl.DataFrame]:
    """Merge kept and new rows, write every table (state last) and clear the staging area."""
    redone_frames = [df["media_id"] for df in new.get(state_table, [])]
    redone = pl.concat(redone_frames).implode() if redone_frames else pl.Series([], dtype=pl.Utf8).implode()
    keep = wanted_ids.implode()
    out = {}
    for table, old in prev.items():
        kept = old.filter(pl.col("media_id").is_in(keep) & ~pl.col("media_id").is_in(redone))
        out[table] = pl.concat([kept, *new.get(table, [])]).sort(sort_keys[table])
    for table in [t for t in out if t != state_table] + [state_table]:
        wh.write_table(table, out[table], batch_id)
    for table in out:
        wh.clear_staging(table, batch_id)
    return out


def usable_audio(wh: Warehouse, batch_id: str, step: str) -> pl.DataFrame:
    """media_id, audio_uri, duration_s of the batch's usable files (media status ok)."""
    media = wh.read_table("media", batch_id)
    audio = wh.read_table("audio", batch_id)
    if media is None or audio is None:
        raise dg.Failure(f"batch {batch_id!r} has no media/audio tables yet; materialize `media` before `{step}`")
    return (
        media.filter(pl.col("status") == "ok")
        .select("media_id")
        .join(audio.select("media_id", "audio_uri", "duration_s"), on="media_id")
        .unique("media_id")
        .sort("media_id")
    )


class ReprocessConfig(dg.Config):
    """Run config of the model steps: ``force`` redoes the named files even when current."""

    force: list[str] = Field(
        default_factory=list,
        description="media ids (or unique prefixes of at least 8 characters) or source file names to redo in this run",
    )


def forced_ids(wh: Warehouse, batch_id: str, wanted_ids: pl.Series, force: list[str]) -> set[str]:
    """Media ids of the batch named in ``force`` by media id, id prefix, or source file name."""
    if not force:
        return set()
    media = wh.read_table("media", batch_id)
    names = {}
    if media is not None:
        for uri, mid in media.select("source_uri", "media_id").iter_rows():
            if mid:
                names.setdefault(uri.rsplit("/", 1)[-1], mid)
                names.setdefault(uri, mid)
    out = set()
    for item in force:
        if item in names:
            out.add(names[item])
        elif len(item) >= 8:
            out.update(m for m in wanted_ids.to_list() if m.startswith(item))
    return out


def data_version(state: pl.DataFrame) -> dg.DataVersion:
    """Changes when any file's output changes model version or status: Dagster marks
    downstream assets stale from it."""
    import hashlib

    rows = state.select("media_id", "status", "model_version").sort("media_id").rows()
    return dg.DataVersion(hashlib.sha256(repr(rows).encode()).hexdigest()[:16])
