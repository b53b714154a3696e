"""``opentranscribe process``: register a drop, run the asset graph per batch, print a summary.

Each batch runs as a real Dagster run in the ``DAGSTER_HOME`` instance (``dagster dev``
shows them afterwards). The exit status is non-zero only when the pipeline itself broke
(a run failed: 1; storage unusable: 2), never because some input files were bad: those are
reported in the summary and recorded in the ``media`` / ``transcripts`` tables. A storage
error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import time

from .. import settings
from .common import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, add_verbose, dagster_home, s3_options
from .report import print_held_back, print_summary
from .runs import (
    batch_run_config,
    failed_steps,
    recover_interrupted_runs,
    run_batches,
    run_clustering,
    run_publish,
    storage_failed,
    summary_run_config,
)


def cmd_process(args) -> int:
    """``process``, stoppable: Ctrl-C or SIGTERM cancels the runs it executes (CANCELED in the
    instance, their step processes stopped) or handed to the queue, closes the code server and
    the forkserver, and exits 128 + the signal's number (130, 143)."""
    from .. import runner

    with runner.stop_on_signals():
        try:
            return _process(args)
        except runner.Interrupted as exc:
            canceled = exc.canceled + runner.cancel_submitted()
            name = signal_name(exc.signum)
            print(
                f"interrupted ({name}): "
                + (f"run(s) {', '.join(canceled)} canceled" if canceled else "no run was executing")
                + "; nothing of this command keeps running",
                file=sys.stderr,
                flush=True,
            )
            return 128 + exc.signum


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _process(args) -> int:
    from .. import executors, runner
    from ..definitions import SUMMARY_JOB
    from ..drops.batches import BatchLimits, DropConflict, register_drop
    from ..partitions import BATCHES
    from ..storage import StorageError, Warehouse
    from .common import open_instance

    started = time.perf_counter()
    s3 = s3_options()
    try:
        warehouse = Warehouse(args.warehouse, s3)
        warehouse.check_reachable()
        reg = register_drop(
            warehouse, args.source, s3=s3, limits=BatchLimits(args.max_files, args.max_hours), drop=args.drop
        )
    except (StorageError, DropConflict) as exc:  # DropConflict: the name is another source's
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError:
        print(f"error: source {args.source} does not exist", file=sys.stderr)
        return EXIT_USAGE

    print(
        f"drop {reg.drop!r}: {reg.new_files} new file(s) in {len(reg.new_batch_ids)} new batch(es), "
        f"{reg.known_files} already registered, {len(reg.ignored)} non-media file(s) ignored"
        + (f", {len(reg.skipped)} link(s) or special file(s) not read" if reg.skipped else "")
    )
    for rel, why in reg.skipped:
        print(f"  skipped {rel}: {why}")
    if not reg.batch_ids:
        print("nothing to process")
        return EXIT_OK

    home = dagster_home()
    failed_runs = []
    with contextlib.ExitStack() as stack:
        # the batch run's forkserver imports the model stack (about 10 s on 2 cores) while
        # this process loads the code location and creates the run; the clustering and
        # publishing runs then fork their steps from it too
        stack.enter_context(runner.shared_forkserver(None if args.submit else executors.local_batch_preload()))
        instance = open_instance()
        for run_id in recover_interrupted_runs(instance):
            print(f"recovered interrupted run {run_id}: marked failed, its gpu slot released")
        instance.add_dynamic_partitions(BATCHES, reg.batch_ids)
        runner.ensure_pools(instance)  # before any run claims a slot (see runner.ensure_pools)
        tags = {"opentranscribe/drop": reg.drop, "opentranscribe/source": args.source}
        try:
            loc = stack.enter_context(runner.code_location(instance, verbose=args.verbose))
        except Exception as exc:  # a definitions import error, a bad workspace.yaml
            print(f"error: cannot load the code location: {exc}", file=sys.stderr)
            return EXIT_USAGE
        run_config = batch_run_config(args, warehouse.root_uri)
        outcomes = run_batches(loc, instance, reg.batch_ids, run_config, tags, submit=args.submit)
        for batch_id, result in outcomes.items():
            if not result.success:
                failed_runs.append((batch_id, result.run_id, failed_steps(result)))
        # one file (or one step) failing never holds back the rest: speaker ids, exports and
        # search go on for every batch whose storage is usable, from whatever its run finished
        done = [b for b in reg.batch_ids if not any(f == b and storage_failed(steps) for f, _, steps in failed_runs)]
        if done:
            print("assigning global speaker ids ...", flush=True)
            result = run_clustering(instance, warehouse.root_uri, args, "incremental", done, loc=loc)
            if not result.success:
                failed_runs.append(("speaker clustering", result.run_id, failed_steps(result)))
            else:
                failed_runs += run_publish(loc, instance, warehouse.root_uri, args, done)
        if not any(storage_failed(steps) for _, _, steps in failed_runs):
            # the dashboard (archive_summary) after every process, failed runs included
            result = runner.run_job(
                loc,
                instance,
                SUMMARY_JOB,
                run_config=summary_run_config(args, warehouse.root_uri),
                submit_to_queue=args.submit,
            )
            if not result.success:
                failed_runs.append(("archive summary", result.run_id, failed_steps(result)))
    summary_error = print_summary(warehouse, reg.batch_ids, time.perf_counter() - started)
    held_back = print_held_back(warehouse, reg.batch_ids) if summary_error is None else 0
    print(f"runs recorded in {home} (dagster dev shows them)")
    for batch_id, run_id, steps in failed_runs:
        print(f"error: run {run_id} for batch {batch_id} failed (`dagster dev` shows its log)", file=sys.stderr)
        for line in steps:
            print(f"  {line}", file=sys.stderr)
    if summary_error is not None or any(storage_failed(steps) for _, _, steps in failed_runs):
        return EXIT_USAGE
    return EXIT_RUN_FAILED if failed_runs or held_back else EXIT_OK


def add_process_command(sub) -> None:
    p = sub.add_parser("process", help="register a drop (folder or s3:// prefix) and transcribe it")
    p.add_argument("source", help="local folder or s3://bucket/prefix (S3 settings from AWS_* variables)")
    p.add_argument("--warehouse", required=True, help="where tables and audio go: local path or s3://bucket/prefix")
    p.add_argument("--drop", help="drop name (default: the source folder's name)")
    p.add_argument(
        "--max-files",
        type=int,
        default=settings.BATCH_MAX_FILES,
        help=f"files per batch (default {settings.BATCH_MAX_FILES})",
    )
    p.add_argument(
        "--max-hours",
        type=float,
        default=settings.BATCH_MAX_HOURS,
        help=f"hours of audio per batch (default {settings.BATCH_MAX_HOURS:g})",
    )
    p.add_argument("--model", help="ASR model: packaged:base (default), packaged:tiny.en, a directory or a hub id")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--compute-type", dest="compute_type", help="int8, float16, float32 ... (default per device)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="ASR batch size (default 8)")
    p.add_argument("--language", help="force a language code instead of detecting per file")
    p.add_argument("--align-model", dest="align_model", help="wav2vec2 alignment model (hub id or directory)")
    p.add_argument(
        "--diarization",
        help="pyannote pipeline: packaged (default, CAM++ voices), packaged-ge2e, a hub id or a local directory",
    )
    p.add_argument("--num-speakers", dest="num_speakers", type=int, help="exact speakers per file, when known")
    p.add_argument("--min-speakers", dest="min_speakers", type=int, help="lower bound on speakers per file")
    p.add_argument("--max-speakers", dest="max_speakers", type=int, help="upper bound on speakers per file")
    p.add_argument(
        "--translate",
        choices=["never", "non_english", "always"],
        help="English version (segments_en): non_english (default), always, or never",
    )
    p.add_argument(
        "--no-translate", dest="translate", action="store_const", const="never", help="same as --translate never"
    )
    p.add_argument(
        "--translation-model", dest="translation_model", help="multilingual Whisper model (default: --model)"
    )
    p.add_argument("--no-exports", dest="no_exports", action="store_true", help="write no subtitle/transcript files")
    p.add_argument(
        "--submit",
        action="store_true",
        help="hand the runs to the instance's run queue (dagster-daemon runs them) and follow them",
    )
    add_verbose(p)
    p.set_defaults(func=cmd_process)
