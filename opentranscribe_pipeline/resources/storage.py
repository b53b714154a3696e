"""The warehouse resource: one storage interface for a local folder and S3.

In the code location (``definitions.py``) the resource is built by :meth:`from_settings`: the
root as a value the UI shows, the S3 endpoint and keys as ``dg.EnvVar`` (resolved when a run
starts, shown in the UI by variable name, never by value). A field left ``None`` means
"botocore's own variable, read when the warehouse opens": what a resource built in a test or
notebook, or given only a ``root`` in run config (the CLI does), uses.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..storage import S3Options, Warehouse
from ..storage.warehouse import Quarantined


def report_quarantine_to_dagster(q: Quarantined, message: str) -> None:
    """Inside a Dagster step: the warning in the run's log and an observation of the asset
    (partition = batch) carrying the quarantine's metadata. Outside one: nothing."""
    try:
        context = dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:  # not in a step
        return
    context.log.warning(message)
    if q.table:
        context.log_event(
            dg.AssetObservation(
                asset_key=q.table,
                partition=q.batch_id,
                metadata={"quarantined_path": q.path, "quarantined_to": q.moved_to, "quarantine_reason": q.reason},
            )
        )


# botocore's variables (settings.py reads them): field -> (variable, secret or endpoint)
S3_VARIABLES = {
    "s3_endpoint_url": "AWS_ENDPOINT_URL",
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


def s3_fields_from_settings() -> dict:
    """The S3 fields for a resource of the code location: the endpoint and keys that are set
    as ``dg.EnvVar`` (an unset one stays ``None``: an ``EnvVar`` of an unset variable fails
    the run), the region as its value."""
    current = S3Options.from_env()
    values = {
        "s3_endpoint_url": current.endpoint_url,
        "s3_access_key_id": current.access_key_id,
        "s3_secret_access_key": current.secret_access_key,
    }
    fields: dict = {name: dg.EnvVar(S3_VARIABLES[name]) for name, value in values.items() if value}
    if current.region:
        fields["s3_region"] = current.region
    return fields


class S3Settings(dg.ConfigurableResource):
    """S3 connection fields shared by the resources that reach object storage. The code
    location passes the endpoint and keys as ``EnvVar('AWS_*')``; ``None``: botocore's
    ``AWS_*`` variable, read when the storage is opened."""

    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, SeaweedFS): EnvVar('AWS_ENDPOINT_URL')"
    )
    s3_access_key_id: str | None = Field(default=None, description="EnvVar('AWS_ACCESS_KEY_ID')")
    s3_secret_access_key: str | None = Field(default=None, description="EnvVar('AWS_SECRET_ACCESS_KEY')")
    s3_region: str | None = Field(default=None, description="AWS_DEFAULT_REGION; unset: us-east-1")

    def s3_options(self) -> S3Options:
        env = S3Options.from_env()
        return S3Options(
            endpoint_url=self.s3_endpoint_url or env.endpoint_url,
            access_key_id=self.s3_access_key_id or env.access_key_id,
            secret_access_key=self.s3_secret_access_key or env.secret_access_key,
            region=self.s3_region or env.region,
        )


class WarehouseResource(S3Settings):
    """Where tables and audio live. ``root`` is a local path or ``s3://bucket/prefix``;
    its default is ``OPENTRANSCRIBE_WAREHOUSE`` (else ``warehouse``), read when the resource is
    built, so the UI shows the root the runs use. In production pass secrets as
    ``dg.EnvVar(...)`` (:meth:`from_settings` does) so the UI never shows them.
    """

    root: str = Field(
        default_factory=settings.warehouse_root,
        description="local path or s3://bucket/prefix (default: OPENTRANSCRIBE_WAREHOUSE, else warehouse)",
    )

    @classmethod
    def from_settings(cls) -> WarehouseResource:
        """The code location's warehouse: the root from the settings, S3 secrets as EnvVar."""
        return cls(root=settings.warehouse_root(), **s3_fields_from_settings())

    def get(self) -> Warehouse:
        return Warehouse(self.root, self.s3_options(), on_quarantine=report_quarantine_to_dagster)
