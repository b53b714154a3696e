"""Global speaker ids (``speakers/cluster.py``, rows by ``speakers/identity.py``) on
generated voices: ``speaker_clusters`` rows pass their schema; two local speakers of one file
never share an id; ids look like ``format_id`` makes them; a number below ``next_number`` is
never minted again; a speaker with too little speech neither joins a voice nor is joined."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.schemas import GLOBAL_ID, SpeakerClusters, empty_frame
from opentranscribe_pipeline.speakers.cluster import ReclusterReport, assign_new, recluster, stable_ids
from opentranscribe_pipeline.speakers.identity import assign_batches, recluster_all
from opentranscribe_pipeline.speakers.params import ClusterParams
from opentranscribe_pipeline.speakers.voices import VoiceIndex, format_id, id_number

from .strategies import VoiceSet, embedding_frame, voice_set_of, voice_sets

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARAMS = ClusterParams()
MODEL = "resemblyzer-ge2e"


def _well_formed(ids: list[str]) -> None:
    for gid in ids:
        assert re.match(GLOBAL_ID, gid) and format_id(id_number(gid)) == gid, gid


def _one_per_file(ids: list[str], groups: list[str]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for gid, g in zip(ids, groups):
        seen[(g, gid)] = seen.get((g, gid), 0) + 1
    assert max(seen.values(), default=1) == 1, "two local speakers of one file under one id"


def _split(vs: VoiceSet, k: int) -> tuple[VoiceSet, VoiceSet]:
    """The first ``k`` rows (an earlier batch) and the rest."""

    def part(sl):
        return VoiceSet(vs.embeddings[sl], vs.speech_s[sl], vs.groups[sl], vs.speakers[sl], vs.voices[sl])

    return part(slice(0, k)), part(slice(k, None))


@SETTINGS
@given(voice_sets(), st.data())
def test_assign_new_gives_fresh_numbers_and_one_id_per_speaker_of_a_file(vs, data):
    first, later = _split(vs, data.draw(st.integers(0, len(vs.groups))))
    index = VoiceIndex(model=MODEL)
    ids0, _ = assign_new(index, first.embeddings, first.speech_s, PARAMS, groups=first.groups)
    before_ids, before_next = list(index.ids), index.next_number
    ids, sims = assign_new(index, later.embeddings, later.speech_s, PARAMS, groups=later.groups)
    for got, part in ((ids0, first), (ids, later)):
        assert len(got) == len(part.groups)
        _well_formed(got)
        _one_per_file(got, part.groups)
    assert index.ids[: len(before_ids)] == before_ids, "an existing voice renamed"
    minted = [g for g in index.ids if g not in before_ids]
    assert sorted(id_number(g) for g in minted) == list(range(before_next, index.next_number))
    assert set(ids) <= set(index.ids) and len(set(index.ids)) == len(index.ids)
    assert np.all(np.abs(sims) <= 1.0001)
    short = later.speech_s < PARAMS.min_speech_s
    for i in np.flatnonzero(short):  # too little speech: its own voice, joined by nobody
        assert ids[i] not in before_ids and ids.count(ids[i]) == 1


@SETTINGS
@given(voice_sets(), st.data())
def test_recluster_keeps_numbers_fresh_and_one_id_per_speaker_of_a_file(vs, data):
    first, _ = _split(vs, data.draw(st.integers(0, len(vs.groups))))
    index = VoiceIndex(model=MODEL)
    ids0, _ = assign_new(index, first.embeddings, first.speech_s, PARAMS, groups=first.groups)
    previous = ids0 + [None] * (len(vs.groups) - len(ids0))
    known, before_next = set(index.ids) | set(ids0), index.next_number
    ids, sims, new_index, report = recluster(vs.embeddings, vs.speech_s, previous, index, PARAMS, groups=vs.groups)
    assert len(ids) == len(vs.groups)
    _well_formed(ids)
    _one_per_file(ids, vs.groups)
    assert set(ids) == set(new_index.ids) and len(set(new_index.ids)) == len(new_index.ids)
    assert new_index.next_number >= before_next
    for gid in set(ids) - known:
        assert before_next <= id_number(gid) < new_index.next_number, f"{gid} reuses a number below next_number"
    assert report.kept_ids + report.new_ids == len(new_index.ids)
    for old, into in report.merges:
        assert old not in new_index.ids and into in new_index.ids and new_index.resolve(old) == into
    assert np.all(np.abs(sims) <= 1.0001)


@SETTINGS
@example(voice_set_of(0, [[(0, 0.3)], [(0, 1.5), (0, 1.5)]], noise=0.01))  # one voice, two speakers in file 1
@given(voice_sets())
def test_recluster_never_joins_a_speaker_with_too_little_speech(vs):
    """ClusterParams.min_speech_s: "a speaker with less never joins a voice (nor is joined): its own id"."""
    ids, _, _, _ = recluster(
        vs.embeddings, vs.speech_s, [None] * len(vs.groups), VoiceIndex(model=MODEL), PARAMS, groups=vs.groups
    )
    for i in np.flatnonzero(vs.speech_s < PARAMS.min_speech_s):
        assert ids.count(ids[i]) == 1, f"row {i} ({vs.speech_s[i]} s of speech) shares {ids[i]}"


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0.5, 60), st.one_of(st.none(), st.integers(1, 6))),
        min_size=1,
        max_size=30,
    ),
    st.integers(7, 20),
)
def test_stable_ids_name_each_cluster_once_and_mint_only_above_next_number(rows, next_number):
    """Each previous id goes to at most one cluster; the others are recorded as merged; a
    cluster without one gets a number from ``next_number`` up."""
    labels = np.unique([r[0] for r in rows], return_inverse=True)[1].ravel()  # clusters 0..K-1, all used
    w = np.array([r[1] for r in rows])
    previous = [format_id(r[2]) if r[2] is not None else None for r in rows]
    index = VoiceIndex(model=MODEL, next_number=next_number)
    report = ReclusterReport()
    names = stable_ids(labels, w, previous, index, report)
    k = int(labels.max()) + 1
    assert len(names) == k == len(set(names))
    _well_formed(names)
    for lab, name in enumerate(names):
        members_prev = {p for p, lb in zip(previous, labels) if lb == lab and p}
        assert name in members_prev or next_number <= id_number(name) < index.next_number
    assert index.next_number - next_number == report.new_ids and report.kept_ids + report.new_ids == k
    for p in {p for p in previous if p}:
        assert p in names or index.merged.get(p) in names, f"{p} vanished"


@SETTINGS
@given(voice_sets(max_files=6), st.data())
def test_cluster_rows_pass_the_schema(vs, data):
    emb = embedding_frame(vs, MODEL)
    k = data.draw(st.integers(0, emb.height))
    index = VoiceIndex(model=MODEL)
    first = assign_batches(emb.head(k), empty_frame(SpeakerClusters), index, PARAMS)
    SpeakerClusters.validate(first.rows, lazy=True)
    full = recluster_all(emb, first.rows, first.index, PARAMS)
    SpeakerClusters.validate(full.rows, lazy=True)
    _one_per_file(full.rows["global_speaker_id"].to_list(), full.rows["media_id"].to_list())
    assert full.rows.height == emb.height
    later = assign_batches(emb, full.rows, full.index, PARAMS)
    SpeakerClusters.validate(later.rows, lazy=True)
    assert later.newly_assigned == 0
