"""``chunks`` (+ ``chunk_files``), ``search_index``, ``speakers_index``: the archive searchable.

- ``embed_chunks`` (job ``transcribe_batch``, after ``segments``/``words``): a model stage on
  the per-file model step. Per file: passages of one speaker's turn (``search/chunking.py``)
  embedded with the text model. Resumable per file like transcription; a file whose words or
  speakers changed upstream (another ``source_digest``) is re-chunked, and so is every file
  when the model or the chunker changes (``model_version``).
- ``search_index`` (job ``publish_batch``, after clustering: it carries global speaker ids):
  the batch's chunks written to the search backend (``search/service.py``), with an asset
  check comparing the documents indexed with the ``chunks`` table.
- ``speakers_index`` (jobs ``assign_speakers``, ``recluster_speakers``): one document per
  active global voice, so ``opentranscribe speakers similar`` is a k-NN query.
"""

import dagster as dg
import numpy as np
import polars as pl

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..resources.search import SearchResource, TextEmbeddingResource
from ..schemas import TEXT_EMBEDDING_DIM, Chunks, conform
from ..search.backends import SearchUnavailable
from ..search.chunking import chunk_file, source_digest
from ..search.embedding import TextEmbedder
from ..search.service import index_batch, refresh_speakers, resync_speaker_ids
from ..settings import GPU_POOL, SEARCH_INDEX_POOL
from .checks import check_spec, table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, empty, run_model_step, with_staged

GROUP = "search"
INDEX_CHECK = "indexed_chunks_match_table"

STAGE = ModelStage(
    name="chunking",
    state_table="chunk_files",
    row_tables=("chunks",),
    sort_keys={"chunk_files": ("media_id",), "chunks": ("media_id", "chunk_index")},
    verb="chunked",
    failed_state={"n_chunks": 0},
)


def chunk_frame(batch_id: str, media_id: str, language, passages, vectors: np.ndarray, model: str) -> pl.DataFrame:
    if not passages:
        return empty(Chunks)
    rows = [
        {
            "batch_id": batch_id,
            "media_id": media_id,
            "chunk_index": p.chunk_index,
            "start_s": p.start_s,
            "end_s": p.end_s,
            "speaker": p.speaker,
            "language": language,
            "text": p.text,
            "n_words": p.n_words,
            "model": model,
        }
        for p in passages
    ]
    df = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        embedding=pl.Series(vectors.astype(np.float32), dtype=pl.Array(pl.Float32, vectors.shape[1]))
    )
    return conform(df, Chunks)


def _by_media(df: pl.DataFrame | None) -> dict[str, list[dict]]:
    if df is None or df.is_empty():
        return {}
    return {key[0]: part.to_dicts() for key, part in df.partition_by("media_id", as_dict=True).items()}


@dg.multi_asset(
    specs=[
        table_spec(
            "chunk_files",
            "Per media item: chunking and text-embedding status, passages, model and version.",
            group=GROUP,
            deps=["segments", "words"],
            kinds=("sentence_transformers",),
        ),
        table_spec(
            "chunks",
            "Search passages: one speaker's turn split at sentence ends near 200 words, with a 384-d text embedding.",
            group=GROUP,
            deps=["segments", "words"],
        ),
    ],
    check_specs=STAGE.check_specs(),
    partitions_def=batch_partitions,
    pool=GPU_POOL,
    op_tags=MODEL_STEP_TAGS,
)
def embed_chunks(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    warehouse: WarehouseResource,
    text_embedding: TextEmbeddingResource,
):
    """Cut every transcribed file of the batch into passages and embed them."""
    batch_id = context.partition_key
    wh = warehouse.get()
    segments = wh.read_table("segments", batch_id)
    transcripts = wh.read_table("transcripts", batch_id)
    if segments is None or transcripts is None:
        raise dg.Failure(f"batch {batch_id!r}: materialize `segments` and `words` before `chunks`")
    segs_by = _by_media(segments)
    words_by = _by_media(wh.read_table("words", batch_id))
    languages = dict(transcripts.select("media_id", "language").iter_rows())
    ok = transcripts.filter(pl.col("status") == "ok").sort("media_id")
    digests = [source_digest(words_by.get(m, []), segs_by.get(m, [])) for m in ok["media_id"].to_list()]
    wanted = ok.select("media_id", pl.col("audio_s").alias("duration_s")).with_columns(
        source_digest=pl.Series(digests, dtype=pl.Utf8)
    )
    # a file whose words or speakers changed since it was chunked is redone
    previous = with_staged(wh, "chunk_files", batch_id, "media_id")
    before = dict(previous.filter(pl.col("status") == "ok").select("media_id", "source_digest").iter_rows())
    changed = [m for m, d in zip(wanted["media_id"], digests) if m in before and before[m] != d]
    if changed:
        context.log.info("%d file(s) changed upstream since they were chunked: re-chunked", len(changed))
    model = text_embedding.spec()
    target = text_embedding.target_words

    def chunk(embedder: TextEmbedder, item: dict) -> FileOutput:
        media_id = item["media_id"]
        passages = chunk_file(words_by.get(media_id, []), segs_by.get(media_id, []), target)
        vectors = embedder.encode([p.text for p in passages])
        if passages and vectors.shape[1] != TEXT_EMBEDDING_DIM:
            raise ValueError(f"text model {model} gives {vectors.shape[1]}-d vectors; the chunks table holds 384-d")
        frame = chunk_frame(batch_id, media_id, languages.get(media_id), passages, vectors, model)
        return FileOutput(
            rows={"chunks": frame},
            state={"n_chunks": frame.height, "source_digest": item["source_digest"]},
            summary=f"{frame.height} passages",
        )

    step = run_model_step(
        context, wh, STAGE, model=text_embedding, force=[*config.force, *changed], process=chunk, wanted=wanted
    )
    yield from step.results(
        state_extra={
            "files_changed_upstream": len(changed),
            "passages": int(step.tables["chunks"].height),
            "target_words": target,
        }
    )


@dg.asset(
    name="search_index",
    description="The batch's chunks in the search backend (LanceDB under `<root>/_search`, or OpenSearch).",
    partitions_def=batch_partitions,
    deps=["chunks", "speaker_clusters"],
    group_name=GROUP,
    kinds={"lancedb", "opensearch"},
    pool=SEARCH_INDEX_POOL,
    check_specs=[
        check_spec(
            INDEX_CHECK,
            "search_index",
            "The index holds exactly the batch's chunks of the configured text model.",
            blocking=False,
        )
    ],
)
def search_index(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    text_embedding: TextEmbeddingResource,
    search: SearchResource,
):
    """Write the batch's chunks to the search backend (idempotent; leftovers deleted)."""
    batch_id = context.partition_key
    wh = warehouse.get()
    model = text_embedding.spec()
    try:
        backend = search.open(wh)
        report = index_batch(wh, backend, batch_id, model)
    except (SearchUnavailable, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    if report.other_models:
        context.log.warning(
            "batch %s: %d chunks were embedded with another model than %s (%s): they are not indexed "
            "(vectors of different models are never compared); re-materialize `chunks` for batch %s",
            batch_id,
            sum(report.other_models.values()),
            model,
            ", ".join(f"{m}: {n}" for m, n in report.other_models.items()),
            batch_id,
        )
    describe = backend.describe()
    meta = {
        "dagster/row_count": report.indexed_total,
        "chunks_in_table": report.chunks,
        "indexed_this_run": report.indexed,
        "leftovers_deleted": report.deleted,
        "chunks_of_other_models_skipped": sum(report.other_models.values()),
        "chunks_without_global_speaker": report.without_global_id,
        "embedding_model": model,
        "elapsed_s": round(report.elapsed_s, 3),
        **{k: str(v) for k, v in describe.items()},
    }
    if describe["backend"] == "opensearch":
        meta["index"] = backend.index_name() or "(none)"
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(
        check_name=INDEX_CHECK,
        passed=report.indexed_total == report.chunks,
        metadata={"indexed": report.indexed_total, "chunks_in_table": report.chunks, "embedding_model": model},
    )


@dg.asset(
    name="speakers_index",
    description="One document per active global voice (centroid, files, talk time) for nearest-voice search.",
    deps=["speaker_centroids", "speaker_profiles"],
    group_name=GROUP,
    kinds={"lancedb", "opensearch"},
    pool=SEARCH_INDEX_POOL,
)
def speakers_index(context: dg.AssetExecutionContext, warehouse: WarehouseResource, search: SearchResource):
    """Refresh the speakers index from the committed speaker state."""
    wh = warehouse.get()
    try:
        backend = search.open(wh)
        redone = resync_speaker_ids(wh, backend)
        n = refresh_speakers(wh, backend)
    except (SearchUnavailable, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    if redone:
        context.log.info(
            "re-indexed %d batch(es) whose speakers changed global id (a split or re-clustering): %s",
            len(redone),
            ", ".join(redone[:20]),
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "batches_reindexed_for_new_speaker_ids": len(redone),
            **{k: str(v) for k, v in backend.describe().items()},
        }
    )
