"""``opentranscribe show``: row counts per table and the first transcript lines, from
:mod:`..query` (Parquet footers for the counts: nothing is loaded, at any size)."""

from __future__ import annotations

import sys

from .common import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, add_verbose, open_warehouse

SHOW_FILES = 10


def cmd_show(args) -> int:
    """Row counts per table (from Parquet footers: nothing is loaded, at any size) and the
    first transcript lines of the first few files: what analysts will query."""
    from ..query import counts, transcript
    from ..storage import StorageError

    unreadable: list[tuple[str, str]] = []
    try:
        warehouse = open_warehouse(args.warehouse)
        sizes = counts(warehouse, unreadable=unreadable)
        first = _first_media(warehouse, SHOW_FILES)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"tables in {warehouse.root_uri} (polars: pl.scan_parquet('{warehouse.root_uri}/<table>/**/*.parquet'))")
    for table, _, rows, _, bad in sizes.iter_rows():
        note = f"  ({bad} part(s) unreadable)" if bad else ""
        print(f"  {table:20s} {rows:8d} rows{note}")
    for table, path in unreadable:
        batch = path.rsplit("/batch_id=", 1)[-1].split("/", 1)[0] if "/batch_id=" in path else None
        where = f"table {table!r} batch {batch!r}" if batch else f"table {table!r}"
        print(f"warning: {where}: cannot read {warehouse.uri(path)}", file=sys.stderr)
    status = EXIT_RUN_FAILED if unreadable else EXIT_OK
    try:  # the yield per drop (issue 32): hours in, of speech, at or above the quality floor
        from ..query.summary import archive_summary, yield_lines

        print()
        for line in yield_lines(archive_summary(warehouse)):
            print(line)
    except Exception as exc:  # a table the summary cannot read never hides the rest
        print(f"yield: cannot be read ({exc})", file=sys.stderr)
        status = EXIT_RUN_FAILED
    for media_id, uri in first:
        try:
            lines = transcript(warehouse, media_id).head(args.lines).collect()
        except Exception as exc:  # one unreadable transcript never hides the others
            print(f"\n{uri}\n  (cannot show: {exc})")
            status = EXIT_RUN_FAILED
            continue
        print(f"\n{uri}")
        for start, end, speaker, gid, text in lines.select(
            "start_s", "end_s", "speaker", "global_speaker_id", "text"
        ).iter_rows():
            who = f"{speaker or '?'}{'/' + gid if gid else ''}"
            print(f"  [{start:7.2f} - {end:7.2f}] {who:22s} {text}")
    if first:
        print(f"\n(first {len(first)} file(s); `opentranscribe query transcript FILE` shows any one)")
    return status


def _first_media(warehouse, limit: int) -> list[tuple[str, str]]:
    """(media_id, source_uri) of the first ``limit`` transcribed files, from the first
    batches' ``media`` tables only."""
    import polars as pl

    from ..storage import CorruptTable

    found: list[tuple[str, str]] = []
    for batch_id in warehouse.batch_ids("segments"):
        try:
            media = warehouse.read_table("media", batch_id)
        except CorruptTable:
            continue
        if media is None:
            continue
        ok = media.filter(pl.col("status") == "ok").sort("source_uri").select("media_id", "source_uri")
        found.extend(ok.head(limit - len(found)).iter_rows())
        if len(found) >= limit:
            break
    return found


def add_show_command(sub) -> None:
    s = sub.add_parser("show", help="print table sizes and the first transcript lines of a warehouse")
    s.add_argument("--warehouse", required=True)
    s.add_argument("--lines", type=int, default=3, help="segments to print per file")
    add_verbose(s)
    s.set_defaults(func=cmd_show)
