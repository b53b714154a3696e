"""``transcripts``, ``asr_segments``, ``asr_words``: WhisperX over every usable file of a batch.

The analyst-facing ``segments`` and ``words`` tables are made from these plus the speaker
turns (``assets/attribution.py``), so they always carry a speaker.

A model stage on the per-file model step (``assets/modelstep.py``): the model is loaded
once per run and only if some file needs it; files already transcribed with the same model
version (``transcripts.model_version``) are kept, so a re-run of a finished batch costs a
few table reads. Inference runs in the ``gpu`` concurrency pool, one model on the device at
a time.
"""

import dagster as dg
import polars as pl

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import AsrModelResource, WarehouseResource
from ..schemas import AsrSegments, AsrWords, conform
from ..settings import GPU_POOL
from ..speech.activity import SpeechActivity, activity_path
from ..speech.asr import VAD_OWN, VAD_SHARED, Transcriber, Transcript
from .checks import table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, empty, read_audio, run_model_step

STAGE = ModelStage(
    name="transcription",
    state_table="transcripts",
    row_tables=("asr_segments", "asr_words"),
    sort_keys={
        "transcripts": ("media_id",),
        "asr_segments": ("media_id", "segment_id"),
        "asr_words": ("media_id", "segment_id", "word_index"),
    },
    verb="transcribed",
    failed_state={"n_segments": 0, "n_words": 0},
)


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
                "no_speech_prob": seg.no_speech_prob,
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


def _spec(table: str, description: str, *kinds: str) -> dg.AssetSpec:
    # after diarization (when both run): its segmentation pass gives the VAD cut (speech/activity.py)
    return table_spec(table, description, group="transcription", deps=["media", "audio", "diarization"], kinds=kinds)


@dg.multi_asset(
    specs=[
        _spec("transcripts", "Per media item: transcription status, language, counts, model and version.", "whisperx"),
        _spec("asr_segments", "ASR sentences with start/end, text and language, before speakers (internal)."),
        _spec(
            "asr_words", "ASR words with start/end, score and how the timing was obtained, before speakers (internal)."
        ),
    ],
    check_specs=STAGE.check_specs(),
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
    vad_sources: dict[str, int] = {}

    def shared_activity(transcriber: Transcriber, audio_uri: str, audio: bytes) -> SpeechActivity | None:
        fp = transcriber.vad_fingerprint
        data = wh.get_if_exists(activity_path(audio_uri, fp, audio)) if fp else None
        if data is None:
            return None
        try:
            return SpeechActivity.from_bytes(data)
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry: run the VAD instead
            context.log.warning(f"ignoring unreadable speech activity for {audio_uri}: {exc}")
            return None

    def transcribe_file(transcriber: Transcriber, item: dict) -> FileOutput:
        activity = shared_activity(transcriber, item["audio_uri"], item["audio"])
        tx = transcriber.transcribe(item["samples"], activity=activity)
        vad_sources[tx.vad] = vad_sources.get(tx.vad, 0) + 1
        segments, words = transcript_frames(batch_id, item["media_id"], tx)
        return FileOutput(
            rows={"asr_segments": segments, "asr_words": words},
            state={
                "language": tx.language,
                "language_probability": tx.language_probability,
                "n_segments": len(tx.segments),
                "n_words": tx.n_words,
            },
            summary=f"{tx.n_words} words ({item['duration_s']:.1f} s of audio)",
        )

    step = run_model_step(
        context, wh, STAGE, model=asr, force=config.force, process=transcribe_file, prepare=read_audio(wh)
    )
    options = asr.options()
    yield from step.results(
        state_extra={
            "device": options.device,
            "compute_type": options.compute_type,
            "batch_size": options.batch_size,
            # files whose VAD cut came from diarization's segmentation pass, and those that ran it
            "vad_from_diarization": vad_sources.get(VAD_SHARED, 0),
            "vad_run_here": vad_sources.get(VAD_OWN, 0),
        },
        model=asr.resolved().spec,
    )
