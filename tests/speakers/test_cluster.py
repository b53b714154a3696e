"""Archive-wide speaker ids, Dagster-free (speakers/cluster.py, speakers/identity.py): ids
stay stable across re-clustering, only new voices mint ids, merges and splits are reported,
names follow merges, and assigning a batch compares with centroids only."""

import datetime as dt

import numpy as np
import polars as pl

from opentranscribe_pipeline.schemas import SpeakerProfiles, conform
from opentranscribe_pipeline.speakers.cluster import VoiceIndex, assign_new, normalize, recluster
from opentranscribe_pipeline.speakers.identity import follow_merges


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


def test_full_reclustering_never_puts_two_speakers_of_one_file_under_one_id():
    """Diarization kept a file's two local speakers apart, so they are two people, however
    alike their vectors (real voices can be at cosine 0.86, issue 15): a full re-clustering
    keeps them under two ids, as incremental assignment always did."""
    rng = np.random.default_rng(7)
    [center] = _voices(rng, 1)
    X = _samples(rng, center[None, :], np.zeros(6, int), noise=0.01)  # six near-identical voices
    media = ["a", "a", "b", "c", "d", "d"]  # files a and d each hold two of them
    secs = np.array([30.0, 5.0, 20.0, 20.0, 25.0, 4.0])
    ids, _, _, _ = recluster(X, secs, [None] * 6, VoiceIndex(model="m"))
    assert len(set(ids)) == 1  # without the files, one voice: the rule below has work to do
    ids, sims, index, _ = recluster(X, secs, [None] * 6, VoiceIndex(model="m"), groups=media)
    assert ids[0] != ids[1] and ids[4] != ids[5]
    # the file's longer speaker keeps the shared voice; the shorter ones found another
    assert ids[0] == ids[2] == ids[3] == ids[4]
    assert len(index) == len(set(ids)) and np.isfinite(sims).all()
    # stable on a second pass: nobody moves, no id is minted
    ids2, _, _, report = recluster(X, secs, ids, index, groups=media)
    assert ids2 == ids and report.new_ids == 0


def test_incremental_and_full_agree_that_one_file_holds_two_people():
    rng = np.random.default_rng(8)
    [center] = _voices(rng, 1)
    X = _samples(rng, center[None, :], np.zeros(2, int), noise=0.01)
    index = VoiceIndex(model="m")
    inc, _ = assign_new(index, X, np.array([10.0, 10.0]), groups=["f", "f"])
    full, _, _, _ = recluster(X, np.array([10.0, 10.0]), inc, index, groups=["f", "f"])
    assert len(set(inc)) == 2 and full == inc
