"""The batch's tables of a model stage: what a run finds, what it keeps, what it writes.

The Dagster-light half of the per-file model step (:mod:`.modelstep`): the visible tables with
an unfinished run's staged files on top (:func:`with_staged`, :func:`load_previous`), which
files are current or forced (:func:`current_ids`, :func:`forced_ids`), the usable audio of a
batch, the fold that writes the tables state-last (:func:`fold`, :func:`publish`) and the
row validation a file's rows pass before they are staged (:func:`reject_invalid_rows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from ..schemas import TABLES, conform
from ..storage import Warehouse


def empty(model) -> pl.DataFrame:
    return conform(pl.DataFrame(), model).clear()


@dataclass(frozen=True)
class ModelStage:
    """The name and tables of a model stage. ``failed_state`` holds the stage's own state columns
    for a file that failed (counts at zero); ``verb`` names the work in metadata
    (``files_<verb>_this_run``)."""

    name: str  # "transcription": log lines
    state_table: str
    row_tables: tuple[str, ...]
    sort_keys: Mapping[str, tuple[str, ...]]
    verb: str
    failed_state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.state_table, *self.row_tables)

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        from .checks import failed_files_check_spec, schema_check_spec

        return [*(schema_check_spec(t) for t in self.tables), failed_files_check_spec(self.state_table)]


# -- the to-do list -------------------------------------------------------------------------
def with_staged(
    wh: Warehouse,
    table: str,
    batch_id: str,
    key: str,
    only: Collection[str] | None = None,
    staged: dict[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """The batch's visible rows of ``table`` with the rows staged by an unfinished run on
    top: staged rows replace the visible rows with the same ``key`` value, and the rows of
    the item a staged file is named after (model steps stage under the media id, so a file
    redone with no rows at all still replaces its old rows). ``only``: overlay just the staged
    files of these names; ``staged``: the staged files if already read."""
    model = TABLES[table]
    visible = wh.read_table(table, batch_id)
    visible = conform(visible, model) if visible is not None else empty(model)
    staged = wh.staged(table, batch_id) if staged is None else staged
    if only is not None:
        staged = {name: df for name, df in staged.items() if name in only}
    if not staged:
        return visible
    staged_df = pl.concat([conform(df, model) for df in staged.values()])
    replaced = [*staged_df[key].unique().to_list(), *staged]
    return pl.concat([visible.filter(~pl.col(key).is_in(replaced)), staged_df])


def publish(wh: Warehouse, batch_id: str, tables: Mapping[str, pl.DataFrame]) -> None:
    """Write the batch's tables in the order given (the state table last: it is what a
    re-run trusts), then clear their staging areas."""
    for table, df in tables.items():
        wh.write_table(table, df, batch_id)
    for table in tables:
        wh.clear_staging(table, batch_id)


def load_previous(wh: Warehouse, batch_id: str, stage: ModelStage) -> tuple[dict[str, pl.DataFrame], set[str]]:
    """Visible tables of the batch, with staged results of an unfinished run taking
    precedence; also the media ids whose state row is staged."""
    wh.quarantine_corrupt(batch_id, stage.tables)  # unreadable parts moved aside, their files redone
    staged_state = wh.staged(stage.state_table, batch_id)
    state = with_staged(wh, stage.state_table, batch_id, "media_id", staged=staged_state)
    # a file whose state row was not staged yet is incomplete: its staged rows are ignored
    # (the visible rows stay, and so does the visible state row that vouches for them)
    complete = set(staged_state)
    out = {stage.state_table: state}
    done_ids = state["media_id"].implode()
    for table in stage.row_tables:
        rows = with_staged(wh, table, batch_id, "media_id", only=complete)
        out[table] = rows.filter(pl.col("media_id").is_in(done_ids))
    return out, complete


def current_ids(prev_state: pl.DataFrame, wanted_ids: pl.Series, model_version: str) -> pl.DataFrame:
    """State rows that need no work: ok, made with ``model_version``, still wanted."""
    return prev_state.filter(
        (pl.col("status") == "ok")
        & (pl.col("model_version") == model_version)
        & pl.col("media_id").is_in(wanted_ids.implode())
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


def usable_audio(wh: Warehouse, batch_id: str, step: str) -> pl.DataFrame:
    """media_id, audio_uri, duration_s of the batch's usable files: media status ok and not
    ``silent`` (the ingest energy check found no sound: no speech model runs on it; tables
    written before that check have no ``silent`` column and every ok file is usable)."""
    media = wh.read_table("media", batch_id)
    audio = wh.read_table("audio", batch_id)
    if media is None or audio is None:
        raise dg.Failure(f"batch {batch_id!r} has no media/audio tables yet; materialize `media` before `{step}`")
    usable = pl.col("status") == "ok"
    if "silent" in media.columns:
        usable &= ~pl.col("silent").fill_null(False)
    return (
        media.filter(usable)
        .select("media_id")
        .join(audio.select("media_id", "audio_uri", "duration_s"), on="media_id")
        .unique("media_id")
        .sort("media_id")
    )


# -- the fold -------------------------------------------------------------------------------
def fold(
    wh: Warehouse,
    batch_id: str,
    stage: ModelStage,
    prev: dict[str, pl.DataFrame],
    new: dict[str, list[pl.DataFrame]],
    wanted_ids: pl.Series,
) -> dict[str, pl.DataFrame]:
    """Merge kept and new rows, write every table (state last) and clear the staging area."""
    redone_frames = [df["media_id"] for df in new[stage.state_table]]
    redone = pl.concat(redone_frames).implode() if redone_frames else pl.Series([], dtype=pl.Utf8).implode()
    keep = wanted_ids.implode()
    out = {}
    for table, old in prev.items():
        kept = old.filter(pl.col("media_id").is_in(keep) & ~pl.col("media_id").is_in(redone))
        out[table] = pl.concat([kept, *new[table]]).sort(list(stage.sort_keys[table]))
    publish(wh, batch_id, {t: out[t] for t in [*stage.row_tables, stage.state_table]})
    return out


def data_version(state: pl.DataFrame) -> dg.DataVersion:
    """Changes when any file's output changes model version or status: Dagster marks
    downstream assets stale from it."""
    rows = state.select("media_id", "status", "model_version").sort("media_id").rows()
    return dg.DataVersion(hashlib.sha256(repr(rows).encode()).hexdigest()[:16])


class RowsRejected(ValueError):
    """A file's rows break their table's rules: the file fails at this step (its state row
    says which rule and which values), the batch goes on."""


def reject_invalid_rows(stage: ModelStage, rows: Mapping[str, pl.DataFrame]) -> None:
    """Validate one file's rows of every row table before they are staged (``assets/isolation.py``)."""
    from .isolation import hold_back_invalid

    for table in stage.row_tables:
        df = rows.get(table)
        if df is not None and df.height:
            _, issues = hold_back_invalid(table, df, stage.name)
            if issues:
                first = issues[0]
                raise RowsRejected(f"`{table}` rows break `{first.rule}`: {first.values[:300]}")
