"""``transcripts``, ``asr_segments``, ``asr_words``: WhisperX over every usable file of a batch.

The analyst-facing ``segments`` and ``words`` tables are made from these plus the speaker
turns (``assets/speakers.py``), so they always carry a speaker.

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

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import AsrModelResource, WarehouseResource
from ..schemas import AsrSegments, AsrWords, Transcripts, conform
from ..speech.asr import Transcriber, Transcript
from ..speech.decode import load_flac
from .checks import (
    failed_files_check_result,
    failed_files_check_spec,
    markdown_table,
    schema_check_result,
    schema_check_spec,
    table_spec,
)
from .perfile import ReprocessConfig, current_ids, data_version, empty, fold, forced_ids, load_previous, usable_audio

TABLES = ("transcripts", "asr_segments", "asr_words")
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
                    "timing_source": w.timing_source,
                }
            )
    segments = conform(pl.DataFrame(seg_rows), AsrSegments) if seg_rows else empty(AsrSegments)
    words = conform(pl.DataFrame(word_rows), AsrWords) if word_rows else empty(AsrWords)
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


def _spec(table: str, description: str, *kinds: str) -> dg.AssetSpec:
    return table_spec(table, description, group="transcription", deps=["media", "audio"], kinds=kinds)


@dg.multi_asset(
    specs=[
        _spec("transcripts", "Per media item: transcription status, language, counts, model and version.", "whisperx"),
        _spec("asr_segments", "ASR sentences with start/end, text and language, before speakers (internal)."),
        _spec(
            "asr_words", "ASR words with start/end, score and how the timing was obtained, before speakers (internal)."
        ),
    ],
    check_specs=[*(schema_check_spec(t) for t in TABLES), failed_files_check_spec("transcripts")],
    partitions_def=batch_partitions,
    pool=GPU_POOL,
    op_tags=MODEL_STEP_TAGS,  # the `gpu` queue when steps run on Celery
)
def transcribe(
    context: dg.AssetExecutionContext, config: ReprocessConfig, warehouse: WarehouseResource, asr: AsrModelResource
):
    """Transcribe every usable file of the batch that lacks a current transcript."""
    batch_id = context.partition_key
    wh = warehouse.get()
    resolved = asr.resolved()
    options = asr.options()
    timing = f"alignment:{options.align_model}" if options.align_model else "cross_attention"
    model_version = f"{resolved.version}|{timing}"
    wanted = usable_audio(wh, batch_id, "transcripts")
    models = {"transcripts": Transcripts, "asr_segments": AsrSegments, "asr_words": AsrWords}
    prev = load_previous(wh, batch_id, models, "transcripts")
    current = current_ids(prev["transcripts"], wanted["media_id"], model_version)
    forced = forced_ids(wh, batch_id, wanted["media_id"], config.force)
    if forced:
        context.log.info("forced to redo %d file(s): %s", len(forced), sorted(forced))
        current = current.filter(~pl.col("media_id").is_in(list(forced)))
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
                wh.stage("asr_segments", batch_id, media_id, segments)
                wh.stage("asr_words", batch_id, media_id, words)
                wh.stage("transcripts", batch_id, media_id, state)
                new_state.append(state)
                new_segments.append(segments)
                new_words.append(words)
                context.log.info(
                    "%s: %d words in %.1f s (%.1f s of audio)", media_id[:12], tx.n_words, elapsed, duration_s
                )

    tables = fold(
        wh,
        batch_id,
        prev,
        {"transcripts": new_state, "asr_segments": new_segments, "asr_words": new_words},
        wanted["media_id"],
        "transcripts",
        {
            "transcripts": ["media_id"],
            "asr_segments": ["media_id", "segment_id"],
            "asr_words": ["media_id", "segment_id", "word_index"],
        },
    )
    state, segments, words = tables["transcripts"], tables["asr_segments"], tables["asr_words"]

    run_state = pl.concat(new_state) if new_state else empty(Transcripts)
    run_ok = run_state.filter(pl.col("status") == "ok")
    audio_s = float(run_ok["audio_s"].sum() or 0)
    infer_s = float(run_ok["elapsed_s"].sum() or 0)
    failed = state.filter(pl.col("status") == "failed")
    common = {"model": resolved.spec, "model_version": model_version}
    yield dg.MaterializeResult(
        asset_key="transcripts",
        data_version=data_version(state),
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
    yield dg.MaterializeResult(asset_key="asr_segments", metadata={**common, "dagster/row_count": segments.height})
    yield dg.MaterializeResult(asset_key="asr_words", metadata={**common, "dagster/row_count": words.height})
    yield schema_check_result("transcripts", state)
    yield schema_check_result("asr_segments", segments)
    yield schema_check_result("asr_words", words)
    yield failed_files_check_result("transcripts", state)
