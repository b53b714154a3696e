"""The code location a run is created from, loaded as ``dagster job launch`` loads it.

:func:`code_location` serves the one location of ``workspace.yaml`` from a code server
subprocess; :func:`create_run` makes a NOT_STARTED run from its remote job (origin,
snapshots, partition tags), so the UI shows it like one it launched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .. import settings

DEFINITIONS_MODULE = "opentranscribe_pipeline.definitions"


def _load_target(workspace_file: str | None):
    from dagster._core.workspace.load_target import ModuleTarget, WorkspaceFileTarget

    path = workspace_file or settings.workspace_file()
    if path and Path(path).is_file():
        return WorkspaceFileTarget(paths=[str(Path(path).resolve())])
    # no workspace.yaml here: the module it names, under the same (default) location name
    return ModuleTarget(module_name=DEFINITIONS_MODULE, attribute=None, working_directory=None, location_name=None)


@dataclass
class CodeLocation:
    """The loaded code location: what a run is created from."""

    workspace: object  # WorkspaceRequestContext
    location: object  # dagster CodeLocation
    repository: object  # RemoteRepository

    @property
    def name(self) -> str:
        return self.location.name


@contextlib.contextmanager
def code_location(
    instance: dg.DagsterInstance, workspace_file: str | None = None, verbose: bool = False
) -> Iterator[CodeLocation]:
    """The one code location of ``workspace.yaml`` (``OPENTRANSCRIBE_WORKSPACE``), served by a
    code server subprocess for as long as the context is open."""
    from dagster._core.workspace.context import WorkspaceProcessContext

    with WorkspaceProcessContext(
        instance, _load_target(workspace_file), code_server_log_level="INFO" if verbose else "WARNING"
    ) as process_context:
        workspace = process_context.create_request_context()
        names = list(workspace.code_location_names)
        if len(names) != 1:
            raise RuntimeError(f"workspace must hold exactly one code location, found {names}")
        if workspace.has_code_location_error(names[0]):
            raise RuntimeError(
                f"code location {names[0]!r} failed to load: {workspace.get_code_location_error(names[0])}"
            )
        location = workspace.get_code_location(names[0])
        [repository] = location.get_repositories().values()
        yield CodeLocation(workspace, location, repository)


def create_run(
    loc: CodeLocation,
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    run_config: Mapping | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.DagsterRun:
    """A NOT_STARTED run of ``job_name`` created from the remote job, as the UI creates one."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.storage.tags import PARTITION_NAME_TAG

    selector = JobSubsetSelector(
        location_name=loc.location.name, repository_name=loc.repository.name, job_name=job_name, op_selection=None
    )
    remote_job = loc.location.get_job(selector)
    run_config = dict(run_config or {})
    all_tags = {**remote_job.tags, **(tags or {})}
    if partition_key is not None:
        all_tags[PARTITION_NAME_TAG] = partition_key
    plan = loc.location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=remote_job.resolved_op_selection,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=all_tags,
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=loc.repository.asset_graph,
    )
