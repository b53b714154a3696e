"""Cue building and the four renderings, Dagster-free: rules held on hard input, names
that would break SRT/WebVTT escaped, empty input still a valid file."""

from __future__ import annotations

import random
import re

from opentranscribe_pipeline.deliver.subtitles import TimedWord, build_cues, spread_words, to_srt, to_vtt

from .helpers import check_srt, check_vtt, parse_srt, parse_vtt


def _speech(n_words: int, seed: int, wps: float = 3.0, speakers=("Ada Lovelace", "spk-000002")) -> list[TimedWord]:
    rng = random.Random(seed)
    vocab = [
        "the",
        "archive",
        "project",
        "recordings",
        "villages",
        "summers",
        "stories",
        "library",
        "budget",
        "migration",
        "extraordinarily",
        "telecommunications",
        "a",
        "I",
        "we",
        "it",
    ]
    out, t, who = [], 0.5, speakers[0]
    for _i in range(n_words):
        w = rng.choice(vocab)
        if rng.random() < 0.12:
            w += rng.choice(".?!")
        if rng.random() < 0.05:
            who = rng.choice(speakers)
        if rng.random() < 0.04:
            t += rng.uniform(1.0, 4.0)  # a pause
        length = rng.uniform(0.5, 1.5) / wps
        out.append(TimedWord(w, t, t + length, who))
        t += length + rng.uniform(0.0, 0.1)
    return out


def test_rules_hold_on_long_random_speech_at_several_speeds():
    for seed, wps in ((1, 2.0), (2, 3.5), (3, 6.0)):  # 6 words/s: faster than anyone talks
        words = _speech(1500, seed, wps)
        cues = build_cues(words)
        names = {"Ada Lovelace", "spk-000002"}
        srt_words = check_srt(to_srt(cues), names)
        vtt_words = check_vtt(to_vtt(cues), names)
        assert srt_words == vtt_words == [w.text for w in words]  # every word once, in order
        for cue in cues:  # one speaker per cue, sentence ends close cues
            assert all(not line.rstrip().endswith((".", "?", "!")) for line in cue.lines[:-1])


def test_cue_splits_at_speaker_change_and_sentence_end():
    words = [
        TimedWord("Hello", 0.0, 0.4, "A"),
        TimedWord("there.", 0.4, 0.8, "A"),
        TimedWord("How", 0.9, 1.1, "A"),
        TimedWord("are", 1.1, 1.3, "A"),
        TimedWord("you?", 1.3, 1.6, "B"),
    ]
    cues = build_cues(words)
    assert [(c.speaker, c.text) for c in cues] == [("A", "Hello there."), ("A", "How are"), ("B", "you?")]
    assert all(b.start_s >= a.end_s for a, b in zip(cues, cues[1:]))


def test_names_that_break_the_formats_are_escaped():
    evil = "Eve --> <b>Mallory</b>\nline two & co"
    words = [
        TimedWord("hello", 0.0, 0.5, evil),
        TimedWord("world.", 0.5, 1.0, evil),
        TimedWord("next", 3.0, 3.5, "Bob"),
    ]
    srt_text = to_srt(build_cues(words))
    vtt_text = to_vtt(build_cues(words))
    subs = parse_srt(srt_text)
    shown = "Eve → ‹b›Mallory‹/b› line two & co: "
    assert [s.content.split(": ", 1)[0] + ": " for s in subs] == [shown] * (len(subs) - 1) + ["Bob: "]
    assert " ".join(s.content.split(": ", 1)[1] for s in subs).split() == ["hello", "world.", "next"]
    cues = parse_vtt(vtt_text)
    assert len(cues) == len(subs)
    assert cues[0].raw_text.startswith("<v Eve --&gt; &lt;b&gt;Mallory&lt;/b&gt; line two &amp; co>hello")
    text_lines = [line for line in vtt_text.splitlines() if not re.match(r"^[\d:.]+ --> [\d:.]+$", line)]
    assert not any("-->" in line for line in text_lines)
    # text words with markup are escaped too
    srt2 = to_srt(build_cues([TimedWord("a<i>b-->c", 0, 1, None)]))
    assert parse_srt(srt2)[0].content == "a‹i›b→c"


def test_no_speech_gives_empty_but_valid_files():
    assert parse_srt(to_srt([])) == []
    assert to_vtt([]).startswith("WEBVTT")
    assert parse_vtt(to_vtt([])) == []


def test_words_longer_than_a_line_are_cut():
    cues = build_cues([TimedWord("x" * 100, 0.0, 2.0, None)])
    check_srt(to_srt(cues))
    assert "".join(line for c in cues for line in c.lines) == "x" * 100


def test_spread_words_keeps_the_segment_span():
    words = spread_words("Good morning, how are you today?", 10.0, 12.0, "A")
    assert words[0].start_s == 10.0 and abs(words[-1].end_s - 12.0) < 1e-9
    assert [w.text for w in words] == ["Good", "morning,", "how", "are", "you", "today?"]
