"""Speakers: diarization, a speaker on every word, and archive-wide speaker identity.

Per batch (partitioned by ``batches``):

- ``diarize`` -> ``diarization`` (per-file state), ``speaker_turns``, ``speaker_embeddings``:
  one pyannote pipeline loaded once per run, in the ``gpu`` pool, skipping files already
  diarized with the same model version;
- ``attribute_speakers`` -> ``segments``, ``words``: the ASR output joined with the turns
  (``speech/attribute.py``); pure CPU, recomputed for the whole batch each time.

Archive-wide (not partitioned):

- ``cluster_speakers`` -> ``speaker_clusters``, ``speaker_centroids``,
  ``speaker_suggestions``. ``mode: incremental`` assigns the speakers of the named batches
  to existing voices (run by a sensor whenever ``speaker_embeddings`` lands for a batch);
  ``mode: full`` re-clusters everything (the nightly schedule). Both keep ids stable
  (``speech/cluster.py``).
"""

import base64
import datetime as dt
import time
import traceback
from typing import Literal

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import DiarizationModelResource, SpeakerClusteringResource, WarehouseResource
from ..schemas import (
    EMBEDDING_DIM,
    AsrSegments,
    AsrWords,
    Diarization,
    Segments,
    SpeakerClusters,
    SpeakerEmbeddings,
    SpeakerProfiles,
    SpeakerTurns,
    Words,
    conform,
)
from ..speech.attribute import attribute_file
from ..speech.cluster import assign_new, recluster
from ..speech.decode import load_flac
from ..speech.diarize import Turn
from ..storage import Warehouse
from .checks import (
    failed_files_check_result,
    failed_files_check_spec,
    markdown_table,
    schema_check_result,
    schema_check_spec,
    table_schema,
    table_spec,
)
from .perfile import ReprocessConfig, current_ids, data_version, empty, fold, forced_ids, load_previous, usable_audio
from .speaker_state import (
    PROFILES,
    SUGGESTIONS,
    cluster_batches,
    follow_merges,
    load_index,
    read_clusters,
    read_small,
    remove_cluster_part,
    save_index,
    speaker_map_png,
    suggest,
    unknown_profile_ids,
    write_cluster_part,
)
from .transcripts import GPU_POOL

DIARIZE_TABLES = ("diarization", "speaker_turns", "speaker_embeddings")
SPEAKER_INDEX_POOL = "speaker_index"
GROUP = "speakers"


def _spec(table: str, description: str, deps: list[str], *kinds: str) -> dg.AssetSpec:
    return table_spec(table, description, group=GROUP, deps=deps, kinds=kinds)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- diarization


def diarization_frames(batch_id: str, media_id: str, result, model: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    turns = pl.DataFrame(
        {
            "batch_id": batch_id,
            "media_id": media_id,
            "start_s": [t.start_s for t in result.turns],
            "end_s": [t.end_s for t in result.turns],
            "speaker": [t.speaker for t in result.turns],
        },
        schema_overrides={"start_s": pl.Float64, "end_s": pl.Float64, "speaker": pl.Utf8},
    )
    vectors = (
        np.stack([v.embedding for v in result.voices]) if result.voices else np.zeros((0, EMBEDDING_DIM), np.float32)
    )
    embeddings = pl.DataFrame(
        {
            "batch_id": [batch_id] * len(result.voices),
            "media_id": [media_id] * len(result.voices),
            "speaker": [v.speaker for v in result.voices],
            "embedding": pl.Series(vectors.astype(np.float32), dtype=pl.Array(pl.Float32, EMBEDDING_DIM)),
            "speech_s": [float(v.speech_s) for v in result.voices],
            "model": [model] * len(result.voices),
        }
    )
    return conform(turns, SpeakerTurns), conform(embeddings, SpeakerEmbeddings)


def _state(batch_id, media_id, *, status, pipeline, embedding_model, model_version, **kw) -> pl.DataFrame:
    row = {
        "batch_id": batch_id,
        "media_id": media_id,
        "status": status,
        "error": kw.get("error"),
        "note": kw.get("note"),
        "n_speakers": kw.get("n_speakers", 0),
        "n_turns": kw.get("n_turns", 0),
        "speech_s": float(kw.get("speech_s", 0.0)),
        "audio_s": float(kw.get("audio_s", 0.0)),
        "elapsed_s": float(kw.get("elapsed_s", 0.0)),
        "pipeline": pipeline,
        "embedding_model": embedding_model,
        "model_version": model_version,
        "processed_at": _now(),
    }
    return conform(pl.DataFrame([row]), Diarization)


@dg.multi_asset(
    specs=[
        _spec(
            "diarization", "Per media item: diarization status, speakers, pipeline and version.", ["audio"], "pyannote"
        ),
        _spec("speaker_turns", "Who spoke when: file-local speaker turns.", ["audio"]),
        _spec(
            "speaker_embeddings",
            "One unit vector per (media, local speaker), its model and seconds of speech.",
            ["audio"],
        ),
    ],
    check_specs=[*(schema_check_spec(t) for t in DIARIZE_TABLES), failed_files_check_spec("diarization")],
    partitions_def=batch_partitions,
    pool=GPU_POOL,
    op_tags=MODEL_STEP_TAGS,  # the `gpu` queue when steps run on Celery
)
def diarize(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    warehouse: WarehouseResource,
    diarization: DiarizationModelResource,
):
    """Diarize every usable file of the batch that lacks current turns and embeddings."""
    batch_id = context.partition_key
    wh = warehouse.get()
    wanted = usable_audio(wh, batch_id, "diarization")
    options = diarization.options()
    model_version = diarization.model_version()
    embedding_model = diarization.embedding_model()
    models = {"diarization": Diarization, "speaker_turns": SpeakerTurns, "speaker_embeddings": SpeakerEmbeddings}
    prev = load_previous(wh, batch_id, models, "diarization")
    current = current_ids(prev["diarization"], wanted["media_id"], model_version)
    forced = forced_ids(wh, batch_id, wanted["media_id"], config.force)
    if forced:
        context.log.info("forced to redo %d file(s): %s", len(forced), sorted(forced))
        current = current.filter(~pl.col("media_id").is_in(list(forced)))
    todo = wanted.filter(~pl.col("media_id").is_in(current["media_id"].implode()))
    context.log.info(
        "batch %s: %d usable files, %d current, %d to diarize with %s",
        batch_id,
        wanted.height,
        current.height,
        todo.height,
        model_version,
    )
    new: dict[str, list[pl.DataFrame]] = {t: [] for t in DIARIZE_TABLES}
    common = {"pipeline": options.pipeline, "embedding_model": embedding_model, "model_version": model_version}
    started = time.perf_counter()
    load_s = 0.0
    if todo.height:
        t_load = time.perf_counter()
        with diarization.diarizer() as diarizer:
            load_s = time.perf_counter() - t_load
            for media_id, audio_uri, duration_s in todo.iter_rows():
                t0 = time.perf_counter()
                try:
                    result = diarizer.diarize(load_flac(wh.get_bytes(audio_uri)))
                except Exception as exc:  # one bad file must not fail the batch
                    context.log.error("diarization failed for %s: %s", media_id, traceback.format_exc(limit=3))
                    row = _state(
                        batch_id,
                        media_id,
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}",
                        audio_s=duration_s,
                        elapsed_s=time.perf_counter() - t0,
                        **common,
                    )
                    wh.stage("diarization", batch_id, media_id, row)
                    new["diarization"].append(row)
                    continue
                turns, embeddings = diarization_frames(batch_id, media_id, result, embedding_model)
                row = _state(
                    batch_id,
                    media_id,
                    status="ok",
                    note=result.note,
                    n_speakers=len(result.speakers),
                    n_turns=len(result.turns),
                    speech_s=sum(v.speech_s for v in result.voices),
                    audio_s=duration_s,
                    elapsed_s=time.perf_counter() - t0,
                    **common,
                )
                # rows first, state last: a staged state row means the file's rows are staged too
                wh.stage("speaker_turns", batch_id, media_id, turns)
                wh.stage("speaker_embeddings", batch_id, media_id, embeddings)
                wh.stage("diarization", batch_id, media_id, row)
                for table, df in zip(DIARIZE_TABLES, (row, turns, embeddings)):
                    new[table].append(df)
                context.log.info(
                    "%s: %d speakers, %d turns in %.1f s",
                    media_id[:12],
                    len(result.speakers),
                    len(result.turns),
                    time.perf_counter() - t0,
                )
    tables = fold(
        wh,
        batch_id,
        prev,
        new,
        wanted["media_id"],
        "diarization",
        {
            "diarization": ["media_id"],
            "speaker_turns": ["media_id", "start_s", "speaker"],
            "speaker_embeddings": ["media_id", "speaker"],
        },
    )
    state_df = tables["diarization"]
    run_state = pl.concat(new["diarization"]) if new["diarization"] else empty(Diarization)
    run_ok = run_state.filter(pl.col("status") == "ok")
    audio_s = float(run_ok["audio_s"].sum() or 0)
    infer_s = float(run_ok["elapsed_s"].sum() or 0)
    failed = state_df.filter(pl.col("status") == "failed")
    notes = state_df.filter(pl.col("note").is_not_null())
    meta = {"pipeline": options.pipeline, "model_version": model_version, "embedding_model": embedding_model}
    yield dg.MaterializeResult(
        asset_key="diarization",
        data_version=data_version(state_df),
        metadata={
            **meta,
            "dagster/row_count": state_df.height,
            "files_diarized_this_run": run_ok.height,
            "files_current_kept": current.height,
            "files_failed": failed.height,
            "speakers_per_file_mean": round(float(state_df["n_speakers"].mean() or 0), 3),
            "audio_hours_this_run": round(audio_s / 3600, 4),
            "inference_s": round(infer_s, 2),
            "model_load_s": round(load_s, 2),
            "elapsed_s": round(time.perf_counter() - started, 2),
            "real_time_factor": round(infer_s / audio_s, 4) if audio_s else 0.0,
            "device": options.device,
            "failures": dg.MetadataValue.md(markdown_table(failed.select("media_id", "error").head(100))),
            "notes": dg.MetadataValue.md(markdown_table(notes.select("media_id", "note").head(100))),
        },
    )
    yield dg.MaterializeResult(
        asset_key="speaker_turns", metadata={**meta, "dagster/row_count": tables["speaker_turns"].height}
    )
    yield dg.MaterializeResult(
        asset_key="speaker_embeddings", metadata={**meta, "dagster/row_count": tables["speaker_embeddings"].height}
    )
    for table in DIARIZE_TABLES:
        yield schema_check_result(table, tables[table])
    yield failed_files_check_result("diarization", state_df)


# --------------------------------------------------------------------------- attribution


def attribute_batch(
    batch_id: str,
    asr_segments: pl.DataFrame,
    asr_words: pl.DataFrame,
    turns: pl.DataFrame,
    diarized_ok: set[str],
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """segments and words of the batch with speakers; also the media ids that fell back to
    SPEAKER_00 (words heard, but diarization found no speech)."""
    seg_by = asr_segments.partition_by("media_id", as_dict=True)
    word_by = asr_words.partition_by("media_id", as_dict=True)
    turn_by = turns.partition_by("media_id", as_dict=True)
    out_s, out_w, fallback = [], [], []
    for (media_id,), segs in seg_by.items():
        words = word_by.get((media_id,))
        words_rows = words.to_dicts() if words is not None else []
        if media_id not in diarized_ok:  # diarization failed or not run: speaker stays null
            out_s.append(segs.with_columns(speaker=pl.lit(None, pl.Utf8)))
            if words is not None:
                out_w.append(
                    words.with_columns(speaker=pl.lit(None, pl.Utf8), speaker_overlap=pl.lit(None, pl.Float64))
                )
            continue
        tdf = turn_by.get((media_id,))
        file_turns = (
            [Turn(*r) for r in tdf.select("start_s", "end_s", "speaker").iter_rows()] if tdf is not None else []
        )
        if not file_turns and words_rows:
            # words were heard where diarization found no speech: one speaker, documented
            start = min(w["start_s"] for w in words_rows)
            end = max(w["end_s"] for w in words_rows)
            file_turns = [Turn(start, max(end, start), "SPEAKER_00")]
            fallback.append(media_id)
        seg_rows, word_rows = attribute_file(segs.to_dicts(), words_rows, file_turns)
        out_s.append(pl.DataFrame(seg_rows, infer_schema_length=None))
        if word_rows:
            out_w.append(pl.DataFrame(word_rows, infer_schema_length=None))
    segments = pl.concat([conform(df, Segments) for df in out_s]) if out_s else empty(Segments)
    words = pl.concat([conform(df, Words) for df in out_w]) if out_w else empty(Words)
    segments = segments.with_columns(batch_id=pl.lit(batch_id)).sort("media_id", "segment_id")
    words = words.with_columns(batch_id=pl.lit(batch_id)).sort("media_id", "segment_id", "word_index")
    return segments, words, fallback


WORDS_HAVE_SPEAKERS = "every_word_has_a_speaker"


@dg.multi_asset(
    specs=[
        _spec(
            "segments",
            "Sentences with start/end, text, language and speaker, split where the speaker changes.",
            ["asr_segments", "asr_words", "speaker_turns", "diarization"],
        ),
        _spec(
            "words",
            "Words with start/end, score, speaker and how timing and speaker were obtained.",
            ["asr_segments", "asr_words", "speaker_turns", "diarization"],
        ),
    ],
    check_specs=[
        schema_check_spec("segments"),
        schema_check_spec("words"),
        dg.AssetCheckSpec(
            WORDS_HAVE_SPEAKERS,
            asset="words",
            description="No word of a successfully diarized file lacks a speaker.",
            blocking=True,
        ),
    ],
    partitions_def=batch_partitions,
)
def attribute_speakers(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Give every word and segment its file-local speaker (CPU only, whole batch)."""
    batch_id = context.partition_key
    wh = warehouse.get()
    asr_segments = wh.read_table("asr_segments", batch_id)
    asr_words = wh.read_table("asr_words", batch_id)
    diar = wh.read_table("diarization", batch_id)
    if asr_segments is None or asr_words is None or diar is None:
        raise dg.Failure(f"batch {batch_id!r}: materialize `transcripts` and `diarization` before `segments`")
    turns = wh.read_table("speaker_turns", batch_id)
    turns = conform(turns, SpeakerTurns) if turns is not None else empty(SpeakerTurns)
    ok = set(diar.filter(pl.col("status") == "ok")["media_id"].to_list())
    segments, words, fallback = attribute_batch(
        batch_id, conform(asr_segments, AsrSegments), conform(asr_words, AsrWords), turns, ok
    )
    wh.write_table("segments", segments, batch_id)
    wh.write_table("words", words, batch_id)
    missing = words.filter(pl.col("speaker").is_null() & pl.col("media_id").is_in(list(ok)))
    no_diarization = sorted(set(words["media_id"].to_list()) - ok)
    nearest = words.filter(pl.col("speaker_overlap") == 0.0).height
    meta = {
        "files_without_diarization": len(no_diarization),
        "files_single_speaker_fallback": len(fallback),
        "words_by_nearest_turn": nearest,
    }
    yield dg.MaterializeResult(asset_key="segments", metadata={"dagster/row_count": segments.height, **meta})
    yield dg.MaterializeResult(asset_key="words", metadata={"dagster/row_count": words.height, **meta})
    yield schema_check_result("segments", segments)
    yield schema_check_result("words", words)
    yield dg.AssetCheckResult(
        asset_key="words",
        check_name=WORDS_HAVE_SPEAKERS,
        passed=missing.height == 0,
        metadata={
            "words_without_speaker": missing.height,
            "files_with_failed_diarization": dg.MetadataValue.md(
                markdown_table(pl.DataFrame({"media_id": no_diarization}, schema={"media_id": pl.Utf8}).head(100))
            ),
        },
    )


# --------------------------------------------------------------------------- clustering


class ClusterConfig(dg.Config):
    mode: Literal["full", "incremental"] = Field(
        default="full", description="full: re-cluster the archive; incremental: assign the speakers of `batch_ids`"
    )
    batch_ids: list[str] = Field(default_factory=list, description="batches to assign (incremental mode)")


PROFILE_IDS_CHECK = "profiles_name_known_speakers"


def _embeddings(wh: Warehouse, batch_ids: list[str] | None) -> pl.DataFrame:
    if batch_ids is None:
        df = wh.scan("speaker_embeddings")
        return conform(df, SpeakerEmbeddings) if df is not None else empty(SpeakerEmbeddings)
    frames = [f for b in batch_ids if (f := wh.read_table("speaker_embeddings", b)) is not None]
    return pl.concat([conform(f, SpeakerEmbeddings) for f in frames]) if frames else empty(SpeakerEmbeddings)


def _cluster_rows(emb: pl.DataFrame, ids: list[str], sims: np.ndarray, method: str) -> pl.DataFrame:
    df = emb.select("batch_id", "media_id", "speaker", "model").with_columns(
        global_speaker_id=pl.Series(ids, dtype=pl.Utf8),
        similarity=pl.Series(np.clip(sims, -1, 1), dtype=pl.Float64),
        method=pl.lit(method),
        clustered_at=pl.lit(_now()),
    )
    return conform(df, SpeakerClusters)


@dg.multi_asset(
    specs=[
        _spec(
            "speaker_clusters",
            "Archive-wide: the global speaker id of every (media, local speaker).",
            ["speaker_embeddings", "speaker_profiles"],
        ),
        _spec(
            "speaker_centroids",
            "Clustering state: one centroid per global id; merged ids point to their heir.",
            ["speaker_embeddings"],
        ),
        _spec(
            "speaker_suggestions",
            "Unnamed global speakers close to a named one, with a confidence.",
            ["speaker_profiles"],
        ),
    ],
    check_specs=[
        schema_check_spec("speaker_clusters"),
        schema_check_spec("speaker_centroids"),
        schema_check_spec("speaker_suggestions"),
        dg.AssetCheckSpec(
            PROFILE_IDS_CHECK,
            asset="speaker_suggestions",
            description="Every name in speaker_profiles refers to a global id the clustering knows.",
        ),
    ],
    pool=SPEAKER_INDEX_POOL,
)
def cluster_speakers(
    context: dg.AssetExecutionContext,
    config: ClusterConfig,
    warehouse: WarehouseResource,
    diarization: DiarizationModelResource,
    clustering: SpeakerClusteringResource,
):
    """Global speaker ids: assign new batches (incremental) or re-cluster everything (full)."""
    wh = warehouse.get()
    model = diarization.embedding_model()
    params = clustering.params()
    started = time.perf_counter()
    if config.mode == "incremental" and not config.batch_ids:
        raise dg.Failure("incremental clustering needs batch_ids (the sensor and the CLI pass them)")
    emb_all = _embeddings(wh, None if config.mode == "full" else config.batch_ids)
    other = emb_all.filter(pl.col("model") != model)
    emb = emb_all.filter(pl.col("model") == model)
    if other.height:
        context.log.warning(
            "%d speaker embeddings were made by another model than %s (batches %s): they are not "
            "clustered (vectors of different models are never compared); re-materialize "
            "`diarization` for those batches to include them",
            other.height,
            model,
            sorted(set(other["batch_id"].to_list()))[:20],
        )
    index, centroid_rows = load_index(wh, model)
    report = None
    if config.mode == "full":
        prev = read_clusters(wh)
        prev_map = dict(
            zip(zip(prev["media_id"].to_list(), prev["speaker"].to_list()), prev["global_speaker_id"].to_list())
        )
        previous = [prev_map.get(k) for k in zip(emb["media_id"].to_list(), emb["speaker"].to_list())]
        X = emb["embedding"].to_numpy() if emb.height else np.zeros((0, EMBEDDING_DIM), np.float32)
        ids, sims, index, report = recluster(X, emb["speech_s"].to_numpy(), previous, index, params)
        written = _cluster_rows(emb, ids, sims, "full")
        touched = sorted(set(written["batch_id"].to_list()))
        for batch_id, part in written.partition_by("batch_id", as_dict=True).items():
            write_cluster_part(wh, batch_id[0], part.sort("media_id", "speaker"))
        for batch_id in set(cluster_batches(wh)) - set(touched):
            remove_cluster_part(wh, batch_id)  # batches whose speakers are gone or of another model
    else:
        prev = read_clusters(wh, config.batch_ids)
        known = prev.filter(pl.col("model") == model).select("media_id", "speaker", "global_speaker_id")
        known = known.with_columns(global_speaker_id=pl.col("global_speaker_id").map_elements(index.resolve, pl.Utf8))
        joined = emb.join(known, on=["media_id", "speaker"], how="left")
        todo = joined.filter(pl.col("global_speaker_id").is_null())
        new_ids, new_sims = assign_new(
            index,
            todo["embedding"].to_numpy() if todo.height else np.zeros((0, EMBEDDING_DIM)),
            todo["speech_s"].to_numpy(),
            params,
        )
        kept = joined.filter(pl.col("global_speaker_id").is_not_null())
        pos = {g: k for k, g in enumerate(index.ids)}
        kept_sims = [
            float(index.centroids[pos[g]] @ np.asarray(v)) if g in pos else 1.0
            for g, v in zip(kept["global_speaker_id"].to_list(), kept["embedding"].to_list())
        ]
        written = pl.concat(
            [
                _cluster_rows(kept, kept["global_speaker_id"].to_list(), np.asarray(kept_sims), "incremental"),
                _cluster_rows(todo, new_ids, new_sims, "incremental"),
            ]
        )
        touched = sorted(config.batch_ids)
        by_batch = written.partition_by("batch_id", as_dict=True)
        for batch_id in touched:
            part = by_batch.get((batch_id,))
            if part is not None:
                write_cluster_part(wh, batch_id, part.sort("media_id", "speaker"))
            else:
                remove_cluster_part(wh, batch_id)
    centroids = save_index(wh, index, centroid_rows)
    profiles = read_small(wh, PROFILES, SpeakerProfiles)
    conflicts: list[str] = []
    if report is not None and report.merges:
        profiles, conflicts = follow_merges(profiles, report.merges)
        wh.write_table(PROFILES, profiles)
    suggestions = suggest(index, profiles, clustering.accept_threshold, clustering.suggest_threshold)
    wh.write_table(SUGGESTIONS, suggestions)
    unknown = unknown_profile_ids(profiles, centroids)

    elapsed = time.perf_counter() - started
    meta = {
        "mode": config.mode,
        "model": model,
        "threshold": params.threshold,
        "local_speakers_this_run": written.height,
        "global_speakers_active": len(index),
        "embeddings_of_other_models_skipped": other.height,
        "elapsed_s": round(elapsed, 3),
    }
    if report is not None:
        meta |= {
            "ids_kept": report.kept_ids,
            "ids_new": report.new_ids,
            "merges": dg.MetadataValue.md(
                markdown_table(pl.DataFrame(report.merges, schema=["retired_id", "into"], orient="row"))
            ),
            "splits": dg.MetadataValue.md(
                markdown_table(pl.DataFrame(report.splits, schema=["id", "new_id"], orient="row"))
            ),
        }
    else:
        meta |= {"batches": ", ".join(touched)[:2000], "new_local_speakers_assigned": len(new_ids)}
    if written.height:
        png = speaker_map_png(
            np.asarray(
                written.join(emb.select("media_id", "speaker", "embedding"), on=["media_id", "speaker"])[
                    "embedding"
                ].to_numpy()
            ),
            written["global_speaker_id"].to_list(),
        )
        wh.put_bytes(wh.path("_reports", "speaker_map.png"), png)
        meta["speaker_map"] = dg.MetadataValue.md(
            f"![speaker map](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
    yield dg.MaterializeResult(asset_key="speaker_clusters", metadata={**meta, "dagster/row_count": written.height})
    yield dg.MaterializeResult(
        asset_key="speaker_centroids", metadata={"dagster/row_count": centroids.height, "model": model}
    )
    yield dg.MaterializeResult(
        asset_key="speaker_suggestions",
        metadata={
            "dagster/row_count": suggestions.height,
            "named_speakers": profiles.height,
            "name_conflicts_on_merge": dg.MetadataValue.md("\n".join(f"- {c}" for c in conflicts) or "(none)"),
        },
    )
    yield schema_check_result("speaker_clusters", written)
    yield schema_check_result("speaker_centroids", centroids)
    yield schema_check_result("speaker_suggestions", suggestions)
    yield dg.AssetCheckResult(
        asset_key="speaker_suggestions",
        check_name=PROFILE_IDS_CHECK,
        passed=not unknown,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unknown_ids": ", ".join(unknown) or "(none)"},
    )


speaker_profiles = dg.AssetSpec(
    "speaker_profiles",
    description="Names people gave to global speakers (`opentranscribe speakers name ID NAME`).",
    kinds={"parquet"},
    group_name=GROUP,
    metadata={"dagster/column_schema": table_schema("speaker_profiles")},
)
