"""Fixtures for the storage tests: the same test against a local folder and against S3."""

from __future__ import annotations

import collections
import contextlib

import pytest

from opentranscribe_pipeline.storage import Warehouse, s3_client


@pytest.fixture(params=["local", "s3"])
def kind(request) -> str:
    if request.param == "s3":
        request.applymarker(pytest.mark.s3)
    return request.param


@pytest.fixture
def wh(kind, tmp_path, request) -> Warehouse:
    """An empty warehouse: a local folder, or a prefix of a fresh bucket on SeaweedFS."""
    if kind == "local":
        return Warehouse(str(tmp_path / "warehouse"))
    seaweed = request.getfixturevalue("seaweed")
    return Warehouse(f"s3://{seaweed.make_bucket('wh')}/warehouse", seaweed.s3_options())


@pytest.fixture
def requests_made(wh):
    """``with requests_made() as ops:`` counts the S3 API calls the warehouse's client issues
    inside the block, per operation (an empty Counter on a local warehouse)."""

    @contextlib.contextmanager
    def count():
        ops: collections.Counter = collections.Counter()
        if wh.is_local:
            yield ops
            return
        events = s3_client(wh.s3).meta.events

        def seen(model, **_):
            ops[model.name] += 1

        events.register("before-call.s3", seen, unique_id="storage-test-counter")
        try:
            yield ops
        finally:
            events.unregister("before-call.s3", unique_id="storage-test-counter")

    return count
