"""Speakers: attribution rules, the real diarizer, and real Dagster runs (diarization,
attribution, clustering, the assignment sensor). The clustering maths: test_cluster.py."""

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.assets import attribute_speakers, cluster_speakers, diarize, ingest, transcribe
from opentranscribe_pipeline.assets.clustering import clustering_run_config
from opentranscribe_pipeline.cli import main as cli_main
from opentranscribe_pipeline.drops.batches import register_drop
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.resources import (
    AsrModelResource,
    DiarizationModelResource,
    SpeakerClusteringResource,
    WarehouseResource,
)
from opentranscribe_pipeline.sensors.speakers import assign_new_speakers
from opentranscribe_pipeline.speakers.state import read_clusters
from opentranscribe_pipeline.speech.attribute import assign_word_speakers, attribute_file
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer, Turn
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import SAMPLE_DROP
from ..der import der

TRUTH = json.loads((SAMPLE_DROP.parent / "truth.json").read_text())


# ----------------------------------------------------------------------------- attribution
TURNS = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.5, 4.0, "SPEAKER_01"), Turn(4.2, 6.0, "SPEAKER_00")]


def test_boundary_words_go_to_the_speaker_holding_most_of_them():
    got = assign_word_speakers(np.array([1.7, 2.3, 3.9]), np.array([2.1, 2.9, 4.4]), TURNS)
    # 1.7-2.1: 0.3 s in SPEAKER_00; 2.3-2.9: 0.4 s in SPEAKER_01; 3.9-4.4: 0.1 vs 0.2
    assert [g.speaker for g in got] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert got[1].overlap == pytest.approx(0.4 / 0.6)


def test_words_outside_every_turn_still_get_the_nearest_speaker():
    got = assign_word_speakers(np.array([2.05, 4.1, 7.0, 9.0]), np.array([2.2, 4.18, 7.5, 9.0]), TURNS)
    assert [g.speaker for g in got] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_00", "SPEAKER_00"]
    assert all(g.overlap == 0.0 for g in got)
    got = assign_word_speakers(np.array([2.3]), np.array([2.45]), TURNS)  # closer to SPEAKER_01
    assert got[0].speaker == "SPEAKER_01"
    assert assign_word_speakers(np.array([1.0]), np.array([1.2]), [])[0].speaker is None


def test_segments_split_where_the_speaker_changes_and_keep_every_word():
    segments = [{"segment_id": 0, "start_s": 0.0, "end_s": 4.0, "text": "Hello there. Hi.", "language": "en"}]
    words = [
        {"segment_id": 0, "word_index": 0, "word": "Hello", "start_s": 0.1, "end_s": 0.6},
        {"segment_id": 0, "word_index": 1, "word": "there.", "start_s": 0.7, "end_s": 1.2},
        # a word spilling 0.1 s over the boundary, sandwiched in its speaker's words
        {"segment_id": 0, "word_index": 2, "word": "and", "start_s": 1.8, "end_s": 2.6},
        {"segment_id": 0, "word_index": 3, "word": "so", "start_s": 1.6, "end_s": 1.9},
        {"segment_id": 0, "word_index": 4, "word": "Hi.", "start_s": 2.6, "end_s": 3.2},
    ]
    segs, out = attribute_file(segments, words, TURNS)
    assert [s["speaker"] for s in segs] == ["SPEAKER_00", "SPEAKER_01"]
    assert segs[0]["text"] == "Hello there. and so" and segs[1]["text"] == "Hi."
    assert len(out) == 5 and all(w["speaker"] for w in out)
    assert [(w["segment_id"], w["word_index"]) for w in out] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert segs[0]["start_s"] == 0.0 and segs[1]["end_s"] == 4.0


# ----------------------------------------------------------------------------- diarizer
@pytest.fixture(scope="module")
def diarizer():
    with Diarizer(DiarizationOptions()) as d:
        yield d


@pytest.mark.parametrize("name", ["interview 01.wav", "panel_08.wav"])
def test_packaged_diarizer_finds_the_speakers(diarizer, name):
    truth = TRUTH[f"drop-2026-11-24/{name}"]
    result = diarizer.diarize(decode(str(SAMPLE_DROP / name)).samples)
    assert len(result.speakers) == len(truth["speakers"])
    assert der(result.turns, truth["turns"]) < 0.10
    assert [v.speaker for v in result.voices] == result.speakers
    for v in result.voices:
        assert v.embedding.shape == (256,) and abs(np.linalg.norm(v.embedding) - 1) < 1e-4 and v.speech_s > 1


def test_one_voice_no_speech_and_very_short_files(diarizer):
    samples = decode(str(SAMPLE_DROP / "interview 01.wav")).samples
    first = TRUTH["drop-2026-11-24/interview 01.wav"]["turns"][0]
    one_voice = samples[: int((first["end_s"] + 0.3) * 16000)]
    r = diarizer.diarize(one_voice)
    assert r.speakers == ["SPEAKER_00"] and len(r.voices) == 1 and r.note is None
    silence = np.random.default_rng(0).normal(0, 0.001, 16000 * 5).astype(np.float32)
    r = diarizer.diarize(silence)
    assert r.turns == [] and r.voices == [] and r.note == "no speech found"
    short = samples[int(first["start_s"] * 16000) : int((first["start_s"] + 0.8) * 16000)]
    r = diarizer.diarize(short)  # under 1 s: at most one speaker, never an exception
    assert len(r.speakers) <= 1 and all(t.end_s <= 0.8 + 1e-6 for t in r.turns)
    assert diarizer.diarize(np.zeros(100, np.float32)).note.startswith("shorter than")


# ----------------------------------------------------------------------------- Dagster runs
FILES = ("interview 01.wav", "meeting-02.flac", "lecture_05.ogg", "call-07.flac")


def _resources(root):
    return {
        "warehouse": WarehouseResource(root=str(root)),
        "asr": AsrModelResource(),
        "diarization": DiarizationModelResource(),
        "clustering": SpeakerClusteringResource(),
    }


def _cluster(instance, root, mode, batch_ids=()):
    return dg.materialize(
        [cluster_speakers],
        instance=instance,
        resources=_resources(root),
        run_config={"ops": {"cluster_speakers": {"config": {"mode": mode, "batch_ids": list(batch_ids)}}}},
    )


def _fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """Two batches (drops) of the sample archive processed through the whole batch graph, once
    per module (the real models make this the slow part). Shared, so read-only: tests that
    cluster, name or rewrite work on ``archive``, their own copy; the teardown fails if a test
    wrote here."""
    tmp = tmp_path_factory.mktemp("speakers")
    root = tmp / "warehouse"
    with dg.instance_for_test() as instance:
        batches = []
        for drop_name, names in (("first", FILES[:2]), ("second", FILES[2:])):
            drop = tmp / drop_name
            drop.mkdir()
            for n in names:
                shutil.copy(SAMPLE_DROP / n, drop / n)
            reg = register_drop(Warehouse(str(root)), str(drop))
            instance.add_dynamic_partitions(BATCHES, reg.batch_ids)
            [batch_id] = reg.new_batch_ids
            result = dg.materialize(
                [ingest, transcribe, diarize, attribute_speakers],
                partition_key=batch_id,
                instance=instance,
                resources=_resources(root),
            )
            assert result.success
            batches.append(batch_id)
        before = _fingerprint(root)
        yield instance, root, tuple(batches)
        assert _fingerprint(root) == before, "a test wrote to the shared warehouse: use the `archive` fixture"


@pytest.fixture
def archive(processed, tmp_path):
    """A test's own copy of the processed warehouse, with a fresh Dagster instance: what one
    test clusters, names or rewrites never reaches another."""
    _, shared_root, batches = processed
    root = tmp_path / "warehouse"
    shutil.copytree(shared_root, root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, list(batches))
        yield instance, root, batches


def test_every_word_has_the_right_speaker_and_voices_share_ids_across_files(archive):
    instance, root, batches = archive
    wh = Warehouse(str(root))
    for b in batches:
        assert _cluster(instance, root, "incremental", [b]).success
    clusters = read_clusters(wh)
    media = pl.concat([wh.read_table("media", b) for b in batches]).select("media_id", "source_uri")
    emb = pl.concat([wh.read_table("speaker_embeddings", b) for b in batches])
    assert clusters.height == emb.height == 8  # two voices in each of the four files
    # map each local speaker to its true voice by overlap with the true turns
    turns = pl.concat([wh.read_table("speaker_turns", b) for b in batches]).join(media, on="media_id")
    truth_of = {}
    for (media_id, uri, speaker), g in turns.group_by("media_id", "source_uri", "speaker"):
        truth = TRUTH["drop-2026-11-24/" + uri.rsplit("/", 1)[1]]["turns"]
        score = {}
        for s, e in g.select("start_s", "end_s").iter_rows():
            for t in truth:
                score[t["speaker"]] = score.get(t["speaker"], 0) + max(0, min(e, t["end_s"]) - max(s, t["start_s"]))
        truth_of[(media_id, speaker)] = max(score, key=score.get)
    gid_of = {(m, s): g for m, s, g in clusters.select("media_id", "speaker", "global_speaker_id").iter_rows()}
    voice_ids = {}
    for key, voice in truth_of.items():
        voice_ids.setdefault(voice, set()).add(gid_of[key])
    assert all(len(v) == 1 for v in voice_ids.values()), voice_ids  # one id per voice
    assert len({next(iter(v)) for v in voice_ids.values()}) == len(voice_ids)  # distinct voices

    words = pl.concat([wh.read_table("words", b) for b in batches]).join(media, on="media_id")
    assert words["speaker"].null_count() == 0
    right = total = 0
    for uri, speaker, s, e in words.select("source_uri", "speaker", "start_s", "end_s").iter_rows():
        truth = TRUTH["drop-2026-11-24/" + uri.rsplit("/", 1)[1]]["turns"]
        mid = (s + e) / 2
        nearest = min(
            truth,
            key=lambda t: (
                0 if t["start_s"] <= mid <= t["end_s"] else min(abs(mid - t["start_s"]), abs(mid - t["end_s"]))
            ),
        )
        media_id = media.filter(pl.col("source_uri") == uri)["media_id"][0]
        right += truth_of[(media_id, speaker)] == nearest["speaker"]
        total += 1
    assert right / total >= 0.9, (right, total)
    segments = pl.concat([wh.read_table("segments", b) for b in batches])
    assert segments["speaker"].null_count() == 0


def test_full_recluster_keeps_ids_names_follow_and_bad_profiles_are_reported(archive, capsys):
    instance, root, batches = archive
    wh = Warehouse(str(root))
    assert not read_clusters(wh).height  # a copy nobody clustered yet
    for b in batches:
        assert _cluster(instance, root, "incremental", [b]).success
    before = read_clusters(wh).select("media_id", "speaker", "global_speaker_id").sort("media_id", "speaker")
    gid = before["global_speaker_id"][0]
    assert cli_main(["speakers", "name", gid, "Ada Lovelace", "--warehouse", str(root)]) == 0
    assert cli_main(["speakers", "name", "spk-999999", "Nobody", "--warehouse", str(root)]) == 2
    assert "no global speaker 'spk-999999'" in capsys.readouterr().err

    result = _cluster(instance, root, "full")
    assert result.success
    after = read_clusters(wh).select("media_id", "speaker", "global_speaker_id").sort("media_id", "speaker")
    assert after.equals(before)  # same voices, same ids
    profiles = wh.read_table("speaker_profiles")
    assert dict(zip(profiles["global_speaker_id"], profiles["name"])) == {gid: "Ada Lovelace"}
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "profiles_name_known_speakers"]
    assert check.passed

    # a hand-written profile naming an id that does not exist: kept, reported, nothing lost
    bad = pl.concat([profiles, profiles.with_columns(global_speaker_id=pl.lit("spk-777777"), name=pl.lit("Ghost"))])
    wh.write_table("speaker_profiles", bad)
    result = _cluster(instance, root, "full")
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "profiles_name_known_speakers"]
    assert not check.passed and "spk-777777" in check.metadata["unknown_ids"].value
    assert wh.read_table("speaker_profiles").height == 2
    [mat] = [
        m
        for m in result.asset_materializations_for_node("cluster_speakers")
        if m.asset_key.path == ["speaker_clusters"]
    ]
    assert mat.metadata["speaker_map"].value.startswith("![speaker map](data:image/png;base64,")
    assert wh.exists(wh.path("_reports", "speaker_map.png"))


def test_embeddings_of_another_model_are_never_compared(archive):
    instance, root, batches = archive
    wh = Warehouse(str(root))
    assert not read_clusters(wh).height  # a copy nobody clustered yet
    for b in batches:
        assert _cluster(instance, root, "incremental", [b]).success
    original = wh.read_table("speaker_embeddings", batches[1])
    wh.write_table("speaker_embeddings", original.with_columns(model=pl.lit("some-other-encoder")), batches[1])
    result = _cluster(instance, root, "full")
    assert result.success
    [mat] = [
        m
        for m in result.asset_materializations_for_node("cluster_speakers")
        if m.asset_key.path == ["speaker_clusters"]
    ]
    assert mat.metadata["embeddings_of_other_models_skipped"].value == original.height
    clusters = read_clusters(wh)
    assert set(clusters["batch_id"]) == {batches[0]}  # the other model's speakers are not clustered
    # re-diarized with the configured model: the next full run clusters them again
    wh.write_table("speaker_embeddings", original, batches[1])
    assert _cluster(instance, root, "full").success
    assert set(read_clusters(wh)["batch_id"]) == set(batches)


def _tick(instance, cursor=None) -> tuple[list, str | None]:
    """One evaluation of the sensor: what it returned, and the cursor it leaves."""
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = list(assign_new_speakers(context))  # a generator, evaluated inside the context
        return result, context.cursor


def test_sensor_requests_an_assignment_when_embeddings_land(processed):
    instance, root, batches = processed  # read-only: the sensor only reads the event log
    result, cursor = _tick(instance)
    requests = [r for r in result if isinstance(r, dg.RunRequest)]
    assert requests, "a materialization of speaker_embeddings must request a run"
    for request in requests:
        config = request.run_config["ops"]["cluster_speakers"]["config"]
        assert config["mode"] == "incremental" and config["batch_ids"][0] in batches
        assert config["batch_ids"] == [request.tags["opentranscribe/batch"]]  # one batch per run
        assert request.run_key.endswith(config["batch_ids"][0])
    # an asset sensor reads the newest materialization: the second batch's
    assert [r.run_config for r in requests] == [clustering_run_config("incremental", [batches[1]])]
    again, _ = _tick(instance, cursor)
    assert [r for r in again if isinstance(r, dg.RunRequest)] == []  # nothing new: no second run
    assert [type(r) for r in again] == [dg.SkipReason]


def test_every_batch_whose_embeddings_land_gets_its_own_assignment_run():
    """Batches landing one after another, a tick after each: one request per batch, each
    naming just its batch, with distinct run keys; a materialization without a batch
    partition is skipped with the reason."""
    batch_ids = ["drop-a-0000", "drop-a-0001", "drop-b-0000"]
    with dg.instance_for_test() as instance:
        cursor, requests = None, []
        for batch_id in batch_ids:
            instance.report_runless_asset_event(dg.AssetMaterialization("speaker_embeddings", partition=batch_id))
            result, cursor = _tick(instance, cursor)
            assert [type(r) for r in result] == [dg.RunRequest], result
            requests += result
        for batch_id, request in zip(batch_ids, requests, strict=True):
            assert request.run_config == clustering_run_config("incremental", [batch_id])
            assert request.tags == {"opentranscribe/batch": batch_id}
        assert len({r.run_key for r in requests}) == len(batch_ids)

        instance.report_runless_asset_event(dg.AssetMaterialization("speaker_embeddings"))
        result, _ = _tick(instance, cursor)
        assert [type(r) for r in result] == [dg.SkipReason]
        assert "without a batch partition" in result[0].skip_message


def test_failed_diarization_leaves_words_without_speaker_and_says_so(tmp_path):
    from opentranscribe_pipeline.assets.attribution import attribute_batch

    mid = "a" * 64
    segs = pl.DataFrame(
        {
            "batch_id": ["b"],
            "media_id": [mid],
            "segment_id": [0],
            "start_s": [0.0],
            "end_s": [1.0],
            "text": ["hi"],
            "language": ["en"],
            "avg_logprob": [None],
        },
        schema_overrides={"segment_id": pl.Int32, "avg_logprob": pl.Float64},
    )
    words = pl.DataFrame(
        {
            "batch_id": ["b"],
            "media_id": [mid],
            "segment_id": [0],
            "word_index": [0],
            "word": ["hi"],
            "start_s": [0.1],
            "end_s": [0.4],
            "score": [None],
            "timing_source": ["cross_attention"],
        },
        schema_overrides={"segment_id": pl.Int32, "word_index": pl.Int32, "score": pl.Float64},
    )
    from opentranscribe_pipeline.assets.modelstep import empty
    from opentranscribe_pipeline.schemas import SpeakerTurns

    s, w, fallback, issues = attribute_batch("b", segs, words, empty(SpeakerTurns), diarized_ok=set())
    assert w["speaker"].to_list() == [None] and s["speaker"].to_list() == [None] and issues == []
    # diarized fine but no turns (words heard in what diarization called silence): SPEAKER_00
    s, w, fallback, issues = attribute_batch("b", segs, words, empty(SpeakerTurns), diarized_ok={mid})
    assert w["speaker"].to_list() == ["SPEAKER_00"] and fallback == [mid] and issues == []
