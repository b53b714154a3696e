"""The best path through a turn's speakers (``turns.best_path``, ``best_runs``,
``changes_within``, ``bin_windows``): what the diarizer's resegmentation (``Diarizer._resegment``,
issue 30) cuts a turn with, when two people follow each other with no pause under one label;
and the two groups a speaker's bins fall in (``two_voices``), with which ``Diarizer._split``
finds two people under one label for a whole file."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opentranscribe_pipeline.speech.turns import best_path, best_runs, bin_windows, changes_within, two_voices


def path_score(scores: np.ndarray, path, cost: float) -> float:
    return float(sum(scores[i, s] for i, s in enumerate(path)) - cost * np.count_nonzero(np.diff(path)))


cosines = st.floats(-1.0, 1.0, allow_nan=False, width=32)


def score_matrices(max_bins: int):
    """``(bins, speakers)`` cosines: up to ``max_bins`` bins and 3 speakers."""
    return st.tuples(st.integers(1, max_bins), st.integers(1, 3)).flatmap(
        lambda s: arrays(np.float64, s, elements=cosines)
    )


@settings(max_examples=120, deadline=None)
@given(
    scores=score_matrices(6),
    cost=st.floats(0.0, 2.0),
)
def test_the_best_path_scores_at_least_as_well_as_every_other_path(scores, cost):
    path = best_path(scores, cost)
    assert path.shape == (len(scores),) and path.min() >= 0 and path.max() < scores.shape[1]
    best = max(path_score(scores, p, cost) for p in itertools.product(range(scores.shape[1]), repeat=len(scores)))
    assert abs(path_score(scores, path, cost) - best) < 1e-9


def test_without_a_cost_the_path_follows_each_bins_best_speaker_and_with_a_high_one_it_never_changes():
    scores = np.array([[0.6, 0.1], [0.2, 0.5], [0.7, 0.0], [0.1, 0.4], [0.1, 0.45]])
    assert best_path(scores, 0.0).tolist() == [0, 1, 0, 1, 1]
    assert best_path(scores, 10.0).tolist() == [0, 0, 0, 0, 0]  # 1.7 against 1.45
    # one change pays when the other speaker's stretch gains more than it costs
    assert best_path(scores, 0.2).tolist() == [0, 0, 0, 1, 1]


@settings(max_examples=120, deadline=None)
@given(
    scores=st.tuples(st.integers(1, 40), st.integers(2, 4)).flatmap(lambda s: arrays(np.float64, s, elements=cosines)),
    own=st.integers(0, 3),
    cost=st.floats(0.0, 1.0),
    min_bins=st.integers(1, 5),
)
def test_changes_are_disjoint_runs_of_other_speakers_long_enough_inside_a_turn_its_speaker_keeps(
    scores, own, cost, min_bins
):
    own = own % scores.shape[1]
    changes = changes_within(scores, own, cost, min_bins)
    path = best_path(scores, cost)
    if not np.any(path == own):
        assert changes == []  # a whole turn is the reassignment's to move
        return
    last = 0
    for a, b, k in changes:
        assert last <= a < b <= len(scores) and b - a >= min_bins and k != own
        assert np.all(path[a:b] == k)  # a whole run of the best path
        assert (a == 0 or path[a - 1] != k) and (b == len(scores) or path[b] != k)
        last = b
    # every long enough run of another speaker is there
    runs = [(a, b) for a, b, _ in changes]
    for k, group in itertools.groupby(enumerate(path), key=lambda x: x[1]):
        idx = [i for i, _ in group]
        if k != own and len(idx) >= min_bins:
            assert (idx[0], idx[-1] + 1) in runs


@settings(max_examples=60, deadline=None)
@given(
    scores=st.tuples(st.integers(1, 30), st.integers(2, 3)).flatmap(
        lambda s: arrays(np.float64, s, elements=st.floats(0.0, 0.5))
    ),
    cost=st.floats(0.0, 1.0),
)
def test_a_turn_that_sounds_most_like_its_own_speaker_everywhere_is_left_whole(scores, cost):
    scores[:, 1] = scores.max(axis=1) + 0.01
    assert changes_within(scores, 1, cost, 1) == []


@settings(max_examples=60, deadline=None)
@given(first=st.integers(0, 200), n=st.integers(1, 40), half=st.integers(0, 4))
def test_each_bin_is_scored_on_itself_and_its_neighbours_inside_the_turn(first, n, half):
    spans = bin_windows(first, first + n, half, 0.25)
    assert len(spans) == n
    for i, (a, b) in enumerate(spans):
        centre = (first + i) * 0.25
        assert first * 0.25 <= a <= centre < centre + 0.25 <= b <= (first + n) * 0.25
        assert b - a <= (2 * half + 1) * 0.25 + 1e-9
        assert (a == first * 0.25 or centre - a == half * 0.25) and (
            b == (first + n) * 0.25 or b - centre == (half + 1) * 0.25
        )


@settings(max_examples=120, deadline=None)
@given(
    scores=score_matrices(12),
    cost=st.floats(0.0, 2.0),
)
def test_the_best_runs_are_the_best_path_in_order_and_cover_every_bin(scores, cost):
    runs = best_runs(scores, cost)
    path = best_path(scores, cost)
    assert runs[0][0] == 0 and runs[-1][1] == len(scores)
    assert all(a < b for a, b, _ in runs) and all(r[1] == s[0] and r[2] != s[2] for r, s in zip(runs, runs[1:]))
    assert [k for a, b, k in runs for _ in range(a, b)] == path.tolist()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    spread=st.floats(0.0, 0.3),
    seed=st.integers(0, 2**32 - 1),
)
def test_two_voices_finds_the_two_people_whose_bins_are_mixed(sizes, spread, seed):
    """Bins of two voices at a cosine of 0 (each bin near its own voice, in any order): the
    two centroids are the two voices, and every bin is nearest its own person's."""
    rng = np.random.default_rng(seed)
    people = _unit(rng.standard_normal((2, 16)))
    people[1] = _unit(people[1] - (people[1] @ people[0]) * people[0])
    who = rng.permutation(np.r_[np.zeros(sizes[0], int), np.ones(sizes[1], int)])
    bins = _unit(people[who] + spread * _unit(rng.standard_normal((len(who), 16))) / 2)
    centroids = two_voices(bins)
    assert centroids is not None and np.allclose(np.linalg.norm(centroids, axis=1), 1.0)
    nearest = np.argmax(bins @ centroids.T, axis=1)
    assert (nearest == who).all() or (nearest == 1 - who).all()
    assert float(centroids[nearest[0]] @ people[who[0]]) > 0.9  # the first bin's person's voice


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 12), seed=st.integers(0, 2**32 - 1))
def test_two_voices_of_one_bin_repeated_or_of_nothing_is_none(n, seed):
    one = _unit(np.random.default_rng(seed).standard_normal(8))
    assert two_voices(np.tile(one, (n, 1))) is None
    with_nan = np.vstack([np.full((3, 8), np.nan), one[None]])
    assert two_voices(with_nan) is None  # one finite row
