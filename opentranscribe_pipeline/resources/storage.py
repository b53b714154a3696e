"""The warehouse resource: one storage interface for a local folder and S3."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..storage import S3Options, Warehouse


class S3Settings(dg.ConfigurableResource):
    """S3 connection fields shared by the resources that reach object storage; unset ones
    fall back to botocore's ``AWS_*`` environment variables at run time."""

    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, SeaweedFS)")
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str | None = None

    def s3_options(self) -> S3Options:
        env = S3Options.from_env()
        return S3Options(
            endpoint_url=self.s3_endpoint_url or env.endpoint_url,
            access_key_id=self.s3_access_key_id or env.access_key_id,
            secret_access_key=self.s3_secret_access_key or env.secret_access_key,
            region=self.s3_region or env.region,
        )


class WarehouseResource(S3Settings):
    """Where tables and audio live. ``root`` is a local path or ``s3://bucket/prefix``.

    Unset fields fall back to the environment at run time: ``OPENTRANSCRIBE_WAREHOUSE`` for
    the root, and botocore's own ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` for S3. In production pass secrets as
    ``dg.EnvVar(...)`` so the UI never shows them.
    """

    root: str | None = Field(default=None, description="local path or s3://bucket/prefix")

    def get(self) -> Warehouse:
        return Warehouse(self.root or settings.warehouse_root(), self.s3_options())
