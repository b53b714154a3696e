"""``media_quality`` + ``segment_quality``: how good each file's audio and transcript are.

A model stage on the per-file model step (``assets/modelstep.py``), after the speakers are
attributed: DNSMOS P.835 per segment (one onnxruntime session for the run, on the CPU),
Whisper's confidences and the flags per segment, loudness, true peak, clipping, bandwidth and
speech share per file (``speech/quality.py``; ``docs/quality.md``). ``media_quality`` is the
state table: a file is redone when the DNSMOS model, the step's code or the quality floor
changed (``model_version``), or when the segments or speaker turns it judged changed since
(``source_digest``: a re-transcribed or re-diarized file is judged again). A file the step
fails on is a ``failed`` row with the error; the batch goes on.

Not in the ``gpu`` pool: DNSMOS runs on the CPU with its threads bounded
(``QualityModelResource.threads``), so it runs beside the GPU steps.
"""

import dataclasses
import hashlib

import dagster as dg
import polars as pl

from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..resources.quality import QualityModelResource
from ..schemas import SegmentQuality, conform
from ..speech import quality as q
from .checks import table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, empty, read_audio, run_model_step, usable_audio

STAGE = ModelStage(
    name="quality",
    state_table="media_quality",
    row_tables=("segment_quality",),
    sort_keys={"media_quality": ("media_id",), "segment_quality": ("media_id", "segment_id")},
    verb="scored",
    failed_state={
        "duration_s": 0.0,
        "speech_s": 0.0,
        "untranscribed_speech_s": 0.0,
        "speech_above_floor_s": 0.0,
        "n_segments": 0,
        **{f"n_{flag}": 0 for flag in ("repetition", "low_confidence", "speech_mismatch", "noisy", "clipped")},
        "flags": [],
    },
)

# "^...$" is a polars regex: `segments` parts written before no_speech_prob existed select without it
_SEGMENT_COLUMNS = ("segment_id", "start_s", "end_s", "text", "speaker", "avg_logprob", "^no_speech_prob$")


def source_digest(segs: pl.DataFrame | None, turns: pl.DataFrame | None) -> str:
    """Fingerprint of what a file's quality rows are judged from."""
    seg_rows = segs.select(_SEGMENT_COLUMNS).sort("segment_id").rows() if segs is not None and segs.height else []
    turn_rows = (
        turns.select("start_s", "end_s", "speaker").sort("start_s", "end_s", "speaker").rows()
        if turns is not None and turns.height
        else None
    )
    return hashlib.sha256(repr((seg_rows, turn_rows)).encode()).hexdigest()[:16]


def _by_media(df: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    if df is None or not df.height:
        return {}
    return {k[0]: v for k, v in df.partition_by("media_id", as_dict=True).items()}


def segment_inputs(segs: pl.DataFrame | None, words: pl.DataFrame | None) -> list[q.SegmentIn]:
    """The file's segments in time order, with their word counts from ``words``."""
    if segs is None or not segs.height:
        return []
    counts = {}
    if words is not None and words.height:
        counts = dict(words.group_by("segment_id").len().rows())
    out = []
    for r in segs.sort("start_s", "segment_id").iter_rows(named=True):
        out.append(
            q.SegmentIn(
                segment_id=int(r["segment_id"]),
                start_s=float(r["start_s"]),
                end_s=float(r["end_s"]),
                text=r["text"] or "",
                speaker=r["speaker"],
                avg_logprob=r["avg_logprob"],
                no_speech_prob=r.get("no_speech_prob"),
                n_words=counts.get(r["segment_id"], 0) if counts or words is not None else None,
            )
        )
    return out


def segment_frame(batch_id: str, media_id: str, rows: list[dict]) -> pl.DataFrame:
    if not rows:
        return empty(SegmentQuality)
    df = pl.DataFrame(
        rows,
        schema_overrides={
            "speaker": pl.Utf8,
            "dnsmos_sig": pl.Float64,
            "dnsmos_bak": pl.Float64,
            "dnsmos_ovrl": pl.Float64,
            "dnsmos_note": pl.Utf8,
            "avg_logprob": pl.Float64,
            "no_speech_prob": pl.Float64,
            "compression_ratio": pl.Float64,
            "flags": pl.List(pl.Utf8),
            "flag_reasons": pl.List(pl.Utf8),
        },
        infer_schema_length=None,
    )
    return conform(df.with_columns(batch_id=pl.lit(batch_id), media_id=pl.lit(media_id)), SegmentQuality)


def _spec(table: str, description: str) -> dg.AssetSpec:
    return table_spec(
        table,
        description,
        group="quality",
        deps=["segments", "words", "speaker_turns", "diarization", "transcripts", "audio", "media"],
        kinds=("onnx",),
    )


@dg.multi_asset(
    specs=[
        _spec(
            "media_quality",
            "Per media item: loudness, true peak, clipping, bandwidth, speech share, DNSMOS over its speech, "
            "speech above the quality floor, flags; status, model and version.",
        ),
        _spec(
            "segment_quality",
            "Per segment: DNSMOS sig/bak/ovrl, Whisper's confidences, words per second, flags with reasons.",
        ),
    ],
    check_specs=STAGE.check_specs(),
    partitions_def=batch_partitions,
)
def score_quality(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    warehouse: WarehouseResource,
    quality: QualityModelResource,
):
    """Quality of every usable file of the batch whose scores are missing or stale."""
    batch_id = context.partition_key
    wh = warehouse.get()
    segments = wh.read_table("segments", batch_id)
    if segments is None:
        raise dg.Failure(f"batch {batch_id!r}: materialize `segments` before `media_quality`")
    words = wh.read_table("words", batch_id)
    turns = wh.read_table("speaker_turns", batch_id)
    diarization = wh.read_table("diarization", batch_id)
    transcripts = wh.read_table("transcripts", batch_id)
    media = wh.read_table("media", batch_id)
    diarized = (
        set(diarization.filter(pl.col("status") == "ok")["media_id"].to_list()) if diarization is not None else set()
    )
    ok_transcripts = transcripts.filter(pl.col("status") == "ok") if transcripts is not None else None
    transcribed = set(ok_transcripts["media_id"].to_list()) if ok_transcripts is not None else set()
    # segments the ASR made for a file (none: noise, music; the file's row says no_words)
    asr_segment_counts = (
        dict(ok_transcripts.select("media_id", "n_segments").rows()) if ok_transcripts is not None else {}
    )
    source_rates = (
        dict(media.select("media_id", "sample_rate").drop_nulls("media_id").rows())
        if media is not None and "sample_rate" in media.columns
        else {}
    )
    seg_by, word_by, turn_by = _by_media(segments), _by_media(words), _by_media(turns)
    floor = quality.quality_floor()
    # files with a transcript (a file transcription failed on is failed there, not twice)
    wanted = usable_audio(wh, batch_id, "media_quality").filter(pl.col("media_id").is_in(list(transcribed)))
    digests = {
        m: source_digest(seg_by.get(m), turn_by.get(m) if m in diarized else None) for m in wanted["media_id"].to_list()
    }
    previous = wh.read_table("media_quality", batch_id)
    changed = []
    if previous is not None and "source_digest" in previous.columns:
        for m, d in previous.select("media_id", "source_digest").rows():
            if m in digests and d != digests[m]:
                changed.append(m)
    if changed:
        context.log.info("%d file(s) have new segments or turns since their quality was judged: redone", len(changed))

    def score_file(model: q.Dnsmos, item: dict) -> FileOutput:
        media_id = item["media_id"]
        samples = item["samples"]
        if media_id not in seg_by and asr_segment_counts.get(media_id):
            raise RuntimeError(
                f"the ASR made {asr_segment_counts[media_id]} segment(s) but `segments` has none for this file "
                "(attribute_speakers held it back: see file_issues); nothing to judge"
            )
        segs = segment_inputs(seg_by.get(media_id), word_by.get(media_id))
        speech = None
        if media_id in diarized:
            tdf = turn_by.get(media_id)
            speech = q.union(tdf.select("start_s", "end_s").rows()) if tdf is not None else []
        before = model.windows_scored
        scores = q.score_segments(
            model,
            samples,
            [(s.start_s, s.end_s) for s in segs],
            [s.speaker for s in segs],
            stride=quality.dnsmos_stride,
        )
        rows = q.segment_quality_rows(segs, scores, samples, speech)
        audio = q.measure_audio(samples, source_rates.get(media_id))
        values = q.media_quality_values(rows, audio, len(samples) / q.SAMPLE_RATE, speech, floor)
        windows = model.windows_scored - before
        mean = values["dnsmos_ovrl_mean"]
        return FileOutput(
            rows={"segment_quality": segment_frame(batch_id, media_id, rows)},
            state={**values, "source_digest": digests[media_id]},
            summary=(
                f"{len(rows)} segments, {windows} DNSMOS window(s), ovrl mean "
                f"{'-' if mean is None else f'{mean:.2f}'}, flags {values['flags'] or '-'}"
            ),
        )

    step = run_model_step(
        context,
        wh,
        dataclasses.replace(STAGE, failed_state={**STAGE.failed_state, "quality_floor": floor}),
        model=quality,
        force=[*config.force, *changed],
        process=score_file,
        wanted=wanted,
        prepare=read_audio(wh),
    )
    state = step.state.filter(pl.col("status") == "ok")
    speech_s = float(state["speech_s"].sum() or 0)
    above_s = float(state["speech_above_floor_s"].sum() or 0)
    yield from step.results(
        state_extra={
            "quality_floor": floor,
            "speech_hours": round(speech_s / 3600, 4),
            "speech_hours_above_floor": round(above_s / 3600, 4),
            "share_of_speech_above_floor": round(above_s / speech_s, 4) if speech_s else 0.0,
            "dnsmos_threads": quality.threads,
            "dnsmos_stride": quality.dnsmos_stride,
        }
    )
