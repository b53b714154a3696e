"""PostgreSQL event-log storage whose pool slots hold one step each.

dagster-postgres 1.13 runs every statement of its index connection in AUTOCOMMIT. Its
``_claim_concurrency_slot`` selects a free slot row ``FOR UPDATE SKIP LOCKED`` and then updates
that row by id, in two statements: the row lock ends with the SELECT, and the UPDATE does not
ask that the slot still be free. Two steps that claim at the same moment can therefore select
the same free row, and both UPDATEs succeed: with the ``gpu`` pool at limit 1, two model steps
of two runs ran on one device together (tests/test_concurrency.py[postgres] failed in CI; a
three-process claim race, ``tests/test_slot_claims.py``, over-claimed in 2 of 6 trials).

:class:`PostgresEventLogStorage` is dagster-postgres's storage with that one method made
atomic: both statements in one transaction (the row stays locked until the UPDATE commits) and
the UPDATE only where the slot is still free, so a claimer that loses the race gets BLOCKED and
asks again, as Dagster's executor does for any blocked step. SQLite's storage serialises its
writes and does not over-claim (same race, 0 of 6).

Used by naming it as the instance's ``event_log_storage`` (``deploy/dagster.yaml``); run and
schedule storage stay dagster-postgres's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster_postgres.event_log import PostgresEventLogStorage as _DagsterPostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class PostgresEventLogStorage(_DagsterPostgresEventLogStorage):
    """dagster-postgres's event-log storage; a pool slot is claimed in one transaction."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> PostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str) -> ConcurrencySlotStatus:
        slots = ConcurrencySlotsTable.c
        with self.index_transaction() as conn:
            row = conn.execute(
                db_select([slots.id])
                .select_from(ConcurrencySlotsTable)
                .where(
                    db.and_(
                        slots.concurrency_key == concurrency_key,
                        slots.step_key == None,  # noqa: E711
                        slots.deleted == False,  # noqa: E712
                    )
                )
                .with_for_update(skip_locked=True)
                .limit(1)
            ).fetchone()
            if not row or not row[0]:
                return ConcurrencySlotStatus.BLOCKED
            taken = conn.execute(
                ConcurrencySlotsTable.update()
                .values(run_id=run_id, step_key=step_key)
                .where(db.and_(slots.id == row[0], slots.step_key == None))  # noqa: E711
            ).rowcount
        return ConcurrencySlotStatus.CLAIMED if taken else ConcurrencySlotStatus.BLOCKED
