"""``opentranscribe search`` and ``reindex``: the search index of :mod:`..search.service`,
through the backend :class:`~..resources.search.SearchResource` opens (LanceDB under the
warehouse, or OpenSearch)."""

from __future__ import annotations

import sys

from .. import settings
from .common import EXIT_OK, EXIT_USAGE, add_verbose, open_warehouse


def search_backend(warehouse):
    from ..resources.search import SearchResource

    return SearchResource().open(warehouse)


def _emphasis(highlighted: str, tty: bool) -> str:
    """``<em>`` marks of the highlighter as bold on a terminal, ``*word*`` otherwise."""
    on, off = ("\033[1m", "\033[0m") if tty else ("*", "*")
    return highlighted.replace("<em>", on).replace("</em>", off)


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"


def cmd_search(args) -> int:
    """Full-text, semantic or hybrid search over the indexed passages."""
    import json

    from ..search.backends import SearchUnavailable, VectorSearchUnsupported
    from ..search.service import UnknownSpeakerFilter, query_embedder, search
    from ..speakers.names import shown_name

    if not args.query.strip():
        print("error: the query is empty", file=sys.stderr)
        return EXIT_USAGE
    warehouse = open_warehouse(args.warehouse)
    model = args.model or settings.text_embedding_model()
    if args.within == "summaries":
        return _search_summaries(args, warehouse, model)
    try:
        backend = search_backend(warehouse)
        embed = query_embedder(model) if args.mode != "text" else None
        outcome = search(
            warehouse,
            backend,
            args.query,
            model=model,
            embed=embed,
            mode=args.mode,
            speaker=args.speaker,
            language=args.language,
            drop=args.drop,
            limit=args.limit,
            min_quality=args.min_quality,
        )
    except (SearchUnavailable, VectorSearchUnsupported, UnknownSpeakerFilter, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in outcome.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if outcome.indexed == 0:
        print(
            f"nothing is indexed in {warehouse.root_uri} yet ({backend.describe()['backend']}, model {model}): "
            f"run `opentranscribe process SOURCE --warehouse {warehouse.root_uri}`"
        )
        return EXIT_OK
    if args.min_quality is not None and not args.json:
        kept = f"; {outcome.unscored} unscored result(s) kept" if outcome.unscored else ""
        print(f"(--min-quality {args.min_quality:g}: {outcome.left_out} passage(s) under the floor left out{kept})")
    if args.json:
        for r in outcome.results:
            print(json.dumps(r.as_json(), ensure_ascii=False))
        return EXIT_OK
    if not outcome.results:
        print(f"no results for {args.query!r} ({args.mode}, {outcome.indexed} passages searched)")
        return EXIT_OK
    tty = sys.stdout.isatty()
    print(f"{len(outcome.results)} result(s) for {args.query!r} ({args.mode}, {outcome.indexed} passages searched)")
    for r in outcome.results:  # the name as one line of text, never layout
        print(
            f"\n{r.source_uri}  [{_clock(r.start_s)} - {_clock(r.end_s)}]  {shown_name(r.who)}  (score {r.score:.4f})"
        )
        print(f"  {_emphasis(r.highlighted, tty)}")
    return EXIT_OK


def _search_summaries(args, warehouse, model: str) -> int:
    """``search --in summaries``: what recordings are about (summaries, key points, topics)."""
    import json

    from ..query.core import QueryError
    from ..search.summaries import search_summaries, texts_embedder

    if args.speaker or args.min_quality is not None or args.mode == "semantic":
        print("error: --in summaries takes --mode text or hybrid, --drop, --language, --limit", file=sys.stderr)
        return EXIT_USAGE
    try:
        hits, searched = search_summaries(
            warehouse,
            args.query,
            mode=args.mode,
            embed=texts_embedder(model) if args.mode == "hybrid" else None,
            drop=args.drop,
            language=args.language,
            limit=args.limit,
        )
    except (QueryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        for h in hits:
            print(json.dumps(h.as_json(), ensure_ascii=False))
        return EXIT_OK
    if not searched:
        print(f"no summaries in {warehouse.root_uri} yet: the summarize step runs in `opentranscribe process`")
        return EXIT_OK
    print(f"{len(hits)} result(s) for {args.query!r} ({args.mode}, {searched} summaries searched)")
    tty = sys.stdout.isatty()
    for h in hits:
        print(f"\n{h.source_uri}  {h.media_id[:12]}  [{h.language}]  (score {h.score:.4f})")
        print(f"  {_emphasis(h.highlighted, tty)}")
        if h.topics:
            print(f"  topics: {', '.join(h.topics)}")
    return EXIT_OK


def cmd_reindex(args) -> int:
    """``reindex``: the whole search index again from the ``chunks`` tables."""
    from ..search.backends import SearchUnavailable
    from ..search.service import rebuild_index, refresh_speakers

    warehouse = open_warehouse(args.warehouse)
    model = args.model or settings.text_embedding_model()
    try:
        backend = search_backend(warehouse)
        report = rebuild_index(warehouse, backend, model)
        speakers = refresh_speakers(warehouse, backend)
    except (SearchUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    where = backend.describe()
    target = f"new index {report.index} behind alias {where.get('alias')}" if report.index else where.get("index")
    print(
        f"indexed {report.documents} passages of {report.batches} batch(es) ({model}) into {where['backend']}: "
        f"{target}; {speakers} voices in the speakers index; {report.elapsed_s:.1f} s"
    )
    return EXIT_OK


def add_search_commands(sub) -> None:
    q = sub.add_parser("search", help="search the transcripts: full text, by meaning, or both (hybrid)")
    q.add_argument("query", help="words or a phrase (any language; operators are not interpreted)")
    q.add_argument("--warehouse", required=True)
    q.add_argument(
        "--mode", choices=["hybrid", "text", "semantic"], default="hybrid", help="default: hybrid (BM25 + vectors, RRF)"
    )
    q.add_argument(
        "--speaker", help="only passages of this voice: a global id (spk-000003) or a name given with `speakers name`"
    )
    q.add_argument(
        "--in",
        dest="within",
        choices=["passages", "summaries"],
        default="passages",
        help="passages of the transcripts (default) or the summaries (summary, key points, topics)",
    )
    q.add_argument("--language", help="only passages in this language (ISO code, e.g. en)")
    q.add_argument("--drop", help="only passages of this drop")
    q.add_argument("--limit", type=int, default=10, help="results to show (default 10)")
    q.add_argument("--json", action="store_true", help="one JSON object per result and line")
    q.add_argument(
        "--min-quality",
        dest="min_quality",
        type=float,
        metavar="OVRL",
        help="leave out passages whose speech-weighted DNSMOS ovrl is under this (1-5); unscored passages are kept",
    )
    q.add_argument(
        "--model",
        help="text-embedding model of the index (default: OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL or the packaged MiniLM)",
    )
    add_verbose(q)
    q.set_defaults(func=cmd_search)
    r = sub.add_parser(
        "reindex",
        help="rebuild the search index from the chunks tables (OpenSearch: a new index, alias swapped at the end)",
    )
    r.add_argument("--warehouse", required=True)
    r.add_argument("--model", help="text-embedding model of the chunks to index (default: the configured one)")
    add_verbose(r)
    r.set_defaults(func=cmd_reindex)
