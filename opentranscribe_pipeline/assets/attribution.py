"""``segments``, ``words``: the ASR output with a file-local speaker on every word.

Per batch, CPU only: the ASR segments and words joined with the speaker turns
(``speech/attribute.py``), recomputed for the whole batch each time (it costs a fraction of
a second per hour of audio).
"""

import dagster as dg
import polars as pl

from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..schemas import AsrSegments, AsrWords, Segments, SpeakerTurns, Words, conform
from ..speech.attribute import SegmentRow, WordRow, attribute_file
from ..speech.diarize import Turn
from .checks import check_spec, markdown_table, schema_check_result, schema_check_spec, table_spec
from .isolation import (
    Issue,
    hold_back_files,
    issues_check_result,
    issues_check_spec,
    per_file,
    record_issues,
)
from .modelstep import empty

STAGE = "attribute_speakers"


def attribute_batch(
    batch_id: str,
    asr_segments: pl.DataFrame,
    asr_words: pl.DataFrame,
    turns: pl.DataFrame,
    diarized_ok: set[str],
) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[Issue]]:
    """segments and words of the batch with speakers; the media ids that fell back to
    SPEAKER_00 (words heard, but diarization found no speech); and the issues of the files held
    back (their attribution raised, or their rows break a table's rules: no rows in either table)."""
    seg_by = asr_segments.partition_by("media_id", as_dict=True)
    word_by = asr_words.partition_by("media_id", as_dict=True)
    turn_by = turns.partition_by("media_id", as_dict=True)
    fallback: list[str] = []

    def one_file(media_id: str, segs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        words = word_by.get((media_id,))
        words_rows: list[WordRow] = words.to_dicts() if words is not None else []
        if media_id not in diarized_ok:  # diarization failed or not run: speaker stays null
            return (
                conform(segs.with_columns(speaker=pl.lit(None, pl.Utf8)), Segments),
                conform(
                    words.with_columns(speaker=pl.lit(None, pl.Utf8), speaker_overlap=pl.lit(None, pl.Float64)), Words
                )
                if words is not None
                else None,
            )
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
        seg_in: list[SegmentRow] = segs.to_dicts()  # the asr_segments columns, plus media_id and batch_id
        seg_rows, word_rows = attribute_file(seg_in, words_rows, file_turns)
        return (
            conform(pl.DataFrame(seg_rows, infer_schema_length=None), Segments),
            conform(pl.DataFrame(word_rows, infer_schema_length=None), Words) if word_rows else None,
        )

    results, issues = per_file(STAGE, [(m, segs) for (m,), segs in seg_by.items()], one_file)
    out_s = [s for s, _ in results.values()]
    out_w = [w for _, w in results.values() if w is not None]
    segments = pl.concat(out_s) if out_s else empty(Segments)
    words = pl.concat(out_w) if out_w else empty(Words)
    segments = segments.with_columns(batch_id=pl.lit(batch_id)).sort("media_id", "segment_id")
    words = words.with_columns(batch_id=pl.lit(batch_id)).sort("media_id", "segment_id", "word_index")
    (segments, words), issues = hold_back_files(STAGE, issues, segments=segments, words=words)
    bad = {i.media_id for i in issues}
    return segments, words, [m for m in fallback if m not in bad], issues


WORDS_HAVE_SPEAKERS = "every_word_has_a_speaker"


DEPS = ("asr_segments", "asr_words", "speaker_turns", "diarization")


def _spec(table: str, description: str) -> dg.AssetSpec:
    return table_spec(table, description, group="transcription", deps=DEPS)


@dg.multi_asset(
    specs=[
        _spec("segments", "Sentences with start/end, text, language and speaker, split where the speaker changes."),
        _spec("words", "Words with start/end, score, speaker and how timing and speaker were obtained."),
    ],
    check_specs=[
        schema_check_spec("segments"),
        schema_check_spec("words"),
        check_spec(
            WORDS_HAVE_SPEAKERS, "words", "No word of a successfully diarized file lacks a speaker.", blocking=True
        ),
        issues_check_spec(STAGE, "words"),
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
    segments, words, fallback, issues = attribute_batch(
        batch_id, conform(asr_segments, AsrSegments), conform(asr_words, AsrWords), turns, ok
    )
    wh.write_table("segments", segments, batch_id)
    wh.write_table("words", words, batch_id)
    media = wh.read_table("media", batch_id)
    held = record_issues(context, wh, batch_id, STAGE, issues, media)
    missing = words.filter(pl.col("speaker").is_null() & pl.col("media_id").is_in(list(ok)))
    no_diarization = sorted(set(words["media_id"].to_list()) - ok)
    nearest = words.filter(pl.col("speaker_overlap") == 0.0).height
    meta = {
        "files_without_diarization": len(no_diarization),
        "files_single_speaker_fallback": len(fallback),
        "words_by_nearest_turn": nearest,
        "files_held_back": held["media_id"].n_unique(),
    }
    yield dg.MaterializeResult(asset_key="segments", metadata={"dagster/row_count": segments.height, **meta})
    yield dg.MaterializeResult(asset_key="words", metadata={"dagster/row_count": words.height, **meta})
    yield schema_check_result("segments", segments)
    yield schema_check_result("words", words)
    yield issues_check_result(STAGE, "words", held)
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
