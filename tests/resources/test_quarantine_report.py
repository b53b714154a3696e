"""A part quarantined inside a Dagster step shows in the run: the step's log says so and the
asset gets an observation for its batch with where the part went and why. The storage package
knows no Dagster; the warehouse resource hands its warehouses the reporter."""

import dagster as dg

from opentranscribe_pipeline.resources.storage import WarehouseResource


def test_a_quarantine_in_a_step_is_an_observation_of_the_batch_partition(tmp_path):
    wh = WarehouseResource(root=str(tmp_path / "w")).get()
    part = wh.path("segments", "batch_id=b1", "part-0.parquet")
    wh.put_bytes(part, b"not parquet")
    outside = wh.quarantine(part, "unreadable")  # no step: nothing to report to
    assert outside.moved_to and not wh.exists(part)
    wh.put_bytes(part, b"not parquet either")

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["b1"]))
    def segments():
        wh.quarantine(part, "footer truncated")

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([segments], instance=instance, partition_key="b1")
        assert result.success
        [obs] = [e.asset_observation_data.asset_observation for e in result.all_events if e.is_asset_observation]
        assert obs.asset_key == dg.AssetKey("segments") and obs.partition == "b1"
        assert obs.metadata["quarantine_reason"].value == "footer truncated"
        assert obs.metadata["quarantined_path"].value == wh.uri(part)
        assert "/_quarantine/segments/batch_id=b1/" in obs.metadata["quarantined_to"].value
        logs = instance.all_logs(result.run_id)
        assert any("quarantined" in (e.user_message or "") and "footer truncated" in e.user_message for e in logs)
