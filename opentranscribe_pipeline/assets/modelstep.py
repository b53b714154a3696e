"""The per-file model step: one shape for every stage that runs a model over a batch.

A model stage (transcription, diarization; translation and text embeddings next) writes one
*state* table (one row per media item: status, error, model version, timings) and some *row*
tables (segments, turns, ...). Everything but the model call is the same for all of them,
and lives here:

1. **to-do list**: the batch's wanted files minus those whose state row is ``ok`` with the
   current model version, plus the files forced in run config (``force``);
2. **one model load**, only when something is left to do (``with model.load() as loaded``);
3. **per file**: ``process(loaded, item)``; an exception becomes a ``failed`` state row with
   the error, and the batch goes on;
4. **staging**: a finished file's rows are staged first and its state row last, so a staged
   state row means the file is complete (``Warehouse.stage``); a run killed midway resumes
   from the staged files;
5. **fold**: kept rows plus new rows are written as the visible per-batch tables, state
   table last, and the staging area is cleared;
6. **report**: the standard metadata (files, audio hours, real-time factor, load time,
   failures), a schema check per table and the failed-files check.

A stage supplies a :class:`ModelStage` (its tables), its model (a resource that is a
:class:`StageModel`: version, columns naming it, loader), the wanted files and a per-file
function returning :class:`FileOutput`. See ``assets/transcription.py``.

The batch's tables (to-do list, staged overlay, fold: steps 1, 4 and 5) are
:mod:`.stagetables`; their names stay importable from here, the stages' one entry point.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, Required, TypedDict, TypeVar

import dagster as dg
import polars as pl
from pydantic import Field

from ..schemas import TABLES, conform, utc_now
from ..storage import StorageUnavailable, Warehouse
from .checks import failed_files_check_result, markdown_table, schema_check_result, tag_failed_files
from .stagetables import (
    ModelStage,
    RowsRejected,
    current_ids,
    data_version,
    empty,
    fold,
    forced_ids,
    load_previous,
    publish,
    reject_invalid_rows,
    usable_audio,
    with_staged,
)

__all__ = [
    "AudioInput",
    "FileItem",
    "FileOutput",
    "ModelStage",
    "ReprocessConfig",
    "RowsRejected",
    "StageModel",
    "StepResult",
    "current_ids",
    "data_version",
    "empty",
    "fold",
    "forced_ids",
    "load_previous",
    "publish",
    "read_audio",
    "reject_invalid_rows",
    "run_model_step",
    "to_do",
    "usable_audio",
    "with_staged",
]

Model = TypeVar("Model")


class StageModel(Protocol[Model]):
    """What a model stage's resource offers the step (``AsrModelResource``,
    ``DiarizationModelResource``): its version, the state columns that name it, and a
    context manager that loads it once and frees the device afterwards."""

    def model_version(self) -> str: ...

    def model_columns(self) -> dict[str, Any]: ...

    def load(self) -> AbstractContextManager[Model]: ...


class FileItem(TypedDict, total=False):
    """What a stage's per-file function gets for one file: the row of ``wanted`` (by default
    the batch's usable audio: ``media_id, audio_uri, duration_s``; a stage passing its own
    ``wanted`` adds its columns) plus what ``prepare`` returned for it (:class:`AudioInput`
    for the audio models)."""

    media_id: Required[str]
    audio_uri: str
    duration_s: float
    audio: bytes  # the 16 kHz FLAC, from read_audio
    samples: Any  # its decoded float32 samples (numpy), from read_audio


class AudioInput(TypedDict):
    """What :func:`read_audio` prepares for a file: its FLAC bytes and decoded samples."""

    audio: bytes
    samples: Any


@dataclass(frozen=True)
class FileOutput:
    """What a stage's per-file function returns for one file that worked."""

    rows: Mapping[str, pl.DataFrame]  # one frame per row table of the stage
    state: Mapping[str, Any] = field(default_factory=dict)  # the stage's own state columns
    summary: str = ""  # one line for the run log


class ReprocessConfig(dg.Config):
    """Run config of the model steps: ``force`` redoes the named files even when current."""

    force: list[str] = Field(
        default_factory=list,
        description="media ids (or unique prefixes of at least 8 characters) or source file names to redo in this run",
    )


# -- the step -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepResult:
    """The folded tables of the batch plus what this run did."""

    stage: ModelStage
    model: dict[str, Any]  # model_version and the model columns: on every table's metadata
    tables: dict[str, pl.DataFrame]
    run_state: pl.DataFrame  # state rows written by this run
    kept: int  # files already current
    load_s: float
    elapsed_s: float
    sources: pl.DataFrame | None = None  # media_id, source_uri of the batch: names failed files

    @property
    def state(self) -> pl.DataFrame:
        return self.tables[self.stage.state_table]

    def metadata(self) -> dict[str, Any]:
        """The standard metadata of the state table's materialization."""
        run_ok = self.run_state.filter(pl.col("status") == "ok")
        audio_s = float(run_ok["audio_s"].sum() or 0)
        infer_s = float(run_ok["elapsed_s"].sum() or 0)
        failed = self.state.filter(pl.col("status") == "failed")
        return {
            "dagster/row_count": self.state.height,
            f"files_{self.stage.verb}_this_run": run_ok.height,
            "files_current_kept": self.kept,
            "files_failed": failed.height,
            "audio_hours_this_run": round(audio_s / 3600, 4),
            "inference_s": round(infer_s, 2),
            "model_load_s": round(self.load_s, 2),
            "elapsed_s": round(self.elapsed_s, 2),
            "real_time_factor": round(infer_s / audio_s, 4) if audio_s else 0.0,
            "failures": dg.MetadataValue.md(markdown_table(failed.select("media_id", "error").head(100))),
        }

    def results(self, state_extra: Mapping[str, Any] | None = None, **common: Any) -> Iterator:
        """One MaterializeResult per table (the model and ``common`` metadata on each, and
        ``state_extra`` on the state table's), the schema checks and the failed-files check."""
        common = {**self.model, **common}
        yield dg.MaterializeResult(
            asset_key=self.stage.state_table,
            data_version=data_version(self.state),
            metadata={**common, **self.metadata(), **(state_extra or {})},
        )
        for table in self.stage.row_tables:
            yield dg.MaterializeResult(
                asset_key=table, metadata={**common, "dagster/row_count": self.tables[table].height}
            )
        for table in self.stage.tables:
            yield schema_check_result(table, self.tables[table])
        yield failed_files_check_result(self.stage.state_table, self.state, self.sources)


def to_do(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    stage: ModelStage,
    wanted: pl.DataFrame,
    model_version: str,
    force: list[str],
) -> tuple[dict[str, pl.DataFrame], int, pl.DataFrame, set[str]]:
    """The batch's previous tables, how many wanted files are current, the files to do and
    the files of those whose state row an earlier run staged."""
    batch_id = context.partition_key
    prev, staged_state = load_previous(wh, batch_id, stage)
    current = current_ids(prev[stage.state_table], wanted["media_id"], model_version)
    forced = forced_ids(wh, batch_id, wanted["media_id"], force)
    if forced:
        context.log.info("forced to redo %d file(s): %s", len(forced), sorted(forced))
        current = current.filter(~pl.col("media_id").is_in(list(forced)))
    todo = wanted.filter(~pl.col("media_id").is_in(current["media_id"].implode()))
    context.log.info(
        "batch %s: %d usable files, %d current, %d to be %s with %s",
        batch_id,
        wanted.height,
        current.height,
        todo.height,
        stage.verb,
        model_version,
    )
    return prev, current.height, todo, staged_state & set(todo["media_id"].to_list())


def read_audio(wh: Warehouse) -> Callable[[FileItem], AudioInput]:
    """The ``prepare`` of the audio models: the file's 16 kHz FLAC (``audio``, its bytes) and
    its samples (``samples``), read while the model works on the file before."""
    from ..speech.decode import load_flac

    def prepare(item: FileItem) -> AudioInput:
        audio = wh.get_bytes(item["audio_uri"])
        return {"audio": audio, "samples": load_flac(audio)}

    return prepare


class _Prefetch:
    """``(item, prepared)`` for each item, where ``prepared()`` returns ``prepare(item)`` (or
    raises its error); ``prepare`` of the next item runs on a worker thread meanwhile."""

    def __init__(self, prepare: Callable[[FileItem], Mapping[str, Any]] | None, items: Iterator[FileItem]):
        self.prepare = prepare
        self.items = items
        self.pool = None

    def __enter__(self):
        if self.prepare is None:
            return ((item, dict) for item in self.items)
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        return self._ahead()

    def _ahead(self):
        pending = None
        for item in self.items:
            future = self.pool.submit(self.prepare, item)
            if pending is not None:
                yield pending
            pending = (item, future.result)
        if pending is not None:
            yield pending

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def run_model_step(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    stage: ModelStage,
    *,
    model: StageModel[Model],
    force: list[str],
    process: Callable[[Model, FileItem], FileOutput],
    wanted: pl.DataFrame | None = None,
    prepare: Callable[[FileItem], Mapping[str, Any]] | None = None,
) -> StepResult:
    """Run ``process`` over every wanted file of the partition that is not current.

    ``wanted`` has one row per file the stage should cover (``media_id`` and whatever
    ``process`` needs, ``duration_s`` for the real-time factor); by default the batch's
    usable audio (``media_id, audio_uri, duration_s``), the input of every audio model.

    ``prepare(item)``: the file's input work that needs no model (read the audio from storage,
    decode it); it runs on a background thread for the *next* file while ``process`` runs the
    model on this one, so the device is not left waiting on storage. What it returns is added
    to the item ``process`` gets; an error in it is that file's failure, like one in
    ``process``. One file ahead at most (one file's input held in memory beside the current)."""
    batch_id = context.partition_key
    if wanted is None:
        wanted = usable_audio(wh, batch_id, stage.state_table)
    state_model = TABLES[stage.state_table]
    model_version = model.model_version()
    model_meta = {**model.model_columns(), "model_version": model_version}
    prev, kept, todo, stale_state = to_do(context, wh, stage, wanted, model_version, force)
    shared = {**model_meta, "batch_id": batch_id}

    def state_row(item: FileItem, error: str | None, own: Mapping[str, Any], elapsed_s: float) -> pl.DataFrame:
        row = {
            **shared,
            **own,
            "media_id": item["media_id"],
            "status": "failed" if error else "ok",
            "error": error,
            "audio_s": float(item.get("duration_s") or 0.0),
            "elapsed_s": float(elapsed_s),
            "processed_at": utc_now(),
        }
        return conform(pl.DataFrame([row]), state_model)

    new: dict[str, list[pl.DataFrame]] = {t: [] for t in stage.tables}
    started = time.perf_counter()
    load_s = 0.0
    if todo.height:
        t_load = time.perf_counter()
        with model.load() as loaded, _Prefetch(prepare, todo.iter_rows(named=True)) as items:
            load_s = time.perf_counter() - t_load
            for item, prepared in items:
                media_id, t0 = item["media_id"], time.perf_counter()
                if media_id in stale_state:  # a killed run's state row must not vouch for new rows
                    wh.unstage(stage.state_table, batch_id, media_id)
                try:
                    out = process(loaded, {**item, **prepared()})
                    reject_invalid_rows(stage, out.rows)  # never staged, never visible, if they break a rule
                except StorageUnavailable:  # not this file's fault: the step fails, a re-run resumes
                    raise
                except Exception as exc:  # one bad file must not fail the batch
                    context.log.error("%s failed for %s: %s", stage.name, media_id, traceback.format_exc(limit=3))
                    row = state_row(item, f"{type(exc).__name__}: {exc}", stage.failed_state, time.perf_counter() - t0)
                    wh.stage(stage.state_table, batch_id, media_id, row)
                    new[stage.state_table].append(row)
                    continue
                elapsed = time.perf_counter() - t0
                row = state_row(item, None, out.state, elapsed)
                # rows first, state last: a staged state row means the file's rows are staged too
                for table in stage.row_tables:
                    wh.stage(table, batch_id, media_id, out.rows[table])
                    new[table].append(out.rows[table])
                wh.stage(stage.state_table, batch_id, media_id, row)
                new[stage.state_table].append(row)
                context.log.info("%s: %s in %.1f s", media_id[:12], out.summary or stage.verb, elapsed)

    tables = fold(wh, batch_id, stage, prev, new, wanted["media_id"])
    tag_failed_files(context, stage.state_table, tables[stage.state_table])
    run_state = pl.concat(new[stage.state_table]) if new[stage.state_table] else empty(state_model)
    media = wh.read_table("media", batch_id)
    sources = media.select("media_id", "source_uri") if media is not None and "source_uri" in media.columns else None
    return StepResult(stage, model_meta, tables, run_state, kept, load_s, time.perf_counter() - started, sources)
