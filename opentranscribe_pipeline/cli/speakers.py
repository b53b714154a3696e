"""``opentranscribe speakers list|name|recluster|split|merge|calibrate|similar``: the
archive-wide voices of :mod:`..speakers`, their names and the human corrections.

A storage error is not caught here: ``main()`` prints it as one line and exits 2.
"""

from __future__ import annotations

import logging
import sys

from .. import settings
from .common import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, add_verbose, open_instance, open_warehouse
from .search import search_backend
from .users import record_cli_edit  # the audit log, when the review app's accounts exist


def cmd_speakers(args) -> int:
    """List global speakers, name one, or re-cluster the archive."""
    warehouse = open_warehouse(args.warehouse)
    action = {
        "similar": cmd_speakers_similar,
        "recluster": cmd_speakers_recluster,
        "split": cmd_speakers_split,
        "calibrate": cmd_speakers_calibrate,
        "merge": cmd_speakers_merge,
        "list": cmd_speakers_list,
        "name": cmd_speakers_name,
    }[args.action]
    return action(args, warehouse)


def cmd_speakers_recluster(args, warehouse) -> int:
    """``speakers recluster``: the whole archive clustered again (``recluster_speakers``)."""
    from .runs import run_clustering

    warehouse.check_reachable()
    instance = open_instance()
    result = run_clustering(instance, warehouse.root_uri, args, "full")
    print("re-clustered" if result.success else f"error: run {result.run_id} failed")
    return EXIT_OK if result.success else EXIT_RUN_FAILED


def cmd_speakers_list(args, warehouse) -> int:
    from ..speakers import state
    from ..speakers.cluster import ClusterParams
    from ..speakers.names import shown_name

    active, retired = state.active_speakers(warehouse)
    print(f"{active.height} global speakers ({retired} merged or retired ids)")
    for row in active.iter_rows(named=True):
        hint = ""
        if row.get("suggested_name"):
            hint = f"  maybe {shown_name(row['suggested_name'])!r} ({row['confidence']}, similarity {row['similarity']:.2f})"
        sure = ""
        if row.get("min_confidence") is not None:
            sure = f"  confidence min {row['min_confidence']:.2f} mean {row['mean_confidence']:.2f}"
        close = ClusterParams.for_model(row.get("model")).accept_threshold  # GE2E 0.80, CAM++ 0.45
        if row.get("closest_similarity") is not None and row["closest_similarity"] >= close:
            sure += f"  close to {row['closest_id']} ({row['closest_similarity']:.2f})"
        print(
            f"  {row['global_speaker_id']}  {row['n_members']:5d} files  {row['speech_s']:8.1f} s  {shown_name(row['name']) or '-'}{hint}{sure}"
        )
    return EXIT_OK


def cmd_speakers_name(args, warehouse) -> int:
    """``speakers name ID NAME``: a person's name on a global speaker (its merge target's)."""
    from ..speakers import edits
    from ..speakers.names import InvalidName, validate_name

    if not args.id or not args.name or not args.name.strip():
        print("error: usage: opentranscribe speakers name ID NAME", file=sys.stderr)
        return EXIT_USAGE
    try:  # one line saying why, before anything is read or written
        args.name = validate_name(args.name)
    except InvalidName as exc:
        print(f"error: name refused: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = edits.name_speaker(warehouse, args.id, args.name)
    except edits.UnknownSpeaker as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    record_profiles_changed(warehouse)
    record_cli_edit("speaker.name", target, {"name": args.name, "asked": args.id})
    if target != args.id:
        print(f"{args.id} was merged into {target}; naming {target}")
    print(f"{target} is now {args.name!r}")
    refresh_speakers_index(warehouse)
    return EXIT_OK


def cmd_speakers_split(args, warehouse) -> int:
    """``speakers split ID --media M ... | --by-file``: one global speaker that is two people."""
    from ..speakers import edits

    if not args.id:
        print("error: usage: opentranscribe speakers split ID (--media MEDIA_ID ... | --by-file)", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = edits.split_speaker(warehouse, args.id, media_ids=args.media or None, by_file=args.by_file)
    except (edits.UnknownSpeaker, edits.EditRefused) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{result.global_speaker_id} keeps {len(result.kept)} member(s) and its name")
    for gid, members in result.parts.items():
        files = sorted({m for m, _ in members})
        print(f"  {gid}: {len(members)} member(s) in {len(files)} file(s): {', '.join(f[:12] for f in files[:5])}")
    print(f"committed speaker state generation {result.generation}; these ids are kept apart from now on")
    detail = {"by_file": args.by_file, "media_ids": args.media or [], "new_ids": sorted(result.parts)}
    record_cli_edit("speaker.split", args.id, {**detail, "generation": result.generation})
    record_profiles_changed(warehouse)  # names and members moved: exports are stale
    refresh_speakers_index(warehouse)
    return EXIT_OK


def cmd_speakers_merge(args, warehouse) -> int:
    """``speakers merge ID --into OTHER``: one person under two ids (a missed join)."""
    from ..speakers import edits

    if not args.id or not args.into:
        print("error: usage: opentranscribe speakers merge ID --into OTHER_ID", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = edits.merge_speakers(warehouse, args.id, args.into)
    except (edits.UnknownSpeaker, edits.EditRefused) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.id} is now part of {target}")
    record_cli_edit("speaker.merge", args.id, {"into": target})
    record_profiles_changed(warehouse)  # names and members moved: exports are stale
    refresh_speakers_index(warehouse)
    return EXIT_OK


def cmd_speakers_calibrate(args, warehouse) -> int:
    """``speakers calibrate``: similarity distributions of this warehouse's own speakers."""
    from ..speakers.calibration import calibrate_warehouse, format_report
    from ..speech.diarize import embedding_model_name

    model = embedding_model_name(args.diarization or settings.diarization_pipeline())
    print(format_report(calibrate_warehouse(warehouse, model)))
    return EXIT_OK


def cmd_speakers_similar(args, warehouse) -> int:
    """The voices nearest to one global speaker, by k-NN in the speakers index."""
    from ..search.backends import SearchUnavailable, VectorSearchUnsupported
    from ..search.service import UnknownSpeakerFilter, similar_speakers
    from ..speakers.names import shown_name

    if not args.id:
        print("error: usage: opentranscribe speakers similar ID|NAME", file=sys.stderr)
        return EXIT_USAGE
    try:
        found = similar_speakers(warehouse, search_backend(warehouse), args.id, limit=args.limit)
    except (SearchUnavailable, VectorSearchUnsupported, UnknownSpeakerFilter, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    if not found:
        print(f"no other voices of the same embedding model as {args.id}")
    for row in found:
        talk = f"{row['speech_s']:8.1f} s" if row.get("speech_s") is not None else ""
        print(
            f"  {row['global_speaker_id']}  similarity {row['similarity']:.3f}  {row['n_files'] or 0:5d} files  {talk}  {shown_name(row['name']) or '-'}"
        )
    return EXIT_OK


def record_profiles_changed(warehouse) -> None:
    """Tell the Dagster instance that ``speaker_profiles`` changed (a runless materialization
    with a data version over the names), so the UI marks ``exports`` stale."""
    import hashlib

    import dagster as dg

    from ..query.core import profiles

    try:
        names = profiles(warehouse).sort("global_speaker_id").rows()
        with open_instance() as instance:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "speaker_profiles",
                    metadata={"named_speakers": len(names), "warehouse": warehouse.root_uri},
                    tags={"dagster/data_version": hashlib.sha256(repr(names).encode()).hexdigest()[:16]},
                )
            )
    except Exception as exc:  # the name is committed; only the UI's staleness hint is lost
        logging.getLogger(__name__).warning("could not record the rename in the Dagster instance: %s", exc)


def refresh_speakers_index(warehouse) -> None:
    """After naming, a split or a merge: the speakers index shows the new state, and passages
    whose speakers changed global id are re-indexed (a warning when it cannot)."""
    from ..search.backends import SearchUnavailable
    from ..search.service import refresh_speakers, resync_speaker_ids

    try:
        backend = search_backend(warehouse)
        redone = resync_speaker_ids(warehouse, backend)
        if redone:
            print(f"re-indexed the passages of {len(redone)} batch(es) for the new speaker ids")
        refresh_speakers(warehouse, backend)
    except (SearchUnavailable, ValueError) as exc:
        print(f"warning: the speakers index was not refreshed: {exc}", file=sys.stderr)


def add_speakers_command(sub) -> None:
    sp = sub.add_parser("speakers", help="list global speakers, name one, or re-cluster the archive")
    sp.add_argument("action", choices=["list", "name", "recluster", "split", "merge", "calibrate", "similar"])
    sp.add_argument("id", nargs="?", help="global speaker id (spk-000001) for `name`")
    sp.add_argument("name", nargs="?", help="the person's name for `name`")
    sp.add_argument("--warehouse", required=True)
    sp.add_argument("--diarization", help="diarization pipeline whose embeddings to cluster (default: packaged)")
    sp.add_argument("--media", action="append", help="`split`: a file (media id or 8+ digit prefix) to move out")
    sp.add_argument("--by-file", dest="by_file", action="store_true", help="`split`: every file its own voice")
    sp.add_argument("--into", help="`merge`: the global id that absorbs ID (one person under two ids)")
    sp.add_argument("--limit", type=int, default=5, help="voices to show for `similar` (default 5)")
    add_verbose(sp)
    sp.set_defaults(func=cmd_speakers)
