"""The runs a command starts and what their outcome says: the run config built from the
command line, the batch, clustering and publishing runs (created from the code location by
:mod:`..runner`), runs a dead process left behind, and one line per failed step.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .common import run_log_level

# the line of a step that failed on unusable storage (exit 2, and nothing after it runs)
STORAGE_PREFIX = "storage: "


def storage_error_names() -> frozenset[str]:
    """Class names of the errors that mean the storage, not the pipeline, is at fault:
    :class:`~..storage.StorageUnavailable` and its kinds (a failed step's error is recorded
    by class name)."""
    from ..storage import StorageUnavailable

    names, todo = set(), [StorageUnavailable]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


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

    from ..runner import HOST_TAG, PID_TAG

    host = socket.gethostname()
    active = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
    recovered = []
    for run in instance.get_runs(filters=RunsFilter(statuses=active, tags={HOST_TAG: host})):
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if pid and pid != os.getpid() and not _pid_alive(pid):
            instance.report_run_failed(run, f"interrupted: its process {pid} on {host} no longer exists")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            recovered.append(run.run_id)
    return recovered


def _error_line(error) -> str:
    """``Cls: first line of the message``, without the module path Dagster records."""
    first = (error.message or "").strip().splitlines()[0] if (error.message or "").strip() else ""
    return first.split(f"{error.cls_name}: ", 1)[-1] if f"{error.cls_name}: " in first else first


def failed_steps(result) -> list[str]:
    """One line per failed step of ``result``: ``storage: <message>`` when the step failed
    on unusable storage (exit 2), else ``step <key>: <Error>: <message>``."""
    storage_errors = storage_error_names()
    lines = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        root = error
        while error is not None:
            if error.cls_name in storage_errors:
                lines.append(f"{STORAGE_PREFIX}{_error_line(error)} (step {event.step_key})")
                break
            root = error
            error = error.cause
        else:
            lines.append(f"step {event.step_key}: {root.cls_name}: {_error_line(root)}")
    return lines


def storage_failed(steps: list[str]) -> bool:
    return any(line.startswith(STORAGE_PREFIX) for line in steps)


# -- run config from the command line -----------------------------------------------------------
def asr_config(args) -> dict:
    config = {}
    for key in ("model", "device", "compute_type", "batch_size", "language", "align_model"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    return config


def diarization_config(args) -> dict:
    config = {}
    for key, attr in (("pipeline", "diarization"), ("device", "device")):
        if getattr(args, attr, None) is not None:
            config[key] = getattr(args, attr)
    for key in ("num_speakers", "min_speakers", "max_speakers"):
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    return config


def translation_config(args) -> dict:
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


def _loggers(args) -> dict:
    return {"console": {"config": {"log_level": run_log_level(args)}}}


def batch_run_config(args, warehouse_uri: str) -> dict:
    """``transcribe_batch``: the models as the command line names them."""
    return {
        "loggers": _loggers(args),
        "resources": {
            "warehouse": {"config": {"root": warehouse_uri}},
            "asr": {"config": asr_config(args)},
            "diarization": {"config": diarization_config(args)},
            "translation": {"config": translation_config(args)},
        },
    }


def summary_run_config(args, warehouse_uri: str) -> dict:
    return {"loggers": _loggers(args), "resources": {"warehouse": {"config": {"root": warehouse_uri}}}}


# -- the runs -----------------------------------------------------------------------------------
def run_batches(loc, instance, batch_ids: list[str], run_config: dict, tags: dict, submit: bool) -> dict:
    """One ``transcribe_batch`` run per batch, created from the code location: executed here
    one after another, or (``--submit``) all handed to the run queue, then followed, one
    line per batch and status change."""
    from .. import runner
    from ..definitions import BATCH_JOB

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


def run_clustering(instance, warehouse_uri: str, args, mode: str, batch_ids: list[str] | None = None, loc=None):
    """``assign_speakers`` (incremental, the batches given) or ``recluster_speakers`` (full):
    a run created from the code location like every CLI run (see :mod:`..runner`)."""
    from .. import runner
    from ..definitions import ASSIGN_JOB, RECLUSTER_JOB, clustering_run_config

    run_config = {
        **clustering_run_config(mode, batch_ids),
        "loggers": _loggers(args),
        "resources": {
            "warehouse": {"config": {"root": warehouse_uri}},
            "diarization": {"config": diarization_config(args)},
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


def run_publish(loc, instance, warehouse_uri: str, args, batch_ids: list[str]) -> list[tuple[str, str, list[str]]]:
    """``publish_batch`` (exports, search index) for each batch after clustering, created from
    the code location like every CLI run; the failed runs as ``(batch, run id, failed
    steps)``. ``--no-exports`` writes no files."""
    from .. import runner
    from ..definitions import PUBLISH_JOB

    print("publishing: exports, indexing for search ...", flush=True)
    run_config = {
        "loggers": _loggers(args),
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
