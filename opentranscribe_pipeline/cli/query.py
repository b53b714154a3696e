"""``opentranscribe query transcript|words|talk-time|languages|quality|topics`` and ``opentranscribe duckdb``:
the lookups of :mod:`..query`, printed as a table, CSV, JSON or Parquet.

:func:`add_query_commands` adds them to the main parser's subparsers; each handler takes the
parsed ``args`` (with ``args.warehouse``) and returns an exit status: 0, or 2 for bad input
(an unknown or ambiguous name, a media id prefix matching several items), the message and
the candidates on stderr.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile

import polars as pl

from .common import EXIT_OK, EXIT_USAGE, add_verbose, open_warehouse

FORMATS = ("table", "csv", "json", "parquet")


_BREAKS = r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]"
_INVISIBLE = r"[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"


def one_line_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells as one line each for the terminal table (names and transcripts are data,
    never layout): line breaks and tabs become spaces, other control characters, bidi
    marks, embeddings, overrides and isolates become U+FFFD. CSV quotes and JSON escapes
    them itself; Parquet keeps the data as it is."""
    text = [c for c, t in df.schema.items() if t == pl.Utf8]
    if not text:
        return df
    return df.with_columns(pl.col(c).str.replace_all(_BREAKS, " ").str.replace_all(_INVISIBLE, "\ufffd") for c in text)


def write_frame(df: pl.DataFrame, fmt: str, out: str | None, stream=None) -> int:
    """Print ``df`` as a table, CSV or JSON (records) to ``out`` or stdout; Parquet needs
    ``--out FILE`` (or goes to a binary stdout that is not a terminal)."""
    stream = stream or sys.stdout
    if fmt == "parquet":
        if out:
            df.write_parquet(out)
            return EXIT_OK
        binary = getattr(stream, "buffer", None)
        if binary is None or stream.isatty():
            print("error: --format parquet needs --out FILE (or a pipe)", file=sys.stderr)
            return EXIT_USAGE
        buf = io.BytesIO()
        df.write_parquet(buf)
        binary.write(buf.getvalue())
        binary.flush()
        return EXIT_OK
    if fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        text = df.write_json() + "\n"
    else:
        with pl.Config(
            tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=120, tbl_width_chars=200, tbl_hide_dataframe_shape=True
        ):
            text = str(one_line_cells(df)) + f"\n({df.height} rows)\n"
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        stream.write(text)
    return EXIT_OK


def _run(args, make) -> int:
    from ..query import core

    try:
        df = make(open_warehouse(args.warehouse))
        if isinstance(df, pl.LazyFrame):
            df = df.collect()
    except core.QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return write_frame(df, args.format, args.out)


def cmd_transcript(args) -> int:
    """One media item's segments with speakers (by media id, id prefix or file name)."""
    from ..query import core

    return _run(args, lambda wh: core.transcript(wh, args.media))


def cmd_words(args) -> int:
    """Every word one global speaker said (by name or global id), optionally filtered."""
    from ..query import core

    return _run(args, lambda wh: core.words(wh, args.speaker, contains=args.contains))


def cmd_talk_time(args) -> int:
    """Seconds of speech per global speaker, most first."""
    from ..query import core

    return _run(args, lambda wh: core.talk_time(wh, top=args.top, source=args.source))


def cmd_languages(args) -> int:
    """Media items, words and hours per detected language."""
    from ..query import core

    return _run(args, core.words_per_language)


def cmd_quality(args) -> int:
    """Files and segments that need attention: under the quality floor (or ``--below``), or
    flagged (``--flag``); one drop's batches only with ``--drop``. As a table: the files,
    then the segments, narrowed to fit a terminal (``--level`` for one of them); CSV, JSON
    and Parquet hold every column of one of them (``--level``, default segments)."""
    from ..query import core
    from ..query.quality import needs_attention

    try:
        att = needs_attention(open_warehouse(args.warehouse), drop=args.drop, below=args.below, flag=args.flag)
    except core.QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not att.batches:
        print("no quality scores yet: the score_quality step has not run on any batch here", file=sys.stderr)
    if args.format == "table" and args.out:
        print("error: query quality writes --out with --format csv, json or parquet", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "table":  # narrowed to fit a terminal; csv, json and parquet hold every column
        files, segments = att.for_terminal()
        if args.level != "segments":
            print(f"files that need attention: {files.height}")
            write_frame(files, "table", None)
        if args.level != "files":
            print(f"{'' if args.level else chr(10)}segments that need attention: {segments.height}")
            write_frame(segments, "table", None)
        return EXIT_OK
    return write_frame(att.files if args.level == "files" else att.segments, args.format, args.out)


def cmd_topics(args) -> int:
    """Topics across the archive (or one drop), most files first."""
    from ..query.topics import topic_ranking

    language = None if args.language == "any" else args.language
    return _run(args, lambda wh: topic_ranking(wh, drop=args.drop, language=language, top=args.top))


def cmd_duckdb(args) -> int:
    """A DuckDB session over the warehouse: the ``duckdb`` shell if installed, else a small
    ``.duckdb`` file with the views and macros (and the SQL printed with ``--print-sql``)."""
    from ..query import duck

    wh = open_warehouse(args.warehouse)
    sql = duck.setup_sql(wh)
    if args.print_sql:
        print(sql)
        return EXIT_OK
    binary = shutil.which("duckdb")
    if binary and not args.file:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(sql)
        return subprocess.call([binary, "-init", f.name])
    path = args.file or "opentranscribe.duckdb"
    duck.write_database(wh, path)
    print(f"wrote {path}: a view per table and the macros {', '.join(duck.MACROS)}")
    print(f"open it: .venv/bin/python -c \"import duckdb; c = duckdb.connect('{path}'); c.sql('...').show()\"")
    if not wh.is_local:
        print("S3: the credentials are not stored in the file; run first in each session:")
        print(duck.s3_settings_sql(wh, redact=True))
    return EXIT_OK


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warehouse", required=True, help="local path or s3://bucket/prefix (S3 settings from AWS_*)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", help="write to this file (needed for --format parquet on a terminal)")
    add_verbose(p)


def add_query_commands(subparsers) -> None:
    """Add ``query`` (transcript, words, talk-time, languages, quality, topics) and ``duckdb``."""
    q = subparsers.add_parser("query", help="answer the common questions, reading only the files needed")
    qs = q.add_subparsers(dest="query_command", required=True)
    t = qs.add_parser("transcript", help="one media item's transcript with speakers")
    t.add_argument("media", help="media id, its first 4+ hex digits, or a file name / path")
    _output_options(t)
    t.set_defaults(func=cmd_transcript)
    w = qs.add_parser("words", help="every word one global speaker said")
    w.add_argument("--speaker", required=True, help="a name from speaker_profiles or a global id (spk-000042)")
    w.add_argument("--contains", help="keep words containing this text (case-insensitive)")
    _output_options(w)
    w.set_defaults(func=cmd_words)
    tt = qs.add_parser("talk-time", help="seconds of speech per global speaker")
    tt.add_argument("--top", type=int, help="only the N who speak most")
    tt.add_argument(
        "--source",
        choices=("turns", "embeddings"),
        default="turns",
        help="speaker_turns (default, overlaps count for each speaker) or speaker_embeddings.speech_s (cheaper, speech alone)",
    )
    _output_options(tt)
    tt.set_defaults(func=cmd_talk_time)
    lg = qs.add_parser("languages", help="media items, words and hours per language (from transcripts.n_words)")
    _output_options(lg)
    lg.set_defaults(func=cmd_languages)
    qq = qs.add_parser("quality", help="files and segments that need attention: under the quality floor, or flagged")
    qq.add_argument("--drop", help="only this drop (reads only its batches)")
    qq.add_argument(
        "--below",
        type=float,
        metavar="OVRL",
        help="segments whose DNSMOS ovrl is under this (1-5; default: each file's floor)",
    )
    qq.add_argument(
        "--flag",
        help="segments with this flag (repetition, low_confidence, speech_mismatch, noisy, clipped) or files with "
        "this media-level flag (e.g. telephone_band)",
    )
    qq.add_argument(
        "--level",
        choices=("files", "segments"),
        help="print only the files or only the segments (default: both as a table; segments for csv/json/parquet)",
    )
    _output_options(qq)
    qq.set_defaults(func=cmd_quality)
    tp = qs.add_parser("topics", help="topics across the archive (from the summarize step), most files first")
    tp.add_argument("--drop", help="only this drop (reads only its batches)")
    tp.add_argument(
        "--language", default="en", help="topics in this language (default en: every file has English ones); any: all"
    )
    tp.add_argument("--top", type=int, help="only the N first")
    _output_options(tp)
    tp.set_defaults(func=cmd_topics)
    d = subparsers.add_parser("duckdb", help="a DuckDB shell (or .duckdb file) with a view per table and lookup macros")
    d.add_argument("--warehouse", required=True)
    d.add_argument("--file", help="write this .duckdb file instead of opening the shell")
    d.add_argument("--print-sql", dest="print_sql", action="store_true", help="print the setup SQL and exit")
    add_verbose(d)
    d.set_defaults(func=cmd_duckdb)
