"""``transcripts``, ``segments``, ``words``: WhisperX over every usable file of a batch.

The model is loaded once per run and only if some file needs it: files already transcribed
with the same model version (``transcripts.model_version``) are kept as they are, so a
re-run of a finished batch costs a few table reads. Inference runs in the ``gpu``
concurrency pool, one model on the device at a time.
"""

import datetime as dt
import time
import traceback

import dagster as dg
import polars as pl

from ..partitions import batch_partitions
from ..resources import AsrModelResource, WarehouseResource
from ..schemas import Segments, Transcripts, Words, conform
from ..speech.asr import Transcriber, Transcript
from ..speech.decode import load_flac
from ..storage import Warehouse
from .checks import markdown_table, schema_check_result, schema_check_spec, table_schema

TABLES = ("transcripts", "segments", "words")
GPU_POOL = "gpu"


def transcript_frames(batch_id: str, media_id: str, tx: Transcript) -> tuple[pl.DataFrame, pl.DataFrame]:
    seg_rows, word_rows = [], []
    for seg_id, seg in enumerate(tx.segments):
        seg_rows.append(
            {
                "batch_id": batch_id,
                "media_id": media_id,
                "segment_id": seg_id,
                "start_s": float(seg.start_s),
                "end_s": float(seg.end_s),
                "text": seg.text,
                "language": tx.language,
                "speaker": None,
                "avg_logprob": seg.avg_logprob,
            }
        )
        for idx, w in enumerate(seg.words):
            word_rows.append(
                {
                    "batch_id": batch_id,
                    "media_id": media_id,
                    "segment_id": seg_id,
                    "word_index": idx,
                    "word": w.word,
                    "start_s": float(w.start_s),
                    "end_s": float(w.end_s),
                    "score": None if w.score != w.score else float(w.score),  # NaN -> null
                    "speaker": None,
                    "timing_source": w.timing_source,
                }
            )
    segments = conform(pl.DataFrame(seg_rows), Segments) if seg_rows else conform(pl.DataFrame(), Segments).clear()
    words = conform(pl.DataFrame(word_rows), Words) if word_rows else conform(pl.DataFrame(), Words).clear()
    return segments, words


def _state_row(
    batch_id,
    media_id,
    *,
    status,
    error=None,
    tx: Transcript | None = None,
    audio_s=0.0,
    elapsed_s=0.0,
    asr_model="",
    model_version="",
    timing_method="",
) -> pl.DataFrame:
    row = {
        "batch_id": batch_id,
        "media_id": media_id,
        "status": status,
        "error": error,
        "language": tx.language if tx else None,
        "language_probability": tx.language_probability if tx else None,
        "n_segments": len(tx.segments) if tx else 0,
        "n_words": tx.n_words if tx else 0,
        "audio_s": float(audio_s),
        "elapsed_s": float(elapsed_s),
        "asr_model": asr_model,
        "model_version": model_version,
        "timing_method": timing_method,
        "processed_at": dt.datetime.now(dt.UTC),
    }
    return conform(pl.DataFrame([row]), Transcripts)


def _empty(model) -> pl.DataFrame:
    return conform(pl.DataFrame(), model).clear()


def _load_previous(wh: Warehouse, batch_id: str) -> dict[str, pl.DataFrame]:
    """Visible tables of the batch, with staged results of an unfinished run taking precedence."""
    models = {"transcripts": Transcripts, "segments": Segments, "words": Words}
    out = {}
    for table, model in models.items():
        visible = wh.read_table(table, batch_id)
        visible = conform(visible, model) if visible is not None else _empty(model)
        staged = wh.staged(table, batch_id)
        if staged:
            staged_df = pl.concat([conform(df, model) for df in staged.values()])
            staged_ids = list(staged.keys())
            visible = pl.concat([visible.filter(~pl.col("media_id").is_in(staged_ids)), staged_df])
        out[table] = visible
    # staged segments/words of a file whose state row was not staged yet are incomplete: drop
    done_ids = out["transcripts"]["media_id"].implode()
    out["segments"] = out["segments"].filter(pl.col("media_id").is_in(done_ids))
    out["words"] = out["words"].filter(pl.col("media_id").is_in(done_ids))
    return out


def _spec(table: str, description: str, *kinds: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table,
        deps=["media", "audio"],
        description=description,
        kinds={"parquet", *kinds},
        group_name="transcription",
        metadata={"dagster/column_schema": table_schema(table)},
    )


@dg.multi_asset(
    specs=[
        _spec("transcripts", "Per media item: transcription status, language, counts, model and version.", "whisperx"),
        _spec("segments", "Sentences with start/end, text, language and speaker."),
        _spec("words", "Words with start/end, score, speaker, and how the timing was obtained."),
    ],
    check_specs=[schema_check_spec(t) for t in TABLES],
    partitions_def=batch_partitions,
    pool=GPU_POOL,
)
def transcribe(context: dg.AssetExecutionContext, warehouse: WarehouseResource, asr: AsrModelResource):
    """Transcribe every usable file of the batch that lacks a current transcript."""
    batch_id = context.partition_key
    wh = warehouse.get()
    media = wh.read_table("media", batch_id)
    audio = wh.read_table("audio", batch_id)
    if media is None or audio is None:
        raise dg.Failure(f"batch {batch_id!r} has no media/audio tables yet; materialize `media` first")
    resolved = asr.resolved()
    options = asr.options()
    timing = f"alignment:{options.align_model}" if options.align_model else "cross_attention"
    model_version = f"{resolved.version}|{timing}"
    wanted = (
        media.filter(pl.col("status") == "ok")
        .select("media_id")
        .join(audio.select("media_id", "audio_uri", "duration_s"), on="media_id")
        .unique("media_id")
        .sort("media_id")
    )
    prev = _load_previous(wh, batch_id)
    current = prev["transcripts"].filter(
        (pl.col("status") == "ok")
        & (pl.col("model_version") == model_version)
        & pl.col("media_id").is_in(wanted["media_id"].implode())
    )
    keep_ids = current["media_id"].implode()
    todo = wanted.filter(~pl.col("media_id").is_in(keep_ids))
    context.log.info(
        "batch %s: %d usable files, %d current, %d to transcribe with %s",
        batch_id,
        wanted.height,
        current.height,
        todo.height,
        model_version,
    )

    new_state, new_segments, new_words = [], [], []
    started = time.perf_counter()
    load_s = 0.0
    if todo.height:
        transcriber: Transcriber = asr.transcriber()
        t_load = time.perf_counter()
        with transcriber:
            load_s = time.perf_counter() - t_load
            for media_id, audio_uri, duration_s in todo.iter_rows():
                t0 = time.perf_counter()
                try:
                    samples = load_flac(wh.get_bytes(audio_uri))
                    tx = transcriber.transcribe(samples)
                except Exception as exc:  # one bad file must not fail the batch
                    context.log.error("transcription failed for %s: %s", media_id, traceback.format_exc(limit=3))
                    state = _state_row(
                        batch_id,
                        media_id,
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}",
                        audio_s=duration_s,
                        elapsed_s=time.perf_counter() - t0,
                        asr_model=resolved.spec,
                        model_version=model_version,
                        timing_method=timing,
                    )
                    wh.stage("transcripts", batch_id, media_id, state)
                    new_state.append(state)
                    continue
                elapsed = time.perf_counter() - t0
                segments, words = transcript_frames(batch_id, media_id, tx)
                state = _state_row(
                    batch_id,
                    media_id,
                    status="ok",
                    tx=tx,
                    audio_s=duration_s,
                    elapsed_s=elapsed,
                    asr_model=resolved.spec,
                    model_version=model_version,
                    timing_method=timing,
                )
                # rows first, state last: a staged state row means the file's rows are staged too
                wh.stage("segments", batch_id, media_id, segments)
                wh.stage("words", batch_id, media_id, words)
                wh.stage("transcripts", batch_id, media_id, state)
                new_state.append(state)
                new_segments.append(segments)
                new_words.append(words)
                context.log.info(
                    "%s: %d words in %.1f s (%.1f s of audio)", media_id[:12], tx.n_words, elapsed, duration_s
                )

    redone = (
        pl.concat([s["media_id"] for s in new_state]).implode() if new_state else pl.Series([], dtype=pl.Utf8).implode()
    )
    still_wanted = wanted["media_id"].implode()

    def merged(table: str, new: list[pl.DataFrame], model) -> pl.DataFrame:
        old = prev[table].filter(pl.col("media_id").is_in(still_wanted) & ~pl.col("media_id").is_in(redone))
        return pl.concat([old, *new])

    state = merged("transcripts", new_state, Transcripts).sort("media_id")
    segments = merged("segments", new_segments, Segments).sort("media_id", "segment_id")
    words = merged("words", new_words, Words).sort("media_id", "segment_id", "word_index")
    wh.write_table("segments", segments, batch_id)
    wh.write_table("words", words, batch_id)
    wh.write_table("transcripts", state, batch_id)
    for table in TABLES:
        wh.clear_staging(table, batch_id)

    run_state = pl.concat(new_state) if new_state else _empty(Transcripts)
    run_ok = run_state.filter(pl.col("status") == "ok")
    audio_s = float(run_ok["audio_s"].sum() or 0)
    infer_s = float(run_ok["elapsed_s"].sum() or 0)
    failed = state.filter(pl.col("status") == "failed")
    common = {"model": resolved.spec, "model_version": model_version}
    yield dg.MaterializeResult(
        asset_key="transcripts",
        metadata={
            **common,
            "dagster/row_count": state.height,
            "files_transcribed_this_run": run_ok.height,
            "files_current_kept": current.height,
            "files_failed": failed.height,
            "audio_hours_this_run": round(audio_s / 3600, 4),
            "inference_s": round(infer_s, 2),
            "model_load_s": round(load_s, 2),
            "elapsed_s": round(time.perf_counter() - started, 2),
            "real_time_factor": round(infer_s / audio_s, 4) if audio_s else 0.0,
            "device": options.device,
            "compute_type": options.compute_type,
            "batch_size": options.batch_size,
            "failures": dg.MetadataValue.md(markdown_table(failed.select("media_id", "error").head(100))),
        },
    )
    yield dg.MaterializeResult(asset_key="segments", metadata={**common, "dagster/row_count": segments.height})
    yield dg.MaterializeResult(asset_key="words", metadata={**common, "dagster/row_count": words.height})
    yield schema_check_result("transcripts", state)
    yield schema_check_result("segments", segments)
    yield schema_check_result("words", words)
