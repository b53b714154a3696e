"""WhisperX through the packaged models, offline: text, language, word timings."""

import jiwer
import numpy as np
import pytest

from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber, split_sentences
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.models import resolve_asr_model

from ..conftest import SAMPLE_DROP, TRUTH

NORMALIZE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def wer(ref: str, hyp: str) -> float:
    return jiwer.wer(ref, hyp, reference_transform=NORMALIZE, hypothesis_transform=NORMALIZE)


@pytest.fixture(scope="module")
def tiny():
    with Transcriber(resolve_asr_model("packaged:tiny.en"), AsrOptions(device="cpu", compute_type="int8")) as t:
        yield t


def test_transcribes_a_dialogue_with_word_timings(tiny):
    name = "meeting-02.flac"
    tx = tiny.transcribe(decode(str(SAMPLE_DROP / name)).samples)
    truth = TRUTH[f"{SAMPLE_DROP.name}/{name}"]
    hyp = " ".join(s.text for s in tx.segments)
    assert tx.language == "en"
    assert wer(truth["text"], hyp) < 0.2, hyp
    words = [w for s in tx.segments for w in s.words]
    assert len(words) == tx.n_words > 20
    assert wer(truth["text"], " ".join(w.word for w in words)) < 0.2  # the words are the text
    assert all(w.timing_source == "cross_attention" for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    for seg in tx.segments:
        assert seg.start_s <= seg.end_s
        for w in seg.words:
            assert seg.start_s - 1e-6 <= w.start_s <= w.end_s <= seg.end_s + 1e-6
    # each spoken turn's first word is found within 0.5 s of where the turn starts
    for turn in truth["turns"]:
        nearest = min(abs(s - turn["start_s"]) for s in starts)
        assert nearest < 0.5, (turn, starts)


def test_segments_are_sentences(tiny):
    name = "interview 01.wav"
    tx = tiny.transcribe(decode(str(SAMPLE_DROP / name)).samples)
    assert len(tx.segments) >= 5  # six turns; WhisperX without alignment would give one 20 s chunk
    for seg in tx.segments[:-1]:
        assert seg.text.rstrip("\"')").endswith((".", "?", "!"))
    # the sentences are the spoken ones, and each is exactly its timed words
    assert wer(TRUTH[f"{SAMPLE_DROP.name}/{name}"]["text"], " ".join(s.text for s in tx.segments)) < 0.1
    for seg in tx.segments:
        assert seg.words and seg.text == " ".join(w.word for w in seg.words)
        assert (seg.start_s, seg.end_s) == (seg.words[0].start_s, seg.words[-1].end_s)
    # Whisper's no-speech probability of the chunk each sentence came from: clear speech, low
    assert all(seg.no_speech_prob is not None and 0.0 <= seg.no_speech_prob < 0.6 for seg in tx.segments)


def test_decoding_is_whisperx_own_plus_the_no_speech_probability(tiny):
    """Transcriber decodes the VAD chunks itself (the steps of WhisperX's transcribe, so nothing
    of WhisperX's pipeline is swapped per call): the chunks, texts and log-probabilities are
    exactly what WhisperX's own ``transcribe`` gives, with a no-speech probability added."""
    samples = decode(str(SAMPLE_DROP / "interview 01.wav")).samples
    theirs = tiny._pipeline.transcribe(samples, batch_size=tiny.options.batch_size, language="en")["segments"]
    ours, _ = tiny._decode(samples, tiny._vad_chunks(tiny._vad_scores(samples)), "en", with_alignments=False)
    assert len(ours) == len(theirs) > 0
    for mine, whisperx in zip(ours, theirs):
        assert {k: mine[k] for k in ("start", "end", "text", "avg_logprob")} == whisperx
        assert 0.0 <= mine["no_speech_prob"] <= 1.0


def test_silence_gives_no_segments(tiny):
    tx = tiny.transcribe(np.zeros(16000 * 3, np.float32))
    assert tx.segments == () and tx.n_words == 0
    assert tx.language is None and tx.language_probability is None  # nothing said: no language guessed


def test_noise_only_does_not_crash(tiny):
    noise = np.random.default_rng(0).normal(0, 0.01, 16000 * 2).astype(np.float32)
    tx = tiny.transcribe(noise)
    assert all(w.start_s <= w.end_s for s in tx.segments for w in s.words)
    assert tx.n_words == 0  # the VAD hears no speech in it: nothing for Whisper to make up
    assert tx.language is None and tx.language_probability is None


def test_speech_under_noise_keeps_its_words(tiny):
    name = "interview 01.wav"
    speech = decode(str(SAMPLE_DROP / name)).samples
    rms = float(np.sqrt(np.mean(speech**2)))
    noise = np.random.default_rng(0).normal(0, rms / 10, speech.shape).astype(np.float32)  # 20 dB SNR
    tx = tiny.transcribe(speech + noise)
    words = [w for s in tx.segments for w in s.words]
    assert len(words) > 40  # 53 words are spoken
    assert wer(TRUTH[f"{SAMPLE_DROP.name}/{name}"]["text"], " ".join(w.word for w in words)) < 0.1
    assert all(w.start_s <= w.end_s for w in words)
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)


def test_split_sentences_keeps_unpunctuated_text_whole():
    seg = {"start": 1.0, "end": 3.0, "text": "no punctuation here", "avg_logprob": -0.1, "no_speech_prob": 0.2}
    assert len(split_sentences(seg, ())) == 1
    assert split_sentences(seg, ())[0].no_speech_prob == 0.2  # the chunk's, carried to its sentences


@pytest.mark.slow
def test_packaged_base_model_is_accurate_on_the_sample_archive():
    """The default production-size model: WER on all eight dialogues."""
    refs, hyps = [], []
    with Transcriber(resolve_asr_model("packaged:base"), AsrOptions(device="cpu", compute_type="int8")) as t:
        for key, truth in TRUTH.items():
            tx = t.transcribe(decode(str(SAMPLE_DROP.parent / key)).samples)
            refs.append(truth["text"])
            hyps.append(" ".join(s.text for s in tx.segments))
    total = wer(" ".join(refs), " ".join(hyps))
    assert total < 0.12, total
