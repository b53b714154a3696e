"""One dynamic partition per batch of files (never per file: archives reach millions)."""

import dagster as dg

BATCHES = "batches"
batch_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)
