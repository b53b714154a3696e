"""DuckDB over a warehouse: a view per table and macros for the common lookups.

``setup_sql(wh)`` is the whole setup (S3 settings through httpfs first when the warehouse is
on S3); ``write_database(wh, path)`` runs it into a small ``.duckdb`` file that holds only
views and macros (the data stays in the Parquet files). The macros are conveniences that
scan the tables they name; the Python functions of :mod:`opentranscribe_pipeline.query`
find the few files first and are the fast route on a large archive.

Macros (table macros: ``SELECT * FROM transcript('interview 01.wav')``):

- ``transcript(m)``: segments of the media items whose id starts with ``m`` or whose source
  path is or ends with ``m``, with global speaker id and name;
- ``speaker_words(who)``: every word of the global speaker named ``who`` (a name from
  ``speaker_profiles``, case-insensitive, or a global id);
- ``talk_time()``: seconds of speech per global speaker (``speaker_turns`` x clusters);
- ``words_per_language()``: from ``transcripts.n_words``.
"""

from __future__ import annotations

import polars as pl

from ..schemas import TABLES, polars_schema
from ..speakers.state import ARCHIVE_TABLES, CLUSTERS
from ..storage import Warehouse

MACROS = ("transcript", "speaker_words", "talk_time", "words_per_language")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duck_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Array):
        return f"{_duck_type(dtype.inner)}[{dtype.size}]"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    return {
        pl.Utf8: "VARCHAR",
        pl.Int64: "BIGINT",
        pl.Int32: "INTEGER",
        pl.Float64: "DOUBLE",
        pl.Float32: "FLOAT",
        pl.Boolean: "BOOLEAN",
    }.get(dtype.base_type(), "VARCHAR")


def _empty_view(name: str) -> str:
    cols = ", ".join(f"NULL::{_duck_type(t)} AS {c}" for c, t in polars_schema(TABLES[name]).items())
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} WHERE false;"


def root_uri(wh: Warehouse) -> str:
    return wh.root if wh.is_local else wh.uri(wh.root)


def s3_settings_sql(wh: Warehouse, redact: bool = False) -> str:
    """httpfs and a secret for the warehouse's S3 endpoint ('' for a local warehouse)."""
    if wh.is_local:
        return ""
    s3 = wh.s3
    parts = ["TYPE s3", f"REGION {_q(s3.region or 'us-east-1')}"]
    if s3.access_key_id:
        parts += [
            f"KEY_ID {_q(s3.access_key_id)}",
            f"SECRET {_q('<AWS_SECRET_ACCESS_KEY>' if redact else s3.secret_access_key or '')}",
        ]
    if s3.endpoint_url:
        scheme, _, host = s3.endpoint_url.partition("://")
        parts += [
            f"ENDPOINT {_q(host.rstrip('/'))}",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if scheme == 'https' else 'false'}",
        ]
    return "INSTALL httpfs;\nLOAD httpfs;\nCREATE OR REPLACE SECRET opentranscribe (" + ", ".join(parts) + ");"


def view_sql(wh: Warehouse) -> list[str]:
    """One view per table of the contract (an empty typed view for a table not written yet)."""
    root = root_uri(wh)
    out = []
    for name in TABLES:
        if name == CLUSTERS:
            present = any(n.endswith(".parquet") for n in wh.list_names(wh.table_dir(name)))
            glob = f"{root}/{name}/*.parquet"
        elif name in ARCHIVE_TABLES:
            present = wh.exists(wh.table_file(name))
            glob = f"{root}/{name}/part-0.parquet"
        else:
            present = bool(wh.batch_ids(name))
            # file_issues is written one part per stage (``<stage>.parquet``), the others as part-0
            part = "*" if name == "file_issues" else "part-0"
            glob = f"{root}/{name}/batch_id=*/{part}.parquet"
        if present:
            out.append(
                f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({_q(glob)}, "
                "hive_partitioning = false, union_by_name = true);"
            )
        else:
            out.append(_empty_view(name))
    return out


MACRO_SQL = """
CREATE OR REPLACE MACRO transcript(m) AS TABLE
  WITH item AS (
    SELECT DISTINCT media_id, batch_id, source_uri FROM media
    WHERE status = 'ok' AND (starts_with(media_id, lower(m)) OR source_uri = m OR ends_with(source_uri, '/' || m)))
  SELECT s.media_id, item.source_uri, s.segment_id, s.start_s, s.end_s, s.speaker, c.global_speaker_id, p.name,
         s.language, s.text
  FROM segments s JOIN item ON s.media_id = item.media_id AND s.batch_id = item.batch_id
  LEFT JOIN speaker_clusters c ON c.media_id = s.media_id AND c.speaker = s.speaker
  LEFT JOIN speaker_profiles p ON p.global_speaker_id = c.global_speaker_id
  ORDER BY s.media_id, s.segment_id;

CREATE OR REPLACE MACRO speaker_words(who) AS TABLE
  WITH ids AS (
    SELECT global_speaker_id FROM speaker_profiles WHERE lower(trim(name)) = lower(trim(who))
    UNION SELECT who WHERE regexp_matches(who, '^spk-[0-9]{6,}$')),
  places AS (SELECT batch_id, media_id, speaker, global_speaker_id FROM speaker_clusters
             WHERE global_speaker_id IN (SELECT global_speaker_id FROM ids))
  SELECT pl.global_speaker_id, p.name, m.source_uri, w.media_id, w.batch_id, w.segment_id, w.word_index, w.word,
         w.start_s, w.end_s, w.speaker
  FROM words w JOIN places pl ON w.batch_id = pl.batch_id AND w.media_id = pl.media_id AND w.speaker = pl.speaker
  LEFT JOIN (SELECT DISTINCT media_id, source_uri FROM media WHERE status = 'ok') m ON m.media_id = w.media_id
  LEFT JOIN speaker_profiles p ON p.global_speaker_id = pl.global_speaker_id
  ORDER BY m.source_uri, w.start_s, w.segment_id, w.word_index;

CREATE OR REPLACE MACRO talk_time() AS TABLE
  SELECT c.global_speaker_id, any_value(p.name) AS name, sum(t.end_s - t.start_s) AS talk_s,
         sum(t.end_s - t.start_s) / 3600 AS talk_h, count(DISTINCT t.media_id) AS n_media,
         count(DISTINCT c.batch_id) AS n_batches
  FROM speaker_turns t JOIN speaker_clusters c ON c.media_id = t.media_id AND c.speaker = t.speaker
  LEFT JOIN speaker_profiles p ON p.global_speaker_id = c.global_speaker_id
  GROUP BY c.global_speaker_id ORDER BY talk_s DESC, c.global_speaker_id;

CREATE OR REPLACE MACRO words_per_language() AS TABLE
  SELECT language, count(DISTINCT media_id) AS n_media, sum(n_words)::BIGINT AS n_words, sum(audio_s) / 3600 AS audio_h
  FROM transcripts WHERE status = 'ok' GROUP BY language ORDER BY n_words DESC, language;
"""


def setup_sql(wh: Warehouse, redact: bool = False) -> str:
    """Everything a DuckDB session needs for this warehouse, as one script."""
    parts = [f"-- opentranscribe warehouse {wh.root_uri}"]
    if not wh.is_local:
        parts.append(s3_settings_sql(wh, redact))
    parts += view_sql(wh)
    parts.append(MACRO_SQL.strip())
    return "\n".join(parts) + "\n"


def connect(wh: Warehouse, path: str = ":memory:"):
    """A DuckDB connection with the views and macros (and S3 settings) in place."""
    import duckdb

    con = duckdb.connect(path)
    con.execute(setup_sql(wh))
    return con


def write_database(wh: Warehouse, path: str) -> str:
    """A ``.duckdb`` file holding the views and macros (no data; S3 secrets are not stored:
    run :func:`s3_settings_sql` in each session)."""
    con = connect(wh, path)
    con.close()
    return path
