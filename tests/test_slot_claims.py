"""Pool slots on PostgreSQL: steps that claim the one `gpu` slot at the same moment get it once.

dagster-postgres 1.13 let two simultaneous claimers take the same slot row (AUTOCOMMIT between
its SELECT ... FOR UPDATE and its UPDATE): test_concurrency[postgres] saw two model steps of two
runs on one device in CI. The instance's event log is runner/slots.py's storage, which claims in
one transaction."""

import multiprocessing as mp
import time

import dagster as dg
import pytest

from opentranscribe_pipeline.runner import ensure_pools
from opentranscribe_pipeline.runner.slots import PostgresEventLogStorage

from .conftest import write_instance_yaml

PROCESSES, ROUNDS = 4, 12


def _claimer(home: str, index: int, barrier, results) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        storage = instance.event_log_storage
        for round_ in range(ROUNDS):
            run_id = f"round{round_}-claimer{index}"
            barrier.wait()  # every claimer asks at the same moment
            status = storage.claim_concurrency_slot("gpu", run_id, "transcribe")
            results.put((round_, index, status.is_claimed))
            barrier.wait()  # every claim answered before anyone frees
            if status.is_claimed:
                time.sleep(0.05)
            storage.free_concurrency_slots_for_run(run_id)
            barrier.wait()


@pytest.mark.postgres
def test_simultaneous_claims_of_the_one_gpu_slot_give_it_to_exactly_one_step(tmp_path, own_postgres_db):
    home = str(write_instance_yaml(tmp_path / "home", postgres=own_postgres_db))
    with dg.DagsterInstance.from_config(home) as instance:
        assert type(instance.event_log_storage) is PostgresEventLogStorage
        ensure_pools(instance)
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(home, i, barrier, results)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    answers = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = {r: sum(ok for round_, _, ok in answers if round_ == r) for r in range(ROUNDS)}
    assert claimed == dict.fromkeys(range(ROUNDS), 1), claimed

    with dg.DagsterInstance.from_config(home) as instance:  # every slot handed back
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.slot_count == 1 and not info.claimed_slots
