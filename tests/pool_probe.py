"""A job for test_concurrency: one step in the ``gpu`` pool, one outside it, each appending
its [start, end] to the file named by ``POOL_PROBE_LOG``. Run as a script, it executes the job the way a launched run does
(``execute_job``, multiprocess executor) against ``DAGSTER_HOME``'s instance."""

import json
import os
import sys
import time

import dagster as dg

from opentranscribe_pipeline.settings import GPU_POOL

HOLD_S = 4.0  # long enough that two runs started together overlap unless the pool forbids it


def _record(kind: str) -> None:
    t0 = time.time()
    time.sleep(HOLD_S)
    with open(os.environ["POOL_PROBE_LOG"], "a") as f:  # step processes inherit it
        f.write(json.dumps({"kind": kind, "start": t0, "end": time.time()}) + "\n")


@dg.asset(pool=GPU_POOL)
def model_step():
    _record("gpu")


@dg.asset
def table_step():
    _record("cpu")


def probe_job():
    return dg.Definitions(
        assets=[model_step, table_step], jobs=[dg.define_asset_job("probe", [model_step, table_step])]
    ).resolve_job_def("probe")


if __name__ == "__main__":
    with dg.execute_job(dg.reconstructable(probe_job), instance=dg.DagsterInstance.get()) as result:
        sys.exit(0 if result.success else 1)
