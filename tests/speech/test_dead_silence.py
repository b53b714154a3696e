"""Issue 30, segmentation-3.0: turns are cut where the signal is digitally silent
(``islands.dead_silence`` and ``diarize._cut``), and nowhere else."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.speech.diarize import Turn, _cut
from opentranscribe_pipeline.speech.islands import dead_silence


def test_dead_silence_finds_digital_silence_and_not_a_quiet_room():
    rng = np.random.default_rng(0)
    speech = rng.normal(0, 0.1, 16_000).astype(np.float32)
    room = rng.normal(0, 10 ** (-90 / 20), 8_000).astype(np.float32)  # -90 dBFS: quieter than AMI's
    audio = np.concatenate(
        [speech, np.zeros(4_000, np.float32), speech, room, speech, np.zeros(800, np.float32), speech]
    )
    gaps = dead_silence(audio, -100.0, 0.1)
    assert len(gaps) == 1  # the 0.25 s of zeros; not the room, not the 0.05 s of zeros
    a, b = gaps[0]
    assert abs(a - 1.0) <= 0.02 and abs(b - 1.25) <= 0.02
    assert all(isinstance(x, float) for x in gaps[0])
    assert dead_silence(np.zeros(10, np.float32), -100.0, 0.1) == []


intervals = st.lists(st.tuples(st.floats(0, 60), st.floats(0.01, 10)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    turns=intervals,
    gaps=intervals,
    speakers=st.lists(st.sampled_from(["SPEAKER_00", "SPEAKER_01"]), min_size=12, max_size=12),
)
def test_cut_turns_keep_everything_outside_the_gaps_and_nothing_inside(turns, gaps, speakers):
    ts = [Turn(round(a, 3), round(a + d, 3), s) for (a, d), s in zip(turns, speakers)]
    # disjoint sorted gaps on dead_silence's 10 ms grid, as it returns them
    merged: list[tuple[float, float]] = []
    for a, b in sorted((round(a, 2), round(a + d, 2)) for a, d in gaps):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    out = _cut(ts, merged)
    for t in out:
        assert t.end_s > t.start_s
        assert any(o.speaker == t.speaker and o.start_s <= t.start_s and t.end_s <= o.end_s for o in ts)
        assert all(t.end_s <= a + 5e-4 or t.start_s >= b - 5e-4 for a, b in merged)  # times in ms
    assert out == sorted(out, key=lambda t: (t.start_s, t.end_s, t.speaker))
    # every stretch of a turn outside the gaps is kept, but pieces under 0.02 s
    grid = np.arange(0, 71, 0.01) + 0.005
    gap = np.any([(a <= grid) & (grid < b) for a, b in merged], axis=0) if merged else np.zeros_like(grid, bool)

    def inside(tt, who):
        return np.any([(t.start_s <= grid) & (grid < t.end_s) for t in tt if t.speaker == who] + [grid < 0], axis=0)

    for s in ("SPEAKER_00", "SPEAKER_01"):
        want = inside(ts, s) & ~gap
        got = inside(out, s)
        assert not np.any(got & ~want)
        assert np.sum(want & ~got) <= 3 * (len(merged) + 1) * len(ts)  # only the dropped slivers
