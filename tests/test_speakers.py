"""Speakers: attribution rules, clustering ids, the real diarizer, and real Dagster runs."""

import datetime as dt
import json
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.assets import attribute_speakers, cluster_speakers, diarize, ingest, transcribe
from opentranscribe_pipeline.assets.speaker_state import follow_merges, read_clusters
from opentranscribe_pipeline.batching import register_drop
from opentranscribe_pipeline.cli import main as cli_main
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.resources import (
    AsrModelResource,
    DiarizationModelResource,
    SpeakerClusteringResource,
    WarehouseResource,
)
from opentranscribe_pipeline.schemas import SpeakerProfiles, conform
from opentranscribe_pipeline.sensors.speakers import assign_new_speakers
from opentranscribe_pipeline.speech.attribute import assign_word_speakers, attribute_file
from opentranscribe_pipeline.speech.cluster import VoiceIndex, assign_new, normalize, recluster
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer, Turn
from opentranscribe_pipeline.storage import Warehouse

from .conftest import SAMPLE_DROP

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


# ----------------------------------------------------------------------------- clustering
def _voices(rng, k, dim=256):
    base = normalize(rng.normal(size=dim))
    return normalize(base * 1.2 + normalize(rng.normal(size=(k, dim))))


def _samples(rng, centers, labels, noise=0.02):
    return normalize(centers[labels] + rng.normal(size=(len(labels), centers.shape[1])).astype(np.float32) * noise)


def test_recluster_keeps_ids_and_mints_only_for_new_voices():
    rng = np.random.default_rng(1)
    centers = _voices(rng, 12)
    labels = np.repeat(np.arange(8), 10)
    X = _samples(rng, centers, labels)
    ids, sims, index, report = recluster(X, np.full(len(X), 10.0), [None] * len(X), VoiceIndex(model="m"))
    assert len(set(ids)) == 8 and report.new_ids == 8 and sims.min() > 0.8
    by_voice = {lab: ids[i] for i, lab in enumerate(labels)}
    assert all(ids[i] == by_voice[lab] for i, lab in enumerate(labels))  # one id per voice

    # new batches: 4 known voices again plus 4 new ones
    labels2 = np.repeat(np.array([0, 1, 2, 3, 8, 9, 10, 11]), 5)
    X2 = _samples(rng, centers, labels2)
    ids2, _, index2, report2 = recluster(
        np.vstack([X, X2]), np.full(len(X) + len(X2), 10.0), ids + [None] * len(X2), index
    )
    assert ids2[: len(ids)] == ids  # nobody's id changed
    assert report2.kept_ids == 8 and report2.new_ids == 4
    new_voice_ids = {ids2[len(ids) + i] for i, lab in enumerate(labels2) if lab >= 8}
    assert len(new_voice_ids) == 4 and not new_voice_ids & set(ids)
    assert {ids2[len(ids) + i] for i, lab in enumerate(labels2) if lab == 0} == {by_voice[0]}


def test_merges_and_splits_are_reported_and_names_follow_merges():
    rng = np.random.default_rng(2)
    centers = _voices(rng, 3)
    labels = np.repeat(np.arange(3), 6)
    X = _samples(rng, centers, labels)
    # a previous clustering that had split voice 0 into two ids and merged voices 1 and 2
    previous = ["spk-000001"] * 3 + ["spk-000002"] * 3 + ["spk-000003"] * 12
    index = VoiceIndex(model="m", next_number=4)
    ids, _, new_index, report = recluster(X, np.full(len(X), 5.0), previous, index)
    assert len(set(ids[:6])) == 1 and ids[0] in {"spk-000001", "spk-000002"}
    assert len(report.merges) == 1 and report.merges[0][1] == ids[0]
    assert len({ids[6], ids[12]}) == 2 and "spk-000003" in {ids[6], ids[12]}
    assert report.splits and report.splits[0][0] == "spk-000003"
    retired = report.merges[0][0]
    assert new_index.resolve(retired) == ids[0]
    named_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    profiles = conform(
        pl.DataFrame({"global_speaker_id": [retired], "name": ["Ada"], "named_at": [named_at]}), SpeakerProfiles
    )
    moved, conflicts = follow_merges(profiles, report.merges)
    assert dict(zip(moved["global_speaker_id"], moved["name"])) == {retired: "Ada", ids[0]: "Ada"} and not conflicts


def test_assigning_a_batch_compares_with_centroids_only():
    rng = np.random.default_rng(3)
    centers = _voices(rng, 5)
    index = VoiceIndex(model="m")
    first, _ = assign_new(index, _samples(rng, centers, np.arange(5)), np.full(5, 8.0))
    assert len(set(first)) == 5 and len(index) == 5
    second, sims = assign_new(index, _samples(rng, centers, np.array([4, 3, 0])), np.full(3, 8.0))
    assert second == [first[4], first[3], first[0]] and sims.min() > 0.8
    assert index.members.sum() == 8 and len(index) == 5
    # a speaker far from every voice mints a new id
    [new], _ = assign_new(index, normalize(np.random.default_rng(9).normal(size=(1, 256))), np.array([3.0]))
    assert new not in first and len(index) == 6


# ----------------------------------------------------------------------------- diarizer
@pytest.fixture(scope="module")
def diarizer():
    with Diarizer(DiarizationOptions()) as d:
        yield d


def _der(turns, truth_turns) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for t in truth_turns:
        ref[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in turns:
        hyp[Segment(t.start_s, t.end_s)] = t.speaker
    return DiarizationErrorRate(collar=0.25)(ref, hyp)


@pytest.mark.parametrize("name", ["interview 01.wav", "panel_08.wav"])
def test_packaged_diarizer_finds_the_speakers(diarizer, name):
    truth = TRUTH[f"drop-2026-11-24/{name}"]
    result = diarizer.diarize(decode(str(SAMPLE_DROP / name)).samples)
    assert len(result.speakers) == len(truth["speakers"])
    assert _der(result.turns, truth["turns"]) < 0.10
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


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two batches (drops) of the sample archive processed through the whole batch graph."""
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
    if not read_clusters(wh).height:
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
    assert wh.fs.exists(wh.path("_reports", "speaker_map.png"))


def test_embeddings_of_another_model_are_never_compared(archive):
    instance, root, batches = archive
    wh = Warehouse(str(root))
    if not read_clusters(wh).height:
        for b in batches:
            assert _cluster(instance, root, "incremental", [b]).success
    original = wh.read_table("speaker_embeddings", batches[1])
    try:
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
    finally:
        wh.write_table("speaker_embeddings", original, batches[1])
        assert _cluster(instance, root, "full").success
    assert set(read_clusters(wh)["batch_id"]) == set(batches)


def test_sensor_requests_an_assignment_when_embeddings_land(archive):
    instance, root, batches = archive
    with dg.build_sensor_context(instance=instance) as context:
        result = assign_new_speakers(context)  # a generator, evaluated inside the context
        requests = [r for r in result if isinstance(r, dg.RunRequest)]
    assert requests, "a materialization of speaker_embeddings must request a run"
    config = requests[-1].run_config["ops"]["cluster_speakers"]["config"]
    assert config["mode"] == "incremental" and config["batch_ids"][0] in batches


def test_failed_diarization_leaves_words_without_speaker_and_says_so(tmp_path):
    from opentranscribe_pipeline.assets.speakers import attribute_batch

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
    from opentranscribe_pipeline.assets.perfile import empty
    from opentranscribe_pipeline.schemas import SpeakerTurns

    s, w, fallback = attribute_batch("b", segs, words, empty(SpeakerTurns), diarized_ok=set())
    assert w["speaker"].to_list() == [None] and s["speaker"].to_list() == [None]
    # diarized fine but no turns (words heard in what diarization called silence): SPEAKER_00
    s, w, fallback = attribute_batch("b", segs, words, empty(SpeakerTurns), diarized_ok={mid})
    assert w["speaker"].to_list() == ["SPEAKER_00"] and fallback == [mid]
