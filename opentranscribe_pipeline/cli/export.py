"""``opentranscribe export``: subtitle and transcript files for any selection, named after
the source files (the ``exports`` asset writes the same documents per batch, by media id)."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import EXIT_OK, EXIT_USAGE, add_verbose, open_warehouse


def add_export_command(sub) -> None:
    e = sub.add_parser("export", help="write SRT/WebVTT/TXT/JSON files for a drop, a batch or some media items")
    e.add_argument("--warehouse", required=True, help="local path or s3://bucket/prefix")
    e.add_argument("--out", required=True, help="local folder for the files (created)")
    e.add_argument("--format", default="srt,vtt,txt,json", help="comma-separated: srt,vtt,txt,json (default all)")
    which = e.add_mutually_exclusive_group()
    which.add_argument("--drop", help="every batch of this drop")
    which.add_argument("--batch", help="one batch id")
    which.add_argument("--media", nargs="+", help="media ids, id prefixes (4+ hex digits) or file names")
    e.add_argument("--language", choices=["original", "en"], default="original", help="original (default) or en")
    e.add_argument(
        "--min-quality",
        dest="min_quality",
        type=float,
        metavar="OVRL",
        help="leave out segments whose DNSMOS ovrl is under this (1-5); unscored segments are kept",
    )
    add_verbose(e)
    e.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..deliver.documents import FORMATS, documents, gather
    from ..deliver.selection import exported_media, output_names, select

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        print(f"error: unknown format(s) {bad or args.format!r}; choose from {','.join(FORMATS)}", file=sys.stderr)
        return EXIT_USAGE
    if args.min_quality is not None:
        from ..query.core import QueryError
        from ..query.quality import check_floor

        try:
            check_floor(args.min_quality)
        except QueryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    wh = open_warehouse(args.warehouse)
    try:
        selection = select(wh, args.drop, args.batch, args.media)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    jobs = []
    for batch_id, media_ids in selection.items():
        src = gather(wh, batch_id, media_ids, quality=args.min_quality is not None)
        for media_id in exported_media(src):
            uri = src.media.filter(src.media["media_id"] == media_id)["source_uri"][0]
            jobs.append((src, media_id, uri))
    if not jobs:
        print("error: the selection matches no transcribed media item", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = output_names([(m, uri) for _, m, uri in jobs])
    written, no_english, left_out, unscored = 0, [], 0, 0
    for src, media_id, uri in jobs:
        if args.language == "en":
            state = (
                src.translations.filter(src.translations["media_id"] == media_id) if src.translations.height else None
            )
            if state is None or not state.height or state["status"][0] != "ok":
                why = state["error"][0] if state is not None and state.height else "not translated yet"
                no_english.append((uri, why))
                continue
        doc = documents(src, media_id, args.language, min_quality=args.min_quality)
        left_out, unscored = left_out + doc.left_out, unscored + doc.unscored
        suffix = ".en" if args.language == "en" else ""
        for fmt in formats:
            (out / f"{names[media_id]}{suffix}.{fmt}").write_text(doc.texts[fmt], encoding="utf-8")
            written += 1
        if not doc.named:
            print(f"  {uri}: exported without names (diarization failed or not clustered)")
    print(f"wrote {written} file(s) for {len(jobs) - len(no_english)} media item(s) to {out}")
    if args.min_quality is not None:
        kept = f"; {unscored} unscored segment(s) kept" if unscored else ""
        print(f"  --min-quality {args.min_quality:g}: {left_out} segment(s) under the floor left out{kept}")
    for uri, why in no_english:
        print(f"  no English version of {uri}: {why}", file=sys.stderr)
    if len(no_english) == len(jobs):
        return EXIT_USAGE
    return EXIT_OK
