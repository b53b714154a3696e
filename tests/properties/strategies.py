"""Hypothesis strategies and frame builders shared by the property tests (no conftest).

Times are drawn on a grid of 1/64 s: every time, sum and difference is exact in float64, so
oracles can count grid ticks (integers) and rules with a threshold (``JOIN_PAUSE_S`` = 64
ticks, ``MAX_GAP_S`` = 96 ticks) are tested at the threshold itself without rounding noise.

What the generated inputs cover (the issue asks for each): one speaker only; pauses inside
one speaker's talk under, at and over ``JOIN_PAUSE_S``; overlapping and nested turns;
zero-length turns and words; unsorted turns and word rows; words outside every turn and past
the end of the media; words whose speaker is None or a label without turns; hundreds of
turns (:func:`many_turns`, drawn from a seed so that the example stays small to print).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from hypothesis import strategies as st

TICK = 1 / 64  # s
SPEAKERS = [f"SPEAKER_{i:02d}" for i in range(5)]
UNKNOWN_SPEAKER = "SPEAKER_42"  # a word's speaker that has no turn in the file
MEDIA_A = "a" * 64
MEDIA_B = "b" * 64
BATCH = "batch-props"

# a gap before the next turn, in ticks: overlap, touching, a pause under / at / over JOIN_PAUSE_S
GAPS = st.one_of(
    st.integers(-640, -1),
    st.just(0),
    st.integers(1, 63),
    st.just(64),
    st.integers(65, 640),
    st.integers(641, 6400),
)
LENGTHS = st.one_of(st.just(0), st.integers(1, 64), st.integers(65, 1280))

SENTENCE_TEXTS = [
    "Yes.",
    "Why?",
    'Really?"',
    "what？",
    "and so",
    "Is it? ",
    "no question here",
    "(really?)",
    "",
]


def secs(ticks: int) -> float:
    return ticks * TICK


@dataclass
class Timeline:
    """One media item: its duration and diarization turns (seconds, exact on the grid)."""

    duration_s: float
    turns: list[tuple[float, float, str]]
    speakers: list[str] = field(default_factory=list)
    seed: int | None = None  # made by many_turns(): printed instead of the hundreds of turns

    def __repr__(self) -> str:
        if self.seed is None:
            return f"Timeline(duration_s={self.duration_s!r}, turns={self.turns!r}, speakers={self.speakers!r})"
        return f"Timeline.from_seed(seed={self.seed}, n={len(self.turns)}, duration_s={self.duration_s!r})"

    def _repr_pretty_(self, p, cycle) -> None:  # how Hypothesis prints a falsifying example
        if self.seed is not None:
            p.text(repr(self))
            return
        p.text(f"Timeline(duration_s={self.duration_s!r}, speakers={self.speakers!r}, turns=")
        p.pretty(self.turns)
        p.text(")")

    @classmethod
    def from_seed(cls, seed: int, n: int, duration_s: float) -> Timeline:
        """Replays a falsifying example of :func:`many_turns`."""
        ticks, speakers = _seeded_turns(seed, n)
        return cls(duration_s, [(secs(s), secs(e), spk) for s, e, spk in ticks], speakers, seed)


def _turns_from(draw_speaker, draw_gap, draw_length, n: int, start: int) -> list[tuple[int, int, str]]:
    out, cursor = [], start
    for _ in range(n):
        spk = draw_speaker()
        s = max(0, cursor + draw_gap())
        e = s + draw_length()
        out.append((s, e, spk))
        cursor = max(cursor, e)
    return out


def _duration(draw, ticks: list[tuple[int, int, str]]) -> int:
    last = max((e for _, e, _ in ticks), default=0)
    mode = draw(st.sampled_from(["after", "exact", "before"] if last > 1 else ["after"]))
    if mode == "exact":
        return last
    if mode == "before":  # turns run past the end of the media
        return draw(st.integers(1, last - 1))
    return last + draw(st.integers(1, 1280))


@st.composite
def timelines(draw, min_turns: int = 0, max_turns: int = 30, n_speakers: int | None = None) -> Timeline:
    """Turns of 1-4 speakers (one speaker only is common), in any order."""
    n_spk = n_speakers or draw(st.integers(1, 4))
    speakers = SPEAKERS[:n_spk]
    n = draw(st.integers(min_turns, max_turns))
    ticks = _turns_from(
        lambda: draw(st.sampled_from(speakers)),
        lambda: draw(GAPS),
        lambda: draw(LENGTHS),
        n,
        draw(st.integers(0, 640)),
    )
    if draw(st.booleans()):
        ticks = draw(st.permutations(ticks))
    duration = _duration(draw, ticks)
    return Timeline(secs(duration), [(secs(s), secs(e), spk) for s, e, spk in ticks], speakers)


def _seeded_turns(seed: int, n: int) -> tuple[list[tuple[int, int, str]], list[str]]:
    rng = random.Random(seed)
    speakers = SPEAKERS[: rng.randint(1, 5)]
    gap_kinds = [(-640, -1), (0, 0), (1, 63), (64, 64), (65, 640), (641, 3200)]

    def gap() -> int:
        lo, hi = rng.choice(gap_kinds)
        return rng.randint(lo, hi)

    def length() -> int:
        return rng.choice([0, rng.randint(1, 64), rng.randint(65, 1280)])

    ticks = _turns_from(lambda: rng.choice(speakers), gap, length, n, rng.randint(0, 640))
    if rng.random() < 0.5:
        rng.shuffle(ticks)
    return ticks, speakers


@st.composite
def many_turns(draw, min_turns: int = 200, max_turns: int = 600) -> Timeline:
    """Hundreds of turns, made from a drawn seed (the falsifying example prints the seed)."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(min_turns, max_turns))
    ticks, speakers = _seeded_turns(seed, n)
    duration = _duration(draw, ticks)
    return Timeline(secs(duration), [(secs(s), secs(e), spk) for s, e, spk in ticks], speakers, seed)


def any_timeline(max_turns: int = 30) -> st.SearchStrategy[Timeline]:
    return st.one_of(timelines(max_turns=max_turns), many_turns())


# ---------------------------------------------------------------------------- words for stats
@dataclass
class StatsInput:
    timeline: Timeline
    words: list[tuple[str | None, float, float]]  # (speaker, start_s, end_s)
    sentences: list[tuple[str | None, str]]
    diarized: bool


@st.composite
def stats_inputs(draw, timeline: st.SearchStrategy[Timeline] | None = None) -> StatsInput:
    tl = draw(timeline if timeline is not None else any_timeline())
    labels = [*tl.speakers, None, UNKNOWN_SPEAKER] if tl.speakers else [None, UNKNOWN_SPEAKER]
    horizon = int(tl.duration_s / TICK) + 640  # words anywhere, also past the end
    word = st.tuples(st.sampled_from(labels), st.integers(0, horizon), st.one_of(st.just(0), st.integers(1, 96))).map(
        lambda w: (w[0], secs(w[1]), secs(w[1] + w[2]))
    )
    words = draw(st.lists(word, max_size=60))
    sentences = draw(st.lists(st.tuples(st.sampled_from(labels), st.sampled_from(SENTENCE_TEXTS)), max_size=20))
    diarized = draw(st.booleans()) if not tl.turns else draw(st.sampled_from([True, True, True, False]))
    return StatsInput(tl, words, sentences, diarized)


# ---------------------------------------------------------------------------- ASR output
WORDS = ["hello", "there.", "so", "well,", "yes?", "no!", "right…", "ok", "“quoted.”", "的", "x" * 50]


@dataclass
class Transcript:
    """ASR segments and words of one media item (dict rows, as the asset passes them)."""

    segments: list[dict]
    words: list[dict]


@st.composite
def transcripts(draw, max_segments: int = 10, max_words: int = 8) -> Transcript:
    """Sentences one after another, words inside them in time order (zero-length words,
    touching words, segments without words); the word rows may come unsorted."""
    segments, words = [], []
    cursor = draw(st.integers(0, 640))
    for seg_id in range(draw(st.integers(0, max_segments))):
        cursor += draw(st.integers(0, 200))
        start = cursor
        n = draw(st.integers(0, max_words))
        for k in range(n):
            cursor += draw(st.integers(0, 40))
            length = draw(st.one_of(st.just(0), st.integers(1, 64)))
            words.append(
                {
                    "segment_id": seg_id,
                    "word_index": k,
                    "word": draw(st.sampled_from(WORDS)),
                    "start_s": secs(cursor),
                    "end_s": secs(cursor + length),
                    "score": draw(st.one_of(st.none(), st.floats(0, 1))),
                    "timing_source": draw(st.sampled_from(["alignment", "cross_attention", "interpolated"])),
                }
            )
            cursor += length
        end = cursor + draw(st.integers(0, 40))
        text = " ".join(w["word"] for w in words if w["segment_id"] == seg_id) or "[music]"
        segments.append(
            {
                "segment_id": seg_id,
                "start_s": secs(start),
                "end_s": secs(end),
                "text": text,
                "language": draw(st.sampled_from(["en", "zh", None])),
                "avg_logprob": -0.25,
            }
        )
        cursor = end
    if draw(st.booleans()):
        words = draw(st.permutations(words))
    return Transcript(segments, words)


def asr_frames(media_id: str, tr: Transcript) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``asr_segments`` / ``asr_words`` frames as the ASR asset writes them."""
    from opentranscribe_pipeline.schemas import AsrSegments, AsrWords, conform, empty_frame

    seg = (
        conform(
            pl.DataFrame(
                [{**s, "batch_id": BATCH, "media_id": media_id} for s in tr.segments], infer_schema_length=None
            ),
            AsrSegments,
        )
        if tr.segments
        else empty_frame(AsrSegments)
    )
    words = (
        conform(
            pl.DataFrame([{**w, "batch_id": BATCH, "media_id": media_id} for w in tr.words], infer_schema_length=None),
            AsrWords,
        )
        if tr.words
        else empty_frame(AsrWords)
    )
    return seg, words


def turns_frame(media_id: str, tl: Timeline) -> pl.DataFrame:
    from opentranscribe_pipeline.schemas import SpeakerTurns, conform

    return conform(
        pl.DataFrame(
            [(BATCH, media_id, s, e, spk) for s, e, spk in tl.turns],
            schema={
                "batch_id": pl.Utf8,
                "media_id": pl.Utf8,
                "start_s": pl.Float64,
                "end_s": pl.Float64,
                "speaker": pl.Utf8,
            },
            orient="row",
        ),
        SpeakerTurns,
    )


# ---------------------------------------------------------------------------- chunking input
@dataclass
class ChunkInput:
    words: list[dict]  # rows with segment_id, word_index, word, start_s, end_s, speaker
    target_words: int


@st.composite
def chunk_inputs(draw, max_sentences: int = 14) -> ChunkInput:
    """Sentences of 1-3 speakers (None among them), with or without an end mark, cut into
    ASR segments anywhere; words are unique (``w<i>``) so a passage maps back to its words;
    some words are blank (skipped by the chunker)."""
    speakers = draw(st.lists(st.sampled_from([SPEAKERS[0], SPEAKERS[1], None]), min_size=1, max_size=3, unique=True))
    target = draw(st.integers(1, 12))
    rows, seg_id, k, t, i = [], 0, 0, 0, 0
    for _ in range(draw(st.integers(0, max_sentences))):
        spk = draw(st.sampled_from(speakers))
        n = draw(st.one_of(st.integers(1, 6), st.integers(7, 40)))
        mark = draw(st.sampled_from([".", "?", "!", "…", "", "", ".", '?"', ".)", "。"]))
        for j in range(n):
            blank = draw(st.integers(0, 19)) == 0
            text = " " if blank else f"w{i}" + (mark if j == n - 1 else "")
            rows.append(
                {
                    "segment_id": seg_id,
                    "word_index": k,
                    "word": text,
                    "start_s": secs(t),
                    "end_s": secs(t + 16),
                    "speaker": spk,
                }
            )
            i, k, t = i + 1, k + 1, t + 20
            if draw(st.integers(0, 9)) == 0:  # a segment boundary anywhere
                seg_id, k = seg_id + 1, 0
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    return ChunkInput(rows, target)


# ---------------------------------------------------------------------------- voices
@dataclass
class VoiceSet:
    """Speaker embeddings of some files: each local speaker is one of a few voices."""

    embeddings: np.ndarray  # (n, 256) float32, unit rows
    speech_s: np.ndarray
    groups: list[str]  # media id of each row
    speakers: list[str]  # local label of each row
    voices: list[int]


@st.composite
def voice_sets(draw, max_files: int = 8) -> VoiceSet:
    seed = draw(st.integers(0, 2**32 - 1))
    n_voices = draw(st.integers(1, 6))
    n_files = draw(st.integers(1, max_files))
    noise = draw(st.sampled_from([0.01, 0.05, 0.3]))
    rng = np.random.default_rng(seed)
    dim = 256
    base = rng.normal(size=dim)
    centers = base * draw(st.sampled_from([0.0, 1.2])) + rng.normal(size=(n_voices, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    rows, groups, speakers, voices, speech = [], [], [], [], []
    for f in range(n_files):
        media = f"{f:064x}"
        for s in range(draw(st.integers(1, 4))):
            v = draw(st.integers(0, n_voices - 1))  # two local speakers of one file may share a voice
            x = centers[v] + rng.normal(size=dim) * noise
            rows.append(x / np.linalg.norm(x))
            groups.append(media)
            speakers.append(f"SPEAKER_{s:02d}")
            voices.append(v)
            speech.append(draw(st.sampled_from([0.3, 1.5, 3.0, 10.0, 60.0, 300.0])))
    return VoiceSet(np.asarray(rows, np.float32), np.asarray(speech), groups, speakers, voices)


def voice_set_of(seed: int, files: list[list[tuple[int, float]]], noise: float = 0.05) -> VoiceSet:
    """A fixed :class:`VoiceSet` (for ``@example``): per file, (voice, seconds of speech) of each local speaker."""
    rng = np.random.default_rng(seed)
    n_voices = 1 + max(v for f in files for v, _ in f)
    centers = rng.normal(size=(n_voices, 256))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    rows, groups, speakers, voices, speech = [], [], [], [], []
    for f, members in enumerate(files):
        for s, (v, sec) in enumerate(members):
            x = centers[v] + rng.normal(size=256) * noise
            rows.append(x / np.linalg.norm(x))
            groups.append(f"{f:064x}")
            speakers.append(f"SPEAKER_{s:02d}")
            voices.append(v)
            speech.append(sec)
    return VoiceSet(np.asarray(rows, np.float32), np.asarray(speech), groups, speakers, voices)


def embedding_frame(vs: VoiceSet, model: str = "resemblyzer-ge2e") -> pl.DataFrame:
    from opentranscribe_pipeline.schemas import EMBEDDING_DIM, SpeakerEmbeddings, conform

    return conform(
        pl.DataFrame(
            {
                "batch_id": [BATCH] * len(vs.groups),
                "media_id": vs.groups,
                "speaker": vs.speakers,
                "embedding": pl.Series(vs.embeddings, dtype=pl.Array(pl.Float32, EMBEDDING_DIM)),
                "speech_s": vs.speech_s,
                "model": [model] * len(vs.groups),
            }
        ),
        SpeakerEmbeddings,
    )
