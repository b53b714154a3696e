"""Counting S3 requests in benchmarks: wrap botocore's and aiobotocore's ``_make_api_call``
(API calls as issued, before botocore's own retries), per operation name."""

from __future__ import annotations

import collections
import contextlib
import threading
import time


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops: collections.Counter = collections.Counter()
        self.active = False

    def add(self, op: str) -> None:
        if self.active:
            with self.lock:
                self.ops[op] += 1

    @contextlib.contextmanager
    def measure(self):
        self.ops = collections.Counter()
        self.active = True
        t0 = time.perf_counter()
        box = {}
        try:
            yield box
        finally:
            box["seconds"] = time.perf_counter() - t0
            box["ops"] = dict(self.ops)
            box["requests"] = sum(self.ops.values())
            self.active = False


COUNTER = Counter()


def install_counter() -> None:
    import aiobotocore.client
    import botocore.client

    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def counted(self, operation_name, api_params):
        COUNTER.add(operation_name)
        return sync_call(self, operation_name, api_params)

    async def counted_async(self, operation_name, api_params):
        COUNTER.add(operation_name)
        return await async_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted
    aiobotocore.client.AioBaseClient._make_api_call = counted_async
