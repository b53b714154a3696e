"""``diarization``, ``speaker_turns``, ``speaker_embeddings``: who spoke when, per batch.

A model stage on the per-file model step (``assets/modelstep.py``): one pyannote pipeline
loaded once per run, in the ``gpu`` pool, skipping files already diarized with the same
model version. Each file yields its turns and one embedding per local speaker; the
archive-wide speaker identity is made from those by ``assets/clustering.py``.
"""

import dagster as dg
import numpy as np
import polars as pl

from ..executors import MODEL_STEP_TAGS
from ..partitions import batch_partitions
from ..resources import DiarizationModelResource, WarehouseResource
from ..schemas import EMBEDDING_DIM, SpeakerEmbeddings, SpeakerTurns, conform
from ..settings import GPU_POOL
from ..speech.activity import activity_path
from ..speech.diarize import Diarizer
from .checks import markdown_table, table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, read_audio, run_model_step

GROUP = "diarization"
STAGE = ModelStage(
    name="diarization",
    state_table="diarization",
    row_tables=("speaker_turns", "speaker_embeddings"),
    sort_keys={
        "diarization": ("media_id",),
        "speaker_turns": ("media_id", "start_s", "speaker"),
        "speaker_embeddings": ("media_id", "speaker"),
    },
    verb="diarized",
    failed_state={"n_speakers": 0, "n_turns": 0, "speech_s": 0.0},
)


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


def _spec(table: str, description: str, *kinds: str) -> dg.AssetSpec:
    return table_spec(table, description, group=GROUP, deps=["audio"], kinds=kinds)


@dg.multi_asset(
    specs=[
        _spec("diarization", "Per media item: diarization status, speakers, pipeline and version.", "pyannote"),
        _spec("speaker_turns", "Who spoke when: file-local speaker turns."),
        _spec("speaker_embeddings", "One unit vector per (media, local speaker), its model and seconds of speech."),
    ],
    check_specs=STAGE.check_specs(),
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
    embedding_model = diarization.embedding_model()

    def diarize_file(diarizer: Diarizer, item: dict) -> FileOutput:
        result = diarizer.diarize(item["samples"])
        if result.activity is not None:  # for transcription: no second segmentation pass
            path = activity_path(item["audio_uri"], result.activity.fingerprint, item["audio"])
            wh.put_bytes(path, result.activity.to_bytes())
        turns, embeddings = diarization_frames(batch_id, item["media_id"], result, embedding_model)
        return FileOutput(
            rows={"speaker_turns": turns, "speaker_embeddings": embeddings},
            state={
                "note": result.note,
                "n_speakers": len(result.speakers),
                "n_turns": len(result.turns),
                "speech_s": sum(v.speech_s for v in result.voices),
            },
            summary=f"{len(result.speakers)} speakers, {len(result.turns)} turns",
        )

    step = run_model_step(
        context, wh, STAGE, model=diarization, force=config.force, process=diarize_file, prepare=read_audio(wh)
    )
    notes = step.state.filter(pl.col("note").is_not_null())
    yield from step.results(
        state_extra={
            "speakers_per_file_mean": round(float(step.state["n_speakers"].mean() or 0), 3),
            "device": diarization.options().device,
            "notes": dg.MetadataValue.md(markdown_table(notes.select("media_id", "note").head(100))),
        }
    )
