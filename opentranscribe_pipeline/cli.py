"""``opentranscribe``: register a drop, run the asset graph per batch, print a summary.

Each batch runs as a real Dagster run in the ``DAGSTER_HOME`` instance (``dagster dev``
shows them afterwards). The exit status is non-zero only when the pipeline itself broke
(a run failed: 1; storage unusable: 2), never because some input files were bad: those are
reported in the summary and recorded in the ``media`` / ``transcripts`` tables. A storage
error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from . import settings

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2  # unusable arguments or storage

# Errors of a failed step that mean the storage, not the pipeline, is at fault (exit 2).
STORAGE_ERROR_CLASSES = frozenset(
    {
        "StorageUnavailable",
        "StorageUnreachable",
        "AccessDenied",
        "NoSuchBucket",
        "InvalidKey",
        "NotADirectory",
        "DiskFull",
    }
)


def _dagster_home() -> Path:
    """DAGSTER_HOME, or ``./.dagster`` seeded with ``./dagster.yaml`` (what ``make`` uses)."""
    path = settings.dagster_home()
    if path is None:  # DagsterInstance.get() reads the variable: the entry point sets it
        path = Path.cwd() / ".dagster"
        os.environ["DAGSTER_HOME"] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "dagster.yaml").exists() and Path("dagster.yaml").exists():
        shutil.copy("dagster.yaml", path / "dagster.yaml")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted_runs(instance) -> list[str]:
    """Mark runs of this CLI whose process died (SIGKILL, OOM killer, power loss) as failed
    and release the ``gpu`` pool slots they held; otherwise the next run would wait forever
    for a slot that nobody will free. The tables need no repair: see storage.Warehouse."""
    import socket

    from dagster import DagsterRunStatus, RunsFilter

    host = socket.gethostname()
    active = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
    recovered = []
    for run in instance.get_runs(filters=RunsFilter(statuses=active, tags={"opentranscribe/host": host})):
        pid = int(run.tags.get("opentranscribe/pid", "0") or 0)
        if pid and pid != os.getpid() and not _pid_alive(pid):
            instance.report_run_failed(run, f"interrupted: its process {pid} on {host} no longer exists")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            recovered.append(run.run_id)
    return recovered


def _s3_options():
    from .storage import S3Options

    return S3Options.from_env()


def _asr_config(args) -> dict:
    config = {}
    for key in ("model", "device", "compute_type", "batch_size", "language", "align_model"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    return config


def _diarization_config(args) -> dict:
    config = {}
    for key, attr in (("pipeline", "diarization"), ("device", "device")):
        if getattr(args, attr, None) is not None:
            config[key] = getattr(args, attr)
    for key in ("num_speakers", "min_speakers", "max_speakers"):
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    return config


def _run_log_level(args) -> str:
    """Dagster's console log: everything with ``-v``; otherwise nothing, because a failed
    step is logged with its stack trace: the CLI prints one line per failed step itself
    (:func:`failed_steps`) and bad input files are in the summary."""
    return "INFO" if args.verbose else "CRITICAL"


def run_clustering(instance, warehouse_uri: str, args, mode: str, batch_ids: list[str] | None = None, loc=None):
    """``assign_speakers`` (incremental, the batches given) or ``recluster_speakers`` (full):
    a run created from the code location like every CLI run (see :mod:`.runner`)."""
    from . import runner
    from .definitions import ASSIGN_JOB, RECLUSTER_JOB, clustering_run_config

    run_config = {
        **clustering_run_config(mode, batch_ids),
        "loggers": {"console": {"config": {"log_level": _run_log_level(args)}}},
        "resources": {
            "warehouse": {"config": {"root": warehouse_uri}},
            "diarization": {"config": _diarization_config(args)},
        },
    }
    with contextlib.ExitStack() as stack:
        if loc is None:
            loc = stack.enter_context(runner.code_location(instance, verbose=getattr(args, "verbose", False)))
        return runner.run_job(
            loc,
            instance,
            ASSIGN_JOB if mode == "incremental" else RECLUSTER_JOB,
            run_config=run_config,
            submit_to_queue=getattr(args, "submit", False),
        )


def _translation_config(args) -> dict:
    """``translation`` resource config from ``--translate``/``--no-translate``/``--translation-model``
    (the ASR ``--model`` too, unless a translation model is named)."""
    config = {}
    model = getattr(args, "translation_model", None) or getattr(args, "model", None)
    if model:
        config["model"] = model
    if getattr(args, "translate", None):
        config["translate"] = args.translate
    if getattr(args, "device", None):
        config["device"] = args.device
    return config


def run_publish(loc, instance, warehouse_uri: str, args, batch_ids: list[str]) -> list[tuple[str, str, list[str]]]:
    """``publish_batch`` (exports, search index) for each batch after clustering, created from
    the code location like every CLI run; the failed runs as ``(batch, run id, failed
    steps)``. ``--no-exports`` writes no files."""
    from . import runner
    from .definitions import PUBLISH_JOB

    print("publishing: exports, indexing for search ...", flush=True)
    run_config = {
        "loggers": {"console": {"config": {"log_level": _run_log_level(args)}}},
        "resources": {
            "warehouse": {"config": {"root": warehouse_uri}},
            "exports_config": {"config": {"enabled": not getattr(args, "no_exports", False)}},
        },
    }
    failed = []
    for batch_id in batch_ids:
        result = runner.run_job(
            loc,
            instance,
            PUBLISH_JOB,
            run_config=run_config,
            partition_key=batch_id,
            submit_to_queue=getattr(args, "submit", False),
        )
        if not result.success:
            failed.append((f"{batch_id} (publish)", result.run_id, failed_steps(result)))
    return failed


def cmd_process(args) -> int:
    """``process``, stoppable: Ctrl-C or SIGTERM cancels the runs it executes (CANCELED in the
    instance, their step processes stopped) or handed to the queue, closes the code server and
    the forkserver, and exits 128 + the signal's number (130, 143)."""
    from . import runner

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
    from dagster import DagsterInstance

    from . import executors, runner
    from .batching import BatchLimits, DropConflict, register_drop
    from .definitions import SUMMARY_JOB
    from .partitions import BATCHES
    from .storage import StorageError, Warehouse

    started = time.perf_counter()
    s3 = _s3_options()
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

    home = _dagster_home()
    failed_runs = []
    with contextlib.ExitStack() as stack:
        # the batch run's forkserver imports the model stack (about 10 s on 2 cores) while
        # this process loads the code location and creates the run; the clustering and
        # publishing runs then fork their steps from it too
        stack.enter_context(runner.shared_forkserver(None if args.submit else executors.local_batch_preload()))
        instance = DagsterInstance.get()
        for run_id in recover_interrupted_runs(instance):
            print(f"recovered interrupted run {run_id}: marked failed, its gpu slot released")
        instance.add_dynamic_partitions(BATCHES, reg.batch_ids)
        runner.ensure_pools(instance)  # before any run claims a slot (see runner.ensure_pools)
        run_config = {
            "loggers": {"console": {"config": {"log_level": _run_log_level(args)}}},
            "resources": {
                "warehouse": {"config": {"root": warehouse.root_uri}},
                "asr": {"config": _asr_config(args)},
                "diarization": {"config": _diarization_config(args)},
                "translation": {"config": _translation_config(args)},
            },
        }
        tags = {"opentranscribe/drop": reg.drop, "opentranscribe/source": args.source}
        try:
            loc = stack.enter_context(runner.code_location(instance, verbose=args.verbose))
        except Exception as exc:  # a definitions import error, a bad workspace.yaml
            print(f"error: cannot load the code location: {exc}", file=sys.stderr)
            return EXIT_USAGE
        outcomes = _run_batches(loc, instance, reg.batch_ids, run_config, tags, submit=args.submit)
        for batch_id, result in outcomes.items():
            if not result.success:
                failed_runs.append((batch_id, result.run_id, failed_steps(result)))
        # one file (or one step) failing never holds back the rest: speaker ids, exports and
        # search go on for every batch whose storage is usable, from whatever its run finished
        done = [
            b
            for b in reg.batch_ids
            if not any(f == b and any(x.startswith(STORAGE_PREFIX) for x in steps) for f, _, steps in failed_runs)
        ]
        if done:
            print("assigning global speaker ids ...", flush=True)
            result = run_clustering(instance, warehouse.root_uri, args, "incremental", done, loc=loc)
            if not result.success:
                failed_runs.append(("speaker clustering", result.run_id, failed_steps(result)))
            else:
                failed_runs += run_publish(loc, instance, warehouse.root_uri, args, done)
        if not any(x.startswith(STORAGE_PREFIX) for _, _, steps in failed_runs for x in steps):
            # the dashboard (archive_summary) after every process, failed runs included
            result = runner.run_job(
                loc,
                instance,
                SUMMARY_JOB,
                run_config={
                    "loggers": {"console": {"config": {"log_level": _run_log_level(args)}}},
                    "resources": {"warehouse": {"config": {"root": warehouse.root_uri}}},
                },
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
    storage_failed = any(line.startswith(STORAGE_PREFIX) for _, _, steps in failed_runs for line in steps)
    if summary_error is not None or storage_failed:
        return EXIT_USAGE
    return EXIT_RUN_FAILED if failed_runs or held_back else EXIT_OK


MODEL_STEP_STATES = {"transcripts": "transcribe", "diarization": "diarize"}


def _model_step_failures(warehouse, batch_ids: list[str]) -> list[tuple[str, str, str, str]]:
    """(source name, media id, step, error) of every file ingest accepted that a model step
    failed on (its state row says ``failed``): the file misses that step's outputs."""
    import polars as pl

    out = []
    for batch_id in batch_ids:
        media = warehouse.read_table("media", batch_id)
        names = dict(media.select("media_id", "source_uri").iter_rows()) if media is not None else {}
        for table, step in MODEL_STEP_STATES.items():
            state = warehouse.read_table(table, batch_id)
            if state is None or "status" not in state.columns:
                continue
            for media_id, error in state.filter(pl.col("status") == "failed").select("media_id", "error").iter_rows():
                name = (names.get(media_id) or media_id).rsplit("/", 1)[-1]
                out.append((name, media_id, step, error or ""))
    return sorted(out)


def print_held_back(warehouse, batch_ids: list[str]) -> int:
    """One line per file and stage that left the file without some outputs: a model step that
    failed on it (its state table) or a stage that held its rows back (``file_issues``),
    with why. Returns how many files."""

    from .assets.isolation import read_issues
    from .storage import StorageError

    try:
        issues = read_issues(warehouse, batch_ids)
        failed = _model_step_failures(warehouse, batch_ids)
    except StorageError as exc:
        print(f"warning: file issues not readable: {exc}", file=sys.stderr)
        return 0
    if issues.is_empty() and not failed:
        return 0
    files = len(set(issues["media_id"].to_list()) | {media_id for _, media_id, _, _ in failed})
    print(
        f"held back:  {files} file(s) miss some outputs (tables file_issues, transcripts, diarization):",
        file=sys.stderr,
    )
    for name, _, step, error in failed:
        print(f"  {name}: {step}: step failed on the file: {error[:160]}", file=sys.stderr)
    for row in issues.sort("source_uri", "stage").iter_rows(named=True):
        name = (row["source_uri"] or row["media_id"]).rsplit("/", 1)[-1]
        what = f"no `{row['table']}` rows" if row["table"] else "stage failed"
        print(f"  {name}: {row['stage']}: {what}: {row['rule']} {row['values'][:160]}", file=sys.stderr)
    return files


def _run_batches(loc, instance, batch_ids: list[str], run_config: dict, tags: dict, submit: bool) -> dict:
    """One ``transcribe_batch`` run per batch, created from the code location: executed here
    one after another, or (``--submit``) all handed to the run queue, then followed, one
    line per batch and status change."""
    from . import runner
    from .definitions import BATCH_JOB

    if not submit:
        outcomes = {}
        for batch_id in batch_ids:
            print(f"running batch {batch_id} ...", flush=True)
            outcomes[batch_id] = runner.run_job(
                loc, instance, BATCH_JOB, run_config=run_config, partition_key=batch_id, tags=tags
            )
        return outcomes
    submitted = {}
    for batch_id in batch_ids:
        run = runner.create_run(
            loc,
            instance,
            BATCH_JOB,
            run_config=run_config,
            partition_key=batch_id,
            tags={**tags, runner.SUBMITTED_TAG: "true"},
        )
        runner.submit(loc, instance, run)
        submitted[batch_id] = run.run_id
        print(f"submitted batch {batch_id} as run {run.run_id}", flush=True)

    if not runner.daemon_alive(instance):
        print(
            "warning: no dagster-daemon has reported to this instance lately; queued runs wait for one "
            "(start it with `dagster-daemon run -w workspace.yaml`)",
            file=sys.stderr,
            flush=True,
        )

    def progress(batch_id, status):
        print(f"  batch {batch_id}: {status.value.lower().replace('_', ' ')}", flush=True)

    return runner.follow_all(instance, submitted, on_change=progress)


STORAGE_PREFIX = "storage: "


def _error_line(error) -> str:
    """``Cls: first line of the message``, without the module path Dagster records."""
    first = (error.message or "").strip().splitlines()[0] if (error.message or "").strip() else ""
    return first.split(f"{error.cls_name}: ", 1)[-1] if f"{error.cls_name}: " in first else first


def failed_steps(result) -> list[str]:
    """One line per failed step of ``result``: ``storage: <message>`` when the step failed
    on unusable storage (exit 2), else ``step <key>: <Error>: <message>``."""
    lines = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        root = error
        while error is not None:
            if error.cls_name in STORAGE_ERROR_CLASSES:
                lines.append(f"{STORAGE_PREFIX}{_error_line(error)} (step {event.step_key})")
                break
            root = error
            error = error.cause
        else:
            lines.append(f"step {event.step_key}: {root.cls_name}: {_error_line(root)}")
    return lines


def _readable(warehouse, table: str, batch_ids: list[str], unreadable: list) -> list:
    """The batches' parts of ``table`` that exist and can be read; the others' errors go to
    ``unreadable`` (a summary shows what it can)."""
    from .storage import CorruptTable

    frames = []
    for b in batch_ids:
        try:
            df = warehouse.read_table(table, b)
        except CorruptTable as exc:
            unreadable.append(exc)
            continue
        if df is not None:
            frames.append(df)
    return frames


def summarize(warehouse, batch_ids: list[str]) -> dict:
    import polars as pl

    unreadable: list = []
    media = _readable(warehouse, "media", batch_ids, unreadable)
    state = _readable(warehouse, "transcripts", batch_ids, unreadable)
    media_df = pl.concat(media, how="vertical_relaxed") if media else None
    state_df = pl.concat(state, how="vertical_relaxed") if state else None
    counts = dict(media_df.group_by("status").len().iter_rows()) if media_df is not None else {}
    ok_state = state_df.filter(pl.col("status") == "ok") if state_df is not None else None
    return {
        "files": media_df.height if media_df is not None else 0,
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "transcripts_failed": state_df.filter(pl.col("status") == "failed").height if state_df is not None else 0,
        "audio_s": float(ok_state["audio_s"].sum()) if ok_state is not None else 0.0,
        "words": int(ok_state["n_words"].sum()) if ok_state is not None else 0,
        "segments": int(ok_state["n_segments"].sum()) if ok_state is not None else 0,
        "local_speakers": sum(df.height for df in _readable(warehouse, "speaker_embeddings", batch_ids, unreadable)),
        "global_speakers": _global_speakers(warehouse, batch_ids, unreadable),
        "unreadable": unreadable,
        "problems": (
            media_df.filter(pl.col("status") != "ok").select("source_uri", "status", "error").rows()
            if media_df is not None
            else []
        ),
    }


def _global_speakers(warehouse, batch_ids: list[str], unreadable: list) -> int:
    from .speakers.state import read_clusters
    from .storage import CorruptTable

    try:
        return read_clusters(warehouse, batch_ids)["global_speaker_id"].n_unique()
    except CorruptTable as exc:
        unreadable.append(exc)
        return 0


def print_summary(warehouse, batch_ids: list[str], wall_s: float):
    """Print what the tables say about ``batch_ids``. Returns None, or the storage error that
    kept the summary from being read (then what is known without the tables is printed)."""
    from .storage import StorageError

    try:
        s = summarize(warehouse, batch_ids)
    except StorageError as exc:
        print()
        print(f"warehouse:  {warehouse.root_uri}")
        print(f"batches:    {len(batch_ids)} ({', '.join(batch_ids[:5])}{' ...' if len(batch_ids) > 5 else ''})")
        print(f"wall time:  {wall_s:.1f} s")
        print("summary:    not available, the warehouse cannot be read")
        print(f"error: {exc}", file=sys.stderr)
        return exc
    rtf = wall_s / s["audio_s"] if s["audio_s"] else 0.0
    print()
    print(f"warehouse:  {warehouse.root_uri}")
    print(f"batches:    {len(batch_ids)}")
    print(f"files:      {s['files']} total, {s['ok']} ok, {s['failed']} failed, {s['skipped']} skipped")
    if s["transcripts_failed"]:
        print(f"            {s['transcripts_failed']} failed in transcription (see the transcripts table)")
    print(f"audio:      {s['audio_s'] / 3600:.3f} h ({s['audio_s']:.1f} s)")
    print(f"words:      {s['words']} in {s['segments']} segments")
    print(f"speakers:   {s['local_speakers']} per-file speakers, {s['global_speakers']} distinct global speaker ids")
    print(f"wall time:  {wall_s:.1f} s (real-time factor {rtf:.3f}, {1 / rtf if rtf else 0:.1f}x real time)")
    for uri, status, error in s["problems"]:
        print(f"  {status:7s} {uri}: {error}")
    for exc in s["unreadable"]:
        print(f"  unreadable {exc.path}: {exc}")
    return None


def cmd_show(args) -> int:
    """Row counts per table (from Parquet footers: nothing is loaded, at any size) and the
    first transcript lines of the first few files: what analysts will query."""
    from .query import counts, transcript
    from .storage import StorageError, Warehouse

    unreadable: list[tuple[str, str]] = []
    try:
        warehouse = Warehouse(args.warehouse, _s3_options())
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


SHOW_FILES = 10


def _first_media(warehouse, limit: int) -> list[tuple[str, str]]:
    """(media_id, source_uri) of the first ``limit`` transcribed files, from the first
    batches' ``media`` tables only."""
    import polars as pl

    from .storage import CorruptTable

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


def cmd_speakers(args) -> int:
    """List global speakers, name one, or re-cluster the archive."""
    from .speakers import state
    from .storage import StorageUnavailable, Warehouse

    warehouse = Warehouse(args.warehouse, _s3_options())
    if args.action == "similar":
        return cmd_speakers_similar(args)
    if args.action == "recluster":
        from dagster import DagsterInstance

        try:
            warehouse.check_reachable()
        except StorageUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _dagster_home()
        result = run_clustering(DagsterInstance.get(), warehouse.root_uri, args, "full")
        print("re-clustered" if result.success else f"error: run {result.run_id} failed")
        return EXIT_OK if result.success else EXIT_RUN_FAILED
    if args.action == "split":
        return cmd_speakers_split(args, warehouse)
    if args.action == "calibrate":
        return cmd_speakers_calibrate(args, warehouse)
    if args.action == "merge":
        return cmd_speakers_merge(args, warehouse)
    if args.action == "name" and (not args.id or not args.name or not args.name.strip()):
        print("error: usage: opentranscribe speakers name ID NAME", file=sys.stderr)
        return EXIT_USAGE
    from .speakers.names import InvalidName, shown_name, validate_name

    if args.action == "name":
        try:  # one line saying why, before anything is read or written
            args.name = validate_name(args.name)
        except InvalidName as exc:
            print(f"error: name refused: {exc.reason}", file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.action == "list":
            active, retired = state.active_speakers(warehouse)
        else:
            target = state.name_speaker(warehouse, args.id, args.name)
    except StorageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except state.UnknownSpeaker as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "list":
        from .speakers.cluster import ClusterParams

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
    record_profiles_changed(warehouse)
    if target != args.id:
        print(f"{args.id} was merged into {target}; naming {target}")
    print(f"{target} is now {args.name!r}")
    refresh_speakers_index(warehouse)
    return EXIT_OK


def record_profiles_changed(warehouse) -> None:
    """Tell the Dagster instance that ``speaker_profiles`` changed (a runless materialization
    with a data version over the names), so the UI marks ``exports`` stale."""
    import hashlib

    import dagster as dg

    from .query.core import profiles

    try:
        names = profiles(warehouse).sort("global_speaker_id").rows()
        _dagster_home()
        with dg.DagsterInstance.get() as instance:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "speaker_profiles",
                    metadata={"named_speakers": len(names), "warehouse": warehouse.root_uri},
                    tags={"dagster/data_version": hashlib.sha256(repr(names).encode()).hexdigest()[:16]},
                )
            )
    except Exception as exc:  # the name is committed; only the UI's staleness hint is lost
        logging.getLogger(__name__).warning("could not record the rename in the Dagster instance: %s", exc)


def cmd_speakers_split(args, warehouse) -> int:
    """``speakers split ID --media M ... | --by-file``: one global speaker that is two people."""
    from .speakers import state
    from .storage import StorageUnavailable

    if not args.id:
        print("error: usage: opentranscribe speakers split ID (--media MEDIA_ID ... | --by-file)", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = state.split_speaker(warehouse, args.id, media_ids=args.media or None, by_file=args.by_file)
    except StorageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (state.UnknownSpeaker, state.SplitRefused) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{result.global_speaker_id} keeps {len(result.kept)} member(s) and its name")
    for gid, members in result.parts.items():
        files = sorted({m for m, _ in members})
        print(f"  {gid}: {len(members)} member(s) in {len(files)} file(s): {', '.join(f[:12] for f in files[:5])}")
    print(f"committed speaker state generation {result.generation}; these ids are kept apart from now on")
    record_profiles_changed(warehouse)  # names and members moved: exports are stale
    refresh_speakers_index(warehouse)
    return EXIT_OK


def cmd_speakers_merge(args, warehouse) -> int:
    """``speakers merge ID --into OTHER``: one person under two ids (a missed join)."""
    from .speakers import state
    from .storage import StorageUnavailable

    if not args.id or not args.into:
        print("error: usage: opentranscribe speakers merge ID --into OTHER_ID", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = state.merge_speakers(warehouse, args.id, args.into)
    except StorageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (state.UnknownSpeaker, state.SplitRefused) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.id} is now part of {target}")
    record_profiles_changed(warehouse)  # names and members moved: exports are stale
    refresh_speakers_index(warehouse)
    return EXIT_OK


def cmd_speakers_calibrate(args, warehouse) -> int:
    """``speakers calibrate``: similarity distributions of this warehouse's own speakers."""
    from .speakers.calibration import calibrate_warehouse, format_report
    from .speech.diarize import embedding_model_name

    model = embedding_model_name(args.diarization or settings.diarization_pipeline())
    print(format_report(calibrate_warehouse(warehouse, model)))
    return EXIT_OK


def cmd_doctor(args) -> int:
    """One line per check; exit 0 only when every check passes."""
    from .doctor import run_checks

    if args.warehouse:
        os.environ["OPENTRANSCRIBE_WAREHOUSE"] = args.warehouse  # the checks read the setting
    checks = run_checks(args.warehouse, device=args.device, compute_type=args.compute_type, batch_size=args.batch_size)
    for check in checks:
        print(check.line(), flush=True)
    failed = [c.name for c in checks if not c.ok]
    print(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return EXIT_OK if not failed else EXIT_RUN_FAILED


def _search_backend(warehouse):
    from .resources.search import SearchResource

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

    from .search.backends import SearchUnavailable, VectorSearchUnsupported
    from .search.service import UnknownSpeakerFilter, query_embedder, search
    from .speakers.names import shown_name
    from .storage import Warehouse

    if not args.query.strip():
        print("error: the query is empty", file=sys.stderr)
        return EXIT_USAGE
    warehouse = Warehouse(args.warehouse, _s3_options())
    model = args.model or settings.text_embedding_model()
    try:
        backend = _search_backend(warehouse)
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


def cmd_speakers_similar(args) -> int:
    """The voices nearest to one global speaker, by k-NN in the speakers index."""
    from .search.backends import SearchUnavailable, VectorSearchUnsupported
    from .search.service import UnknownSpeakerFilter, similar_speakers
    from .speakers.names import shown_name
    from .storage import Warehouse

    if not args.id:
        print("error: usage: opentranscribe speakers similar ID|NAME", file=sys.stderr)
        return EXIT_USAGE
    warehouse = Warehouse(args.warehouse, _s3_options())
    try:
        found = similar_speakers(warehouse, _search_backend(warehouse), args.id, limit=args.limit)
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


def cmd_reindex(args) -> int:
    """``reindex``: the whole search index again from the ``chunks`` tables."""
    from .search.backends import SearchUnavailable
    from .search.service import rebuild_index, refresh_speakers
    from .storage import Warehouse

    warehouse = Warehouse(args.warehouse, _s3_options())
    model = args.model or settings.text_embedding_model()
    try:
        backend = _search_backend(warehouse)
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


def refresh_speakers_index(warehouse) -> None:
    """After naming, a split or a merge: the speakers index shows the new state, and passages
    whose speakers changed global id are re-indexed (a warning when it cannot)."""
    from .search.backends import SearchUnavailable
    from .search.service import refresh_speakers, resync_speaker_ids

    try:
        backend = _search_backend(warehouse)
        redone = resync_speaker_ids(warehouse, backend)
        if redone:
            print(f"re-indexed the passages of {len(redone)} batch(es) for the new speaker ids")
        refresh_speakers(warehouse, backend)
    except (SearchUnavailable, ValueError) as exc:
        print(f"warning: the speakers index was not refreshed: {exc}", file=sys.stderr)


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
    q.add_argument("--language", help="only passages in this language (ISO code, e.g. en)")
    q.add_argument("--drop", help="only passages of this drop")
    q.add_argument("--limit", type=int, default=10, help="results to show (default 10)")
    q.add_argument("--json", action="store_true", help="one JSON object per result and line")
    q.add_argument(
        "--model",
        help="text-embedding model of the index (default: OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL or the packaged MiniLM)",
    )
    q.add_argument("-v", "--verbose", action="store_true")
    q.set_defaults(func=cmd_search)
    r = sub.add_parser(
        "reindex",
        help="rebuild the search index from the chunks tables (OpenSearch: a new index, alias swapped at the end)",
    )
    r.add_argument("--warehouse", required=True)
    r.add_argument("--model", help="text-embedding model of the chunks to index (default: the configured one)")
    r.add_argument("-v", "--verbose", action="store_true")
    r.set_defaults(func=cmd_reindex)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opentranscribe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
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
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_process)
    s = sub.add_parser("show", help="print table sizes and the first transcript lines of a warehouse")
    s.add_argument("--warehouse", required=True)
    s.add_argument("--lines", type=int, default=3, help="segments to print per file")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_show)
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
    sp.add_argument("-v", "--verbose", action="store_true")
    sp.set_defaults(func=cmd_speakers)
    add_search_commands(sub)
    d = sub.add_parser("doctor", help="check this machine: packages, models, device, instance, storage, search, pool")
    d.add_argument("--warehouse", help="warehouse to check (default OPENTRANSCRIBE_WAREHOUSE, else ./warehouse)")
    d.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    d.add_argument(
        "--compute-type", dest="compute_type", default="default", help="default: float16 on CUDA, int8 on CPU"
    )
    d.add_argument("--batch-size", dest="batch_size", type=int, default=8, help="ASR batch size to check (default 8)")
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(func=cmd_doctor)
    from .query.cli import add_query_commands  # `query transcript|words|talk-time|languages`, `duckdb`

    add_query_commands(sub)
    from .deliver.cli import add_export_command  # `export`

    add_export_command(sub)
    return parser


def _quiet_model_libraries() -> None:
    """The pipeline hands pyannote in-memory arrays, so its torchcodec warning (no system
    FFmpeg) is noise; WhisperX and Lightning log at INFO to stdout unless told otherwise.
    Runs execute their steps in child processes: the variables carry the choice there
    (the warning is raised when pyannote is imported, before any of our code runs)."""
    os.environ["OPENTRANSCRIBE_QUIET_MODEL_LOGS"] = "1"
    quiet = "ignore::UserWarning:pyannote.audio.core.io"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet


@contextlib.contextmanager
def _process_environment():
    """The variables a command sets for the processes it starts (step processes, code servers
    read them), undone when it returns: ``main()`` called in-process (tests, a notebook) leaves
    ``os.environ`` as it found it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from .storage import StorageError

    with _process_environment():
        # The application entry point decides before anything imports pyannote, which writes
        # "true" into this variable on import when it is unset (library code never writes it).
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        # the step processes of its runs log the project's lines like this process does
        os.environ["OPENTRANSCRIBE_LOG_LEVEL"] = "INFO" if args.verbose else "WARNING"
        if not args.verbose and args.command in ("process", "speakers"):
            # this process only orchestrates: models load in the step processes, which read the
            # variables (importing the model libraries here just to quiet them cost 6 s a call)
            _quiet_model_libraries()
        try:
            return args.func(args)
        except StorageError as exc:  # one line, never a traceback: the message names what and where
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
