"""The quality step (``assets/quality.py``) in the batch job: the shared processed warehouse
(``opentranscribe process`` on the sample archive, tests/conftest.py) holds its tables; a
re-run keeps current files, redoes a file whose segments changed, and a file the step fails
on (damaged audio; segments held back upstream) is a failed row while the others stay."""

from __future__ import annotations

import dagster as dg
import polars as pl

from opentranscribe_pipeline.assets.quality import score_quality
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.resources.quality import QualityModelResource
from opentranscribe_pipeline.schemas import QUALITY_FLAGS, MediaQuality, SegmentQuality, conform
from opentranscribe_pipeline.settings import DEFAULT_QUALITY_FLOOR


def test_process_writes_quality_for_every_transcribed_file(shared_archive):
    wh, batch = shared_archive.wh, shared_archive.batch
    media_q = wh.read_table("media_quality", batch)
    seg_q = wh.read_table("segment_quality", batch)
    assert media_q is not None and seg_q is not None, "the batch job did not run the quality step"
    MediaQuality.validate(conform(media_q, MediaQuality), lazy=True)
    SegmentQuality.validate(conform(seg_q, SegmentQuality), lazy=True)

    transcripts = wh.read_table("transcripts", batch).filter(pl.col("status") == "ok")
    assert sorted(media_q["media_id"].to_list()) == sorted(transcripts["media_id"].to_list())
    assert set(media_q["status"].to_list()) == {"ok"}, media_q.select("media_id", "error")
    assert media_q["quality_floor"].unique().to_list() == [DEFAULT_QUALITY_FLOOR]

    # one quality row per segment, same ids and spans
    segments = wh.read_table("segments", batch)
    keys = ["media_id", "segment_id"]
    joined = segments.select(*keys, "start_s", "end_s", "speaker").join(seg_q, on=keys, how="full", coalesce=True)
    assert joined.height == segments.height == seg_q.height
    assert (joined["start_s"] == joined["start_s_right"]).all() and (joined["speaker"] == joined["speaker_right"]).all()

    # the sample's synthesized speech is clean, wideband and unclipped: scored, not flagged so
    scored = seg_q.filter(pl.col("dnsmos_ovrl").is_not_null())
    assert scored.height >= 0.8 * seg_q.height, seg_q.select("dnsmos_note").drop_nulls().head(5)
    assert seg_q.filter(pl.col("dnsmos_ovrl").is_null())["dnsmos_note"].null_count() == 0
    assert (seg_q["compression_ratio"].drop_nulls() > 0).all() and (seg_q["words_per_s"] > 0).all()
    assert set(seg_q["flags"].explode().drop_nulls().to_list()) <= set(QUALITY_FLAGS)
    assert (media_q["telephone_band"] == False).all()  # noqa: E712 - a null would be a failure too
    assert (media_q["clipped_share"] < 0.001).all() and (media_q["true_peak_dbtp"] < 0).all()
    assert media_q["loudness_lufs"].is_between(-40, -5).all()
    assert (media_q["speech_share"] > 0.3).all() and (media_q["n_segments"] > 0).all()
    counts = seg_q.group_by("media_id").len()
    assert media_q.join(counts, on="media_id").select((pl.col("n_segments") == pl.col("len")).all()).item()


def _run(instance, root, batch, force=()):
    result = dg.materialize(
        [score_quality],
        partition_key=batch,
        instance=instance,
        resources={"warehouse": WarehouseResource(root=str(root)), "quality": QualityModelResource()},
        run_config={"ops": {"score_quality": {"config": {"force": list(force)}}}},
        raise_on_error=False,
    )
    [mat] = [
        m for m in result.asset_materializations_for_node("score_quality") if m.asset_key.path == ["media_quality"]
    ]
    return result, {k: v.value for k, v in mat.metadata.items()}


def test_rerun_keeps_current_files_redoes_changed_ones_and_records_a_failure(copy_of_shared_archive):
    archive = copy_of_shared_archive
    wh, batch = archive.wh, archive.batch
    before = wh.read_table("media_quality", batch)
    ids = sorted(before["media_id"].to_list())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, [batch])
        result, md = _run(instance, archive.root, batch)
        assert result.success
        assert md["files_scored_this_run"] == 0 and md["files_current_kept"] == len(ids) and md["model_load_s"] == 0
        assert wh.read_table("media_quality", batch).equals(before)

        # one file's segments change (a re-transcription): that file alone is judged again
        segments = wh.read_table("segments", batch)
        changed = ids[0]
        segments = segments.with_columns(
            text=pl.when(pl.col("media_id") == changed)
            .then(pl.lit("the market and then the market and then the market and then"))
            .otherwise(pl.col("text"))
        )
        # a third file's segments are missing (attribute_speakers held it back): failed, not "no words"
        held_back = ids[2]
        wh.write_table("segments", segments.filter(pl.col("media_id") != held_back), batch)
        # another file's audio is damaged: forced, it fails alone (a damaged file of its own
        # beside the copy's FLACs, so the copy's other rows keep their audio).
        broken = ids[1]
        damaged = wh.uri(wh.path("audio_16k", "damaged.flac"))
        wh.put_bytes(damaged, b"not a flac file")
        audio = wh.read_table("audio", batch)
        audio = audio.with_columns(
            audio_uri=pl.when(pl.col("media_id") == broken).then(pl.lit(damaged)).otherwise(pl.col("audio_uri"))
        )
        wh.write_table("audio", audio, batch)
        result, md = _run(instance, archive.root, batch, force=[broken])
        assert md["files_scored_this_run"] == 1 and md["files_failed"] == 2
        assert md["files_current_kept"] == len(ids) - 3

        after = wh.read_table("media_quality", batch)
        assert sorted(after["media_id"].to_list()) == ids
        row = after.filter(pl.col("media_id") == broken).row(0, named=True)
        assert row["status"] == "failed" and row["error"]
        row = after.filter(pl.col("media_id") == held_back).row(0, named=True)
        assert row["status"] == "failed" and "held it back" in row["error"]
        looped = wh.read_table("segment_quality", batch).filter(pl.col("media_id") == changed)
        assert looped["flags"].list.contains("repetition").all()
        assert after.filter(pl.col("media_id") == changed)["n_repetition"].item() == looped.height
        redone = [changed, broken, held_back]
        assert after.filter(~pl.col("media_id").is_in(redone)).equals(before.filter(~pl.col("media_id").is_in(redone)))
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["media_quality_matches_schema"].passed and checks["segment_quality_matches_schema"].passed
        failed_check = checks["media_quality_no_failed_files"]
        assert not failed_check.passed and "not a readable media file" in failed_check.description
        assert result.success  # not blocking: the batch completes
