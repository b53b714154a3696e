"""Deliverables from a real `opentranscribe process` run (tiny.en, packaged diarization,
clustering, publish_batch): exports parsed back with `srt` and `webvtt-py`, names after a
rename, `opentranscribe export` selections, analytics against the sample truth, the
publish sensor, a file whose diarization failed, a silent file."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.storage import Warehouse

from ..conftest import SHARED_DROP_NAME, TRUTH, cli_in_process
from ..conftest import run_cli as cli
from .helpers import check_srt, check_vtt, parse_srt, parse_vtt

pytestmark = pytest.mark.slow  # the session's shared `opentranscribe process` run (conftest.shared_archive)

FILES = ("interview 01.wav", "call-07.flac")  # two of the shared drop's files, checked against truth.json
DROP = SHARED_DROP_NAME


@pytest.fixture(scope="module")
def processed(_shared_archive_built, tmp_path_factory):
    """The shared processed archive (sample files, a silent file; tiny.en, packaged diarization,
    clustering, publish_batch), copied for this module: tests here rename and re-publish."""
    tmp = tmp_path_factory.mktemp("deliver")
    copy = _shared_archive_built.copy(tmp)
    wh = Warehouse(str(copy.root))
    [batch_id] = wh.batch_ids("media")
    return {
        "tmp": tmp,
        "home": copy.home,
        "root": copy.root,
        "wh": wh,
        "batch": batch_id,
        "drop": copy.drop,
        "archive": copy,
    }


def _media(wh, batch_id) -> dict[str, dict]:
    media = wh.read_table("media", batch_id).filter(pl.col("status") == "ok")
    return {r["source_uri"].rsplit("/", 1)[-1]: r for r in media.iter_rows(named=True)}


def _export(wh, fmt, batch_id, media_id) -> str:
    return wh.get_bytes(wh.export_path(fmt, batch_id, media_id)).decode()


def _shown_names(wh, media_id) -> set[str]:
    from opentranscribe_pipeline.query.core import profiles
    from opentranscribe_pipeline.speakers.state import read_clusters

    names = dict(profiles(wh).rows())
    gids = read_clusters(wh).filter(pl.col("media_id") == media_id)["global_speaker_id"].to_list()
    return {names.get(g, g) for g in gids}


def _own_copy(processed, tmp_path) -> dict:
    """A test's own copy of the module's warehouse and instance: its renames and rewrites
    never reach another test, whatever the order."""
    own = processed["archive"].copy(tmp_path)
    return {**processed, "tmp": tmp_path, "root": own.root, "home": own.home, "wh": own.wh, "archive": own}


def _publish(processed):
    """Re-materialize the batch's exports (what a backfill of publish_batch does)."""
    from opentranscribe_pipeline.assets.exports import exports
    from opentranscribe_pipeline.resources import WarehouseResource
    from opentranscribe_pipeline.resources.deliver import ExportsResource

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("batches", [processed["batch"]])
        result = dg.materialize(
            [exports],
            partition_key=processed["batch"],
            instance=instance,
            resources={
                "warehouse": WarehouseResource(root=str(processed["root"])),
                "exports_config": ExportsResource(),
            },
        )
    assert result.success


def test_every_ok_file_is_exported_and_parses_back_within_the_rules(processed):
    wh, batch_id = processed["wh"], processed["batch"]
    media = _media(wh, batch_id)
    assert {*FILES, "silence.flac"} <= set(media)
    words = wh.read_table("words", batch_id)
    for name in FILES:
        mid = media[name]["media_id"]
        names = _shown_names(wh, mid)
        assert names and all(n.startswith("spk-") for n in names)  # nobody named yet: global ids
        expected = words.filter(pl.col("media_id") == mid).sort("segment_id", "word_index")["word"].to_list()
        assert expected
        assert check_srt(_export(wh, "srt", batch_id, mid), names) == expected  # every word once, in order
        assert check_vtt(_export(wh, "vtt", batch_id, mid), names) == expected
        doc = json.loads(_export(wh, "json", batch_id, mid))
        assert [w["word"] for s in doc["segments"] for w in s["words"]] == expected
        assert all(s["global_speaker_id"] in names for s in doc["segments"])
        assert doc["models"]["asr_model"] == "packaged:tiny.en" and doc["models"]["diarization_model_version"]
        txt = _export(wh, "txt", batch_id, mid)
        paragraphs = txt.strip().split("\n\n")
        assert all(p.startswith("[00:") and any(f"] {n}: " in p for n in names) for p in paragraphs)
        assert txt.split() and sum(len(p.split(": ", 1)[1].split()) for p in paragraphs) == len(expected)
    # no speech: empty but valid files
    silent = media["silence.flac"]["media_id"]
    assert parse_srt(_export(wh, "srt", batch_id, silent)) == []
    assert parse_vtt(_export(wh, "vtt", batch_id, silent)) == []
    assert json.loads(_export(wh, "json", batch_id, silent))["segments"] == []


def test_english_media_are_copied_into_segments_en(processed):
    wh, batch_id = processed["wh"], processed["batch"]
    seg = wh.read_table("segments", batch_id).sort("media_id", "segment_id")
    en = wh.read_table("segments_en", batch_id).sort("media_id", "segment_id")
    assert en.select("media_id", "segment_id", "text", "speaker").equals(
        seg.select("media_id", "segment_id", "text", "speaker")
    )
    assert not en["translated"].any()
    state = wh.read_table("translations", batch_id)
    assert set(state["status"]) == {"ok"} and set(state["note"]) == {"english: copied through"}


def test_analytics_match_the_synthetic_truth(processed):
    wh, batch_id = processed["wh"], processed["batch"]
    media = _media(wh, batch_id)
    stats = wh.read_table("speaker_stats", batch_id)
    mstats = wh.read_table("media_stats", batch_id)
    turns = wh.read_table("speaker_turns", batch_id)
    for name in FILES:
        mid = media[name]["media_id"]
        truth = TRUTH[f"drop-2026-11-24/{name}"]["turns"]
        mine = stats.filter(pl.col("media_id") == mid)
        # each local speaker = the truth voice it overlaps most
        file_turns = turns.filter(pl.col("media_id") == mid)
        voice_of = {}
        for spk in mine["speaker"]:
            ov = {}
            for a, b in file_turns.filter(pl.col("speaker") == spk).select("start_s", "end_s").rows():
                for t in truth:
                    ov[t["speaker"]] = ov.get(t["speaker"], 0) + max(0, min(b, t["end_s"]) - max(a, t["start_s"]))
            voice_of[spk] = max(ov, key=ov.get)
        assert len(set(voice_of.values())) == len(voice_of) == 2
        for row in mine.iter_rows(named=True):
            voice = voice_of[row["speaker"]]
            true_talk = sum(t["end_s"] - t["start_s"] for t in truth if t["speaker"] == voice)
            print(f"{name} {voice}: talk {row['talk_s']:.2f} s vs truth {true_talk:.2f} s")
            assert abs(row["talk_s"] - true_talk) / true_talk < 0.08
            assert row["n_turns"] == sum(1 for t in truth if t["speaker"] == voice)
            assert row["n_interruptions"] == 0
        m = mstats.filter(pl.col("media_id") == mid).row(0, named=True)
        assert m["speaker_switches"] == len(truth) - 1 and m["n_speakers"] == 2
    silent = mstats.filter(pl.col("media_id") == media["silence.flac"]["media_id"]).row(0, named=True)
    assert silent["speech_s"] == 0 and silent["silence_s"] == pytest.approx(3.0, abs=0.05)


def test_renamed_speaker_shows_after_rematerializing(processed, tmp_path):
    processed = _own_copy(processed, tmp_path)
    wh, batch_id, home = processed["wh"], processed["batch"], processed["home"]
    mid = _media(wh, batch_id)["interview 01.wav"]["media_id"]
    from opentranscribe_pipeline.speakers.state import read_clusters

    gid = read_clusters(wh).filter(pl.col("media_id") == mid)["global_speaker_id"].sort()[0]
    evil = "Ada <Lovelace> --> & co"
    proc = cli_in_process(["speakers", "name", gid, evil, "--warehouse", str(processed["root"])], home)
    assert proc.returncode == 0, proc.stderr
    assert "spk-" in _export(wh, "srt", batch_id, mid) and evil not in _export(wh, "vtt", batch_id, mid)
    _publish(processed)
    srt_text, vtt_text = _export(wh, "srt", batch_id, mid), _export(wh, "vtt", batch_id, mid)
    shown_srt = "Ada ‹Lovelace› → & co"
    names_srt = {shown_srt if n == evil else n for n in _shown_names(wh, mid)}
    expected = wh.read_table("words", batch_id).filter(pl.col("media_id") == mid).sort("segment_id", "word_index")
    # every cue names a speaker shown for this file, and no name's words leak into the text
    assert check_srt(srt_text, names_srt) == expected["word"].to_list()
    shown_vtt = "Ada &lt;Lovelace&gt; --&gt; &amp; co"  # escaped inside the <v> voice span
    names_vtt = {shown_vtt if n == shown_srt else n for n in names_srt}
    assert check_vtt(vtt_text, names_vtt) == expected["word"].to_list()
    assert f"{shown_srt}: " in srt_text
    assert "<v Ada &lt;Lovelace&gt; --&gt; &amp; co>" in vtt_text
    assert any(c.raw_text.startswith("<v Ada &lt;Lovelace&gt;") for c in parse_vtt(vtt_text))
    doc = json.loads(_export(wh, "json", batch_id, mid))
    assert evil in {s["speaker_name"] for s in doc["segments"]}
    # the rename was recorded for the UI: a new version of speaker_profiles, and the CLI's
    # publish_batch materialization of exports is stale because of it (what the UI shows;
    # Dagster has no public staleness API outside GraphQL, hence the resolver)
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    from opentranscribe_pipeline.definitions import defs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("speaker_profiles"))
        assert event is not None and event.asset_materialization.tags.get("dagster/data_version")
        resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
        key = dg.AssetKey("exports")
        assert resolver.get_status(key, batch_id) == StaleStatus.STALE
        causes = resolver.get_stale_causes(key, batch_id)
        assert any(c.dependency and c.dependency.asset_key == dg.AssetKey("speaker_profiles") for c in causes)


def test_export_command_selections(processed):
    root, home, tmp = str(processed["root"]), processed["home"], processed["tmp"]
    out = tmp / "out-drop"
    proc = cli(["export", "--warehouse", root, "--out", str(out), "--drop", DROP, "--format", "srt,vtt"], home)
    assert proc.returncode == 0, proc.stderr
    stems = [p.stem for p in processed["drop"].iterdir() if not p.is_symlink()]  # every file of the drop
    assert "silence" in stems and "interview 01" in stems and "call-07" in stems
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.{ext}" for stem in stems for ext in ("srt", "vtt"))
    check_srt((out / "call-07.srt").read_text())
    mid = _media(processed["wh"], processed["batch"])["call-07.flac"]["media_id"]
    out2 = tmp / "out-media"
    proc = cli_in_process(
        ["export", "--warehouse", root, "--out", str(out2), "--media", mid[:10], "--language", "en"], home
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out2.iterdir()) == [f"call-07.en.{e}" for e in ("json", "srt", "txt", "vtt")]
    check_srt((out2 / "call-07.en.srt").read_text())
    assert json.loads((out2 / "call-07.en.json").read_text())["language"] == "en"
    for bad in (["--drop", "no-such-drop"], ["--batch", "nope-0000"], ["--media", "ffffffffff"]):
        proc = cli_in_process(["export", "--warehouse", root, "--out", str(tmp / "x"), *bad], home)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (bad, proc.stderr)
    proc = cli_in_process(["export", "--warehouse", root, "--out", str(tmp / "x"), "--format", "docx"], home)
    assert proc.returncode == 2 and "docx" in proc.stderr


def test_failed_diarization_is_exported_without_names(processed, tmp_path):
    processed = _own_copy(processed, tmp_path)
    wh, batch_id = processed["wh"], processed["batch"]
    mid = _media(wh, batch_id)["call-07.flac"]["media_id"]
    diar = wh.read_table("diarization", batch_id)
    saved = diar
    failed = diar.with_columns(
        status=pl.when(pl.col("media_id") == mid).then(pl.lit("failed")).otherwise(pl.col("status")),
        error=pl.when(pl.col("media_id") == mid).then(pl.lit("RuntimeError: test")).otherwise(pl.col("error")),
    )
    wh.write_table("diarization", failed, batch_id)  # what the diarization step records on failure
    try:
        _publish(processed)
        subs = parse_srt(_export(wh, "srt", batch_id, mid))
        assert subs and not any(": " in s.content.split("\n")[0][:20] and s.content.startswith("spk-") for s in subs)
        assert all(not c.raw_text.startswith("<v ") for c in parse_vtt(_export(wh, "vtt", batch_id, mid)))
        doc = json.loads(_export(wh, "json", batch_id, mid))
        assert doc["diarization"] == "failed" and all(s["speaker"] is None for s in doc["segments"])
    finally:
        wh.write_table("diarization", saved, batch_id)
        _publish(processed)


def test_publish_sensor_requests_one_run_per_assigned_batch(processed):
    from opentranscribe_pipeline.definitions import ASSIGN_JOB, clustering_run_config, defs

    batch_id = processed["batch"]
    sensor = defs.resolve_sensor_def("publish_after_assignment")
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def(ASSIGN_JOB)
        result = job.execute_in_process(
            run_config={
                **clustering_run_config("incremental", [batch_id]),
                "resources": {"warehouse": {"config": {"root": str(processed["root"])}}},
            },
            instance=instance,
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        [event] = [e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS"]
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run
        )
        requests = sensor(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [(batch_id, f"publish-{run.run_id}-{batch_id}")]
