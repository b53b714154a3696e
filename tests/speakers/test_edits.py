"""A person's edits as ``VoiceIndex`` operations, the one resolver of merge chains, and a
refused merge raising its own exception (``speakers/edits.py``, ``speakers/voices.py``)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.speakers.edits import (
    EditRefused,
    MergeRefused,
    SplitRefused,
    merge_speakers,
    name_speaker,
    split_speaker,
)
from opentranscribe_pipeline.speakers.manifest import Change
from opentranscribe_pipeline.speakers.state import CENTROIDS, SpeakerState, read_clusters
from opentranscribe_pipeline.speakers.voices import VoiceIndex, normalize, resolve_merged
from opentranscribe_pipeline.storage import Warehouse

from .test_state import assign, check_identity, write_batch


def test_resolve_merged_follows_chains_and_stops_on_a_cycle():
    assert resolve_merged({"a": "b", "b": "c"}, "a") == "c"
    assert resolve_merged({"a": "b"}, "z") == "z"
    # a hand-edited table can hold a cycle: the resolver returns instead of looping
    assert resolve_merged({"a": "b", "b": "a"}, "a") in {"a", "b"}
    assert resolve_merged({"a": "a"}, "a") == "a"
    index = VoiceIndex(model="m", merged={"x": "y", "y": "x"})
    assert index.resolve("x") in {"x", "y"}


def _index(rng: np.random.Generator) -> VoiceIndex:
    index = VoiceIndex(model="m", next_number=5)
    for gid in ("spk-000001", "spk-000002", "spk-000003"):
        index.add(gid, rng.standard_normal(8), weight=10.0, members=2)
    return index


def test_split_mints_ids_moves_weight_and_keeps_the_parts_apart():
    rng = np.random.default_rng(3)
    index = _index(rng)
    X = normalize(rng.standard_normal((5, 8)))
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    part = np.array([0, 1, 0, 2, 1])
    names = index.split("spk-000002", X, w, part, n_parts=3)
    assert names == ["spk-000002", "spk-000005", "spk-000006"] and index.next_number == 7
    for k, gid in enumerate(names):
        pos = index.ids.index(gid)
        mask = part == k
        expected = normalize((X[mask] * w[mask, None]).sum(axis=0))
        np.testing.assert_allclose(index.centroids[pos], expected, atol=1e-6)
        assert index.weights[pos] == w[mask].sum() and index.members[pos] == mask.sum()
    assert all(index.kept_apart(a, b) for a in names for b in names if a != b)
    assert not index.kept_apart("spk-000001", "spk-000002")


def test_merge_joins_the_weighted_centroids_and_hands_on_what_was_kept_apart():
    rng = np.random.default_rng(4)
    index = _index(rng)
    index.keep_apart(["spk-000001", "spk-000003"])
    index.weights[1] = 30.0
    a, b = index.centroids[0].copy(), index.centroids[1].copy()
    index.merge("spk-000001", "spk-000002")
    assert index.ids == ["spk-000002", "spk-000003"]
    np.testing.assert_allclose(index.centroids[0], normalize(a * 10.0 + b * 30.0), atol=1e-6)
    assert index.weights[0] == 40.0 and index.members[0] == 4
    assert index.resolve("spk-000001") == "spk-000002"
    assert index.kept_apart("spk-000002", "spk-000003") and not index.kept_apart("spk-000001", "spk-000003")


def test_a_refused_merge_raises_merge_refused_and_commits_nothing(tmp_path):
    wh = Warehouse(str(tmp_path / "wh"))
    write_batch(wh, "a", [0, 1, 2], seed=1)
    write_batch(wh, "b", [0, 1], seed=2)
    assign(wh, "a", "b")
    ids = check_identity(wh)
    state = SpeakerState(wh)
    number = state.current().number
    with pytest.raises(MergeRefused, match="already one voice"):
        merge_speakers(wh, ids[0], ids[0])
    # a split: the two parts may not be merged again
    result = split_speaker(
        wh, ids[1], media_ids=[read_clusters(wh).filter(pl.col("global_speaker_id") == ids[1])["media_id"][0]]
    )
    new_id = next(iter(result.parts))
    number = state.current().number
    with pytest.raises(MergeRefused, match="kept apart") as refused:
        merge_speakers(wh, new_id, ids[1])
    assert isinstance(refused.value, EditRefused) and not isinstance(refused.value, SplitRefused)
    assert state.current().number == number  # nothing committed
    # a merge that is allowed; merging the retired id again is refused
    assert merge_speakers(wh, ids[2], ids[0]) == ids[0]
    with pytest.raises(MergeRefused, match="nothing to merge"):
        merge_speakers(wh, ids[2], ids[0])
    with pytest.raises(SplitRefused):
        split_speaker(wh, ids[2], by_file=True)  # merged: split its heir instead


def test_naming_through_a_merge_cycle_in_a_hand_edited_table_ends(tmp_path):
    """A ``speaker_centroids`` table with ``a -> b -> a`` (only a person writing the table by
    hand makes one): naming ``a`` names an id of the cycle instead of looping for ever."""
    wh = Warehouse(str(tmp_path / "wh"))
    write_batch(wh, "a", [0, 1, 2], seed=1)
    assign(wh, "a")
    ids = check_identity(wh)
    state = SpeakerState(wh)
    gen = state.current()
    a, b = ids[0], ids[1]
    centroids = state.read(gen, CENTROIDS).with_columns(
        status=pl.when(pl.col("global_speaker_id").is_in([a, b])).then(pl.lit("merged")).otherwise("status"),
        merged_into=pl.when(pl.col("global_speaker_id") == a)
        .then(pl.lit(b))
        .when(pl.col("global_speaker_id") == b)
        .then(pl.lit(a))
        .otherwise("merged_into"),
    )
    state.commit(gen, Change(centroids=centroids))
    assert name_speaker(wh, a, "Ada") in {a, b}
