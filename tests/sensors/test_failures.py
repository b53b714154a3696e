"""The run-failure sensor: a failed run becomes a ``run_failures`` row."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.sensors import record_run_failures


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@dg.op
def explode():
    raise ValueError("decoder exploded on batch input")


@dg.job
def failing_job():
    explode()


def test_run_failure_sensor_records_what_broke(tmp_path, instance):
    result = failing_job.execute_in_process(
        instance=instance, raise_on_error=False, tags={"dagster/partition": "drop-1-0003"}
    )
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="record_run_failures",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"warehouse": WarehouseResource(root=str(tmp_path / "wh"))},
    ).for_run_failure()
    record_run_failures(ctx)
    df = pl.read_parquet(tmp_path / "wh" / "run_failures" / f"{result.run_id}.parquet")
    row = df.row(0, named=True)
    assert df.height == 1
    assert row["run_id"] == result.run_id and row["job_name"] == "failing_job"
    assert row["partition_key"] == "drop-1-0003" and row["step_key"] == "explode"
    assert "decoder exploded on batch input" in row["error"] and row["failed_at"] is not None
    assert list((tmp_path / "wh" / "_tmp").iterdir()) == []  # written atomically, nothing left behind
