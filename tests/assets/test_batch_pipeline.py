"""Real Dagster runs of the asset graph (materialize) on real files with the real model."""

import hashlib
import shutil

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.assets import attribute_speakers, diarize, ingest, transcribe
from opentranscribe_pipeline.assets.checks import schema_check_result
from opentranscribe_pipeline.assets.versions import with_code_versions
from opentranscribe_pipeline.drops.batches import BatchLimits, register_drop
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.resources import AsrModelResource, DiarizationModelResource, WarehouseResource
from opentranscribe_pipeline.speech.models import resolve_asr_model
from opentranscribe_pipeline.storage import Warehouse
from opentranscribe_pipeline.storage.media_index import MediaIndex

from ..conftest import BAD_INPUTS, SAMPLE_DROP, build_bad_drop

BATCH_ASSETS = (ingest, transcribe, diarize, attribute_speakers)
NODE_OF = {"media": "ingest", "audio": "ingest", "diarization": "diarize", "segments": "attribute_speakers"}


def run_batch(instance, root, batch_id, selection=BATCH_ASSETS, **asr):
    return dg.materialize(
        with_code_versions(selection),  # as definitions.py does: code versions name the models
        partition_key=batch_id,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(root=str(root)),
            "asr": AsrModelResource(**asr),
            "diarization": DiarizationModelResource(),
        },
    )


def register(instance, root, source, **kw):
    reg = register_drop(Warehouse(str(root)), str(source), **kw)
    instance.add_dynamic_partitions(BATCHES, reg.batch_ids)
    return reg


def metadata(result, asset: str) -> dict:
    [mat] = [
        m
        for m in result.asset_materializations_for_node(NODE_OF.get(asset, "transcribe"))
        if m.asset_key.path == [asset]
    ]
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_bad_inputs_are_recorded_and_the_batch_goes_on(tmp_path, instance):
    drop = build_bad_drop(tmp_path / "drop one")
    root = tmp_path / "warehouse"
    reg = register(instance, root, drop)
    assert reg.ignored == ["README.txt"]
    [batch_id] = reg.new_batch_ids
    result = run_batch(instance, root, batch_id)
    assert result.success
    wh = Warehouse(str(root))
    media = wh.read_table("media", batch_id)
    by_name = {uri.rsplit("/", 1)[1]: row for uri, row in zip(media["source_uri"], media.iter_rows(named=True))}
    assert len(by_name) == 9
    for name, (status, error) in BAD_INPUTS.items():
        row = by_name[name]
        assert row["status"] == status, (name, row)
        if error:
            assert error in row["error"], (name, row["error"])
        else:
            assert row["error"] is None
    # the same bytes under two names: one media item, the other row points at it
    a, b = by_name["interview 01.wav"], by_name["copy of interview 01.wav"]
    assert a["media_id"] == b["media_id"]
    assert sorted([a["status"], b["status"]]) == ["ok", "skipped"]
    dup, first = (a, b) if a["status"] == "skipped" else (b, a)
    assert dup["duplicate_of"] == first["source_uri"]

    transcripts = wh.read_table("transcripts", batch_id)
    ok_ids = set(media.filter(pl.col("status") == "ok")["media_id"])
    silence_id = by_name["silence.flac"]["media_id"]
    # the silent file is ok but recorded silent at ingest: the speech models never see it
    assert by_name["silence.flac"]["silent"] is True and by_name["silence.flac"]["active_fraction"] == 0.0
    assert set(transcripts["media_id"]) == ok_ids - {silence_id}  # the duplicate is transcribed once
    assert transcripts["status"].to_list() == ["ok"] * (len(ok_ids) - 1)
    words = wh.read_table("words", batch_id)
    assert words["media_id"].n_unique() == len(ok_ids) - 1  # every file with speech has words
    assert words.filter(pl.col("media_id") == by_name["entrevista ñandú 北京.m4a"]["media_id"]).height > 20

    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        f"{t}_matches_schema"
        for t in (
            "media",
            "audio",
            "transcripts",
            "asr_segments",
            "asr_words",
            "diarization",
            "speaker_turns",
            "speaker_embeddings",
            "segments",
            "words",
        )
    } | {
        "every_word_has_a_speaker",
        "attribute_speakers_no_files_held_back",
        "media_no_failed_files",
        "transcripts_no_failed_files",
        "diarization_no_failed_files",
    }
    # the UI shows the failed files as a failed (non-blocking) check on `media`; every other check passes
    failing = [c for c in checks if not c.passed]
    assert [(c.check_name, c.severity) for c in failing] == [("media_no_failed_files", dg.AssetCheckSeverity.ERROR)]
    listed = failing[0].metadata["failed"].value
    assert failing[0].metadata["failed_files"].value == 3
    assert all(n in listed for n, (status, _) in BAD_INPUTS.items() if status == "failed")
    # the silent file is not diarized either; every word elsewhere has a speaker
    diar = wh.read_table("diarization", batch_id)
    assert words["speaker"].null_count() == 0
    assert set(diar["media_id"]) == ok_ids - {silence_id}
    md = metadata(result, "media")
    assert (md["files_ok"], md["files_failed"], md["files_skipped"]) == (4, 3, 2)
    assert "truncated" in md["problems"]


FRESH, STALE = "fresh", "stale"


def staleness(instance, batch_id, keys=("media", "transcripts", "diarization", "words")):
    """What the UI shows for the batch, for the definitions as they load in the current
    environment (code versions from the configured models), read through public APIs as
    Dagster decides it: a materialization is stale when its definition now carries another
    code version than the one it was made with, or when an asset it was made from has been
    materialized since with another data version."""
    specs = {spec.key: spec for a in with_code_versions(BATCH_ASSETS) for spec in a.specs}

    def latest(key: dg.AssetKey, at_or_before: int | None = None) -> dg.EventLogRecord:
        filter_ = dg.AssetRecordsFilter(
            asset_key=key,
            asset_partitions=[batch_id],
            before_storage_id=None if at_or_before is None else at_or_before + 1,
        )
        [record] = instance.fetch_materializations(filter_, limit=1).records
        return record

    def data_version(record: dg.EventLogRecord) -> str:
        return record.asset_materialization.tags["dagster/data_version"]

    def is_stale(key: dg.AssetKey) -> bool:
        made = latest(key).asset_materialization.tags
        assert specs[key].code_version, key  # without one the UI has nothing to compare
        if made["dagster/code_version"] != specs[key].code_version:
            return True
        for dep in (d.asset_key for d in specs[key].deps):
            used = int(made[f"dagster/input_event_pointer/{dep.to_user_string()}"])  # storage id of the input
            now = latest(dep)
            if now.storage_id > used and data_version(now) != data_version(latest(dep, at_or_before=used)):
                return True
        return False

    return {k: STALE if is_stale(dg.AssetKey(k)) else FRESH for k in keys}


def test_rerun_skips_done_files_and_redoes_other_model_versions(tmp_path, instance, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("meeting-02.flac", "lecture_05.ogg", "call-07.flac"):
        shutil.copy(SAMPLE_DROP / name, drop / name)
    root = tmp_path / "warehouse"
    [batch_id] = register(instance, root, drop).new_batch_ids
    wh = Warehouse(str(root))

    first = run_batch(instance, root, batch_id)
    assert metadata(first, "transcripts")["files_transcribed_this_run"] == 3
    # diarization ran first and handed every file's speech activity over: no second VAD pass
    assert (metadata(first, "transcripts")["vad_from_diarization"], metadata(first, "transcripts")["vad_run_here"]) == (
        3,
        0,
    )
    state1 = wh.read_table("transcripts", batch_id)
    words1 = wh.read_table("words", batch_id)

    again = run_batch(instance, root, batch_id)
    md = metadata(again, "transcripts")
    assert md["files_transcribed_this_run"] == 0 and md["files_current_kept"] == 3
    assert md["model_load_s"] == 0  # nothing to do: the model is never loaded
    assert metadata(again, "media")["files_ingested_this_run"] == 0
    assert wh.read_table("transcripts", batch_id).equals(state1)
    assert wh.read_table("words", batch_id).equals(words1)
    assert set(staleness(instance, batch_id).values()) == {FRESH}

    # a per-run option redoes named files even when they are current
    forced = dg.materialize(
        with_code_versions([transcribe]),
        partition_key=batch_id,
        instance=instance,
        resources={"warehouse": WarehouseResource(root=str(root)), "asr": AsrModelResource()},
        run_config={"ops": {"transcribe": {"config": {"force": ["meeting-02.flac"]}}}},
    )
    assert metadata(forced, "transcripts")["files_transcribed_this_run"] == 1
    assert metadata(forced, "transcripts")["vad_from_diarization"] == 1  # kept from the first run

    # the deployment now names another model (the same weights from another directory are
    # another model version): the UI marks transcripts and what follows stale, not media;
    # the backfill run redoes every file, once each
    other = tmp_path / "tiny-copy"
    shutil.copytree(resolve_asr_model("packaged:tiny.en").path, other)
    monkeypatch.setenv("OPENTRANSCRIBE_ASR_MODEL", str(other))
    assert staleness(instance, batch_id) == {
        "media": FRESH,
        "transcripts": STALE,
        "diarization": FRESH,
        "words": STALE,
    }
    third = run_batch(instance, root, batch_id)
    assert set(staleness(instance, batch_id).values()) == {FRESH}
    assert metadata(third, "transcripts")["files_transcribed_this_run"] == 3
    state3 = wh.read_table("transcripts", batch_id)
    assert state3.height == 3 and state3["model_version"].n_unique() == 1
    assert state3["model_version"][0] != state1["model_version"][0]
    words3 = wh.read_table("words", batch_id)
    assert words3.height == words1.height
    assert words3.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    assert wh.files_under(wh.staging_dir("asr_words", batch_id)) == []


def test_a_file_failing_in_transcription_does_not_fail_the_batch(tmp_path, instance):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("meeting-02.flac", "lecture_05.ogg"):
        shutil.copy(SAMPLE_DROP / name, drop / name)
    root = tmp_path / "warehouse"
    [batch_id] = register(instance, root, drop).new_batch_ids
    assert run_batch(instance, root, batch_id, selection=(ingest,)).success
    wh = Warehouse(str(root))
    audio = wh.read_table("audio", batch_id).sort("media_id")
    broken_id, broken_uri = audio.row(0)[1], audio.row(0)[2]
    wh.put_bytes(broken_uri, b"this is no longer flac")  # damaged in storage after ingest

    result = run_batch(instance, root, batch_id, selection=(transcribe, diarize))
    assert result.success
    state = wh.read_table("transcripts", batch_id)
    broken = state.filter(pl.col("media_id") == broken_id).row(0, named=True)
    assert broken["status"] == "failed" and "MediaError" in broken["error"]
    assert state.filter(pl.col("media_id") != broken_id)["status"].to_list() == ["ok"]
    assert metadata(result, "transcripts")["files_failed"] == 1
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["transcripts_no_failed_files"].passed
    assert broken_id in checks["transcripts_no_failed_files"].metadata["failed"].value
    # named by its source file, in the table and in the description the run's event log shows
    source = wh.read_table("media", batch_id).filter(pl.col("media_id") == broken_id)["source_uri"][0]
    name = source.rsplit("/", 1)[-1]
    assert name in checks["transcripts_no_failed_files"].metadata["failed"].value
    assert name in checks["transcripts_no_failed_files"].description
    assert not checks["diarization_no_failed_files"].passed  # the same damaged audio


def test_files_arriving_later_become_a_new_batch(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(SAMPLE_DROP / "meeting-02.flac", drop / "a.flac")
    wh = Warehouse(str(tmp_path / "warehouse"))
    first = register_drop(wh, str(drop))
    assert first.new_batch_ids == ["drop-0000"]
    again = register_drop(wh, str(drop))
    assert again.new_batch_ids == [] and again.known_files == 1
    shutil.copy(SAMPLE_DROP / "call-07.flac", drop / "b.flac")
    later = register_drop(wh, str(drop))
    assert later.new_batch_ids == ["drop-0001"] and later.batch_ids == ["drop-0000", "drop-0001"]
    assert wh.read_table("batches", "drop-0000")["source_uri"].to_list() == [str(drop / "a.flac")]
    assert wh.read_table("batches", "drop-0001")["source_uri"].to_list() == [str(drop / "b.flac")]


def test_bytes_already_in_the_archive_are_not_processed_again(tmp_path, instance):
    root = tmp_path / "warehouse"
    wh = Warehouse(str(root))
    index = MediaIndex(wh)

    def drop_of(name: str, files: dict[str, str]) -> str:
        d = tmp_path / name
        d.mkdir()
        for target, sample in files.items():
            shutil.copy(SAMPLE_DROP / sample, d / target)
        [batch_id] = register(instance, root, d).new_batch_ids
        assert run_batch(instance, root, batch_id, selection=[ingest]).success
        return batch_id

    def rows(batch_id):
        media = wh.read_table("media", batch_id)
        return {uri.rsplit("/", 1)[1]: r for uri, r in zip(media["source_uri"], media.iter_rows(named=True))}

    b1 = drop_of("d1", {"meeting.flac": "meeting-02.flac"})
    assert index.is_built() and index.entries() == 1
    b2 = drop_of("d2", {"meeting again.flac": "meeting-02.flac", "call.flac": "call-07.flac"})
    again, call = rows(b2)["meeting again.flac"], rows(b2)["call.flac"]
    assert again["status"] == "skipped" and again["duplicate_of"] == str(tmp_path / "d1" / "meeting.flac")
    assert f"already in the archive (batch {b1})" in again["error"]
    assert call["status"] == "ok" and index.entries() == 2
    assert wh.read_table("audio", b2)["media_id"].to_list() == [call["media_id"]]
    assert index.lookup(call["media_id"]).batch_id == b2

    # an entry naming the batch itself (left by a run killed before staging) is not a duplicate
    wh.remove(wh.path("_index"), recursive=True)
    wh.put_bytes(wh.path("_index", "media", "_built"), b"1")
    d3 = tmp_path / "d3"
    d3.mkdir()
    shutil.copy(SAMPLE_DROP / "lecture_05.ogg", d3 / "lecture.ogg")
    [b3] = register(instance, root, d3).new_batch_ids
    lecture_id = hashlib.sha256((d3 / "lecture.ogg").read_bytes()).hexdigest()
    index.record(lecture_id, b3, str(d3 / "lecture.ogg"))
    assert run_batch(instance, root, b3, selection=[ingest]).success
    assert rows(b3)["lecture.ogg"]["status"] == "ok"

    # a warehouse written before the index existed: the first ingest builds it from `media`
    wh.remove(wh.path("_index"), recursive=True)
    b4 = drop_of("d4", {"call copy.flac": "call-07.flac", "lecture copy.ogg": "lecture_05.ogg"})
    assert {n: r["status"] for n, r in rows(b4).items()} == {"call copy.flac": "skipped", "lecture copy.ogg": "skipped"}
    assert f"(batch {b2})" in rows(b4)["call copy.flac"]["error"]
    assert index.is_built() and index.entries() == 3  # meeting, call, lecture


def test_batches_are_bounded_by_files_and_hours(tmp_path):
    wh = Warehouse(str(tmp_path / "w1"))
    reg = register_drop(wh, str(SAMPLE_DROP), limits=BatchLimits(max_files=3, max_hours=10))
    sizes = [wh.read_table("batches", b).height for b in reg.new_batch_ids]
    assert sizes == [3, 3, 2]
    wh2 = Warehouse(str(tmp_path / "w2"))
    reg2 = register_drop(wh2, str(SAMPLE_DROP), limits=BatchLimits(max_files=100, max_hours=40 / 3600))
    # every sample file is 12-21 s long: at most two fit in 40 s
    sizes2 = [wh2.read_table("batches", b).height for b in reg2.new_batch_ids]
    assert sum(sizes2) == 8 and max(sizes2) <= 2


def test_drop_names_become_safe_distinct_partition_keys(tmp_path):
    wh = Warehouse(str(tmp_path / "w"))
    drop = tmp_path / "Drop Ünïcode, #1"
    drop.mkdir()
    shutil.copy(SAMPLE_DROP / "meeting-02.flac", drop / "x.flac")
    [batch_id] = register_drop(wh, str(drop)).new_batch_ids
    assert batch_id.startswith("drop-n-code-1~") and batch_id.endswith("-0000")
    assert all(c.isalnum() or c in "-_.~" for c in batch_id)


def test_schema_checks_fail_on_bad_rows():
    bad = pl.DataFrame({"batch_id": ["b"], "media_id": ["not-a-sha"]})
    result = schema_check_result("audio", bad)
    assert not result.passed
    assert result.metadata["failures"].value >= 1
