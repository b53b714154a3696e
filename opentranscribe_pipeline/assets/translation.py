"""``translations`` + ``segments_en``: every segment of a batch in English.

A model stage on the per-file model step (``assets/modelstep.py``), in the ``gpu`` pool:
English media are copied through from ``segments`` (no model is loaded for them), the
others are translated window by window by Whisper's translate task
(``speech/translate.py``). The translation model version is recorded per file, so a re-run
redoes only files made with another model or mode, or whose segments changed since
(``translations.source_digest``: a re-transcribed or re-diarized file is translated again).
A model that cannot translate (``tiny.en``, ``large-v3-turbo``) fails each non-English file
with the reason; the batch goes on.
"""

import hashlib

import dagster as dg
import polars as pl

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import TranslationModelResource, WarehouseResource
from ..schemas import SegmentsEn, conform
from ..settings import GPU_POOL
from ..speech.decode import load_flac
from ..speech.translate import Translator, attribute, regions
from .checks import table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, empty, run_model_step, usable_audio

STAGE = ModelStage(
    name="translation",
    state_table="translations",
    row_tables=("segments_en",),
    sort_keys={"translations": ("media_id",), "segments_en": ("media_id", "segment_id")},
    verb="translated",
    failed_state={"n_segments": 0, "n_translated": 0},
)


def source_digest(segs: pl.DataFrame) -> str:
    """Fingerprint of what a file's English version is made from."""
    cols = ["segment_id", "start_s", "end_s", "speaker", "text", "language"]
    rows = segs.select(cols).sort("segment_id").rows() if segs.height else []
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def copied_through(batch_id: str, segs: pl.DataFrame) -> pl.DataFrame:
    if not segs.height:
        return empty(SegmentsEn)
    return conform(
        segs.with_columns(batch_id=pl.lit(batch_id), source_language=pl.col("language"), translated=pl.lit(False)),
        SegmentsEn,
    )


def _spec(table: str, description: str) -> dg.AssetSpec:
    return table_spec(
        table, description, group="deliverables", deps=["segments", "transcripts", "audio"], kinds=("whisper",)
    )


@dg.multi_asset(
    specs=[
        _spec("translations", "Per media item: English version status, source language, model and version."),
        _spec("segments_en", "Every segment in English, with its speaker (copied through for English media)."),
    ],
    check_specs=STAGE.check_specs(),
    partitions_def=batch_partitions,
    pool=GPU_POOL,
    op_tags=MODEL_STEP_TAGS,
)
def translate(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    warehouse: WarehouseResource,
    translation: TranslationModelResource,
):
    """English segments for every transcribed file of the batch that lacks a current one."""
    batch_id = context.partition_key
    wh = warehouse.get()
    mode = translation.mode()
    transcripts = wh.read_table("transcripts", batch_id)
    segments = wh.read_table("segments", batch_id)
    if transcripts is None or segments is None:
        raise dg.Failure(f"batch {batch_id!r}: materialize `transcripts` and `segments` before `segments_en`")
    ok = transcripts.filter(pl.col("status") == "ok").select("media_id", "language")
    wanted = usable_audio(wh, batch_id, "translations").join(ok, on="media_id")
    by_media = {k[0]: v for k, v in segments.partition_by("media_id", as_dict=True).items()}
    digests = {m: source_digest(by_media.get(m, segments.clear())) for m in wanted["media_id"].to_list()}
    previous = wh.read_table("translations", batch_id)
    changed = []
    if previous is not None and "source_digest" in previous.columns:
        for m, d in previous.select("media_id", "source_digest").rows():
            if m in digests and d != digests[m]:
                changed.append(m)
    if changed:
        context.log.info("%d file(s) have new segments since their translation: redone", len(changed))

    def translate_file(translator: Translator, item: dict) -> FileOutput:
        media_id, language = item["media_id"], item["language"]
        segs = by_media.get(media_id, segments.clear())
        state = {"source_language": language, "n_segments": segs.height, "source_digest": digests[media_id]}
        english = (language or "").lower() == "en"
        if english and mode != "always":
            rows = copied_through(batch_id, segs)
            return FileOutput({"segments_en": rows}, {**state, "n_translated": 0, "note": "english: copied through"})
        if mode == "never":
            return FileOutput(
                {"segments_en": empty(SegmentsEn)},
                {**state, "n_translated": 0, "note": "translation off (translate: never)"},
            )
        spans = regions(segs.to_dicts()) if segs.height else []
        if not spans:
            return FileOutput({"segments_en": empty(SegmentsEn)}, {**state, "n_translated": 0, "note": "no speech"})
        seg_rows = segs.to_dicts()
        english = attribute(translator.translate(load_flac(wh.get_bytes(item["audio_uri"])), spans, language), seg_rows)
        rows = pl.DataFrame(
            [
                {
                    "batch_id": batch_id,
                    "media_id": media_id,
                    "segment_id": i,
                    "start_s": e.start_s,
                    "end_s": e.end_s,
                    "text": e.text,
                    "source_language": language,
                    "speaker": e.speaker,
                    "translated": True,
                }
                for i, e in enumerate(english)
            ],
            schema_overrides={"speaker": pl.Utf8},
            infer_schema_length=None,
        )
        rows = conform(rows, SegmentsEn) if english else empty(SegmentsEn)
        return FileOutput(
            {"segments_en": rows},
            {**state, "n_translated": len(english), "note": None},
            summary=f"{len(english)} segment(s) translated from {language} in {len(spans)} window(s)",
        )

    step = run_model_step(
        context,
        wh,
        STAGE,
        model=translation,
        force=[*config.force, *changed],
        process=translate_file,
        wanted=wanted,
    )
    yield from step.results(state_extra={"translate": mode})
