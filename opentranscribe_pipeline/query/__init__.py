"""Answers to the common questions about an archive, reading only the files a lookup names.

Dagster-free; for notebooks, scripts and ``opentranscribe query``. Each function takes a
:class:`~opentranscribe_pipeline.storage.Warehouse` (local path or ``s3://``) and returns a
polars ``LazyFrame`` (``.collect()`` it) except :func:`counts`, which is small and eager::

    from opentranscribe_pipeline.query import counts, talk_time, transcript, words, words_per_language
    from opentranscribe_pipeline.storage import S3Options, Warehouse

    wh = Warehouse("warehouse")  # or Warehouse("s3://bucket/wh", S3Options.from_env())
    transcript(wh, "interview 01.wav").collect()      # or a media id, or its first 4+ hex digits
    words(wh, "Ada Lovelace", contains="library").collect()  # or speaker="spk-000003"
    talk_time(wh, top=10).collect()
    words_per_language(wh).collect()
    counts(wh)                                        # rows per table from Parquet footers

How each finds its files:

- :func:`transcript`: a full media id is one GET of the media index entry
  (``_index/media/<id[:2]>/<id>.json``) naming the batch; a prefix or file name reads only the
  ``media_id``/``source_uri`` columns of the ``media`` tables. Then one ``segments`` file.
- :func:`words`: the name comes from ``speaker_profiles``; the batches and media holding the
  voice come from the speaker state's index (:func:`speaker_locations`); only those batches'
  ``words`` and ``media`` files are read.
- :func:`talk_time`: ``speaker_turns`` (4 columns of each batch) joined with the compact
  ``speaker_clusters``; ``source="embeddings"`` uses ``speaker_embeddings.speech_s`` instead
  (cheaper, but speech *alone*: overlapped speech is left out).
- :func:`words_per_language`: sums ``transcripts.n_words`` (one row per media item), never
  counts the ``words`` table.
- :func:`counts`: Parquet footers only, local or S3.

Bad input raises :class:`NoMatch` or :class:`Ambiguous`, whose message lists the candidates
(also in ``.candidates``, a DataFrame). :func:`table` is the whole of any table, lazily, with
the S3 options already set, for questions not listed here.
"""

from .core import (
    Ambiguous,
    NoMatch,
    QueryError,
    counts,
    find_media,
    profiles,
    resolve_speaker,
    scan,
    speaker_locations,
    storage_options,
    table,
    table_files,
    talk_time,
    transcript,
    words,
    words_per_language,
)

__all__ = [
    "Ambiguous",
    "NoMatch",
    "QueryError",
    "counts",
    "find_media",
    "profiles",
    "resolve_speaker",
    "scan",
    "speaker_locations",
    "storage_options",
    "table",
    "table_files",
    "talk_time",
    "transcript",
    "words",
    "words_per_language",
]
