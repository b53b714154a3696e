"""Archive-wide index of ingested bytes: which batch first holds each ``media_id``.

One small JSON object per media item, ``<root>/_index/media/<id[:2]>/<media_id>.json``
holding ``{"batch_id", "source_uri"}``. Asking whether bytes are already in the archive is
one GET, whatever the archive's size; reading every batch's ``media`` table instead grows
with the archive (``benchmarks/resume_overhead.py`` measures both).

Ordering makes it crash-safe: ``ingest`` records a file here *before* it stages the file's
``ok`` row. A run killed in between leaves an entry pointing at its own batch, which the
re-run treats as its own file, not as a duplicate. An entry is first-writer-wins: it is
never overwritten, so it keeps naming the batch that first ingested the bytes.

Warehouses written before the index existed have no ``_index/media/_built`` object; the
first ingest that needs the index builds it once from the ``media`` tables.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from .warehouse import Warehouse

log = logging.getLogger(__name__)

INDEX_DIR = ("_index", "media")
BUILT = "_built"
INDEX_FORMAT = "1"


@dataclass(frozen=True)
class Holder:
    batch_id: str
    source_uri: str


class MediaIndex:
    def __init__(self, wh: Warehouse):
        self.wh = wh

    def _path(self, media_id: str) -> str:
        return self.wh.path(*INDEX_DIR, media_id[:2], f"{media_id}.json")

    def lookup(self, media_id: str) -> Holder | None:
        data = self.wh.get_if_exists(self._path(media_id))  # one GET
        if data is None:
            return None
        d = json.loads(data)
        return Holder(d["batch_id"], d["source_uri"])

    def record(self, media_id: str, batch_id: str, source_uri: str) -> Holder:
        """Claim ``media_id`` for this batch unless another holder has it; returns the holder."""
        held = self.lookup(media_id)
        if held is not None:
            return held
        body = json.dumps({"batch_id": batch_id, "source_uri": source_uri}, ensure_ascii=False)
        self.wh.put_bytes(self._path(media_id), body.encode())
        return Holder(batch_id, source_uri)

    # -- one-time build for warehouses written before the index ---------------------------
    def is_built(self) -> bool:
        return self.wh.get_if_exists(self.wh.path(*INDEX_DIR, BUILT)) is not None

    def ensure_built(self, workers: int = 16) -> int:
        """Index every ``ok`` media row of the archive if that was never done; returns how
        many entries were written (0 when the index already existed). Resumable: an
        interrupted build keeps its entries and the next one skips them."""
        if self.is_built():
            return 0
        first: dict[str, tuple[str, str]] = {}
        for batch_id in self.wh.batch_ids("media"):
            df = self.wh.read_table("media", batch_id)
            if df is None:
                continue
            rows = df.filter(pl.col("status") == "ok").select("media_id", "source_uri").sort("source_uri")
            for media_id, source_uri in rows.iter_rows():
                first.setdefault(media_id, (batch_id, source_uri))

        def add(item) -> bool:
            media_id, (batch_id, source_uri) = item
            return self.record(media_id, batch_id, source_uri).batch_id == batch_id

        with ThreadPoolExecutor(workers) as pool:
            written = sum(pool.map(add, first.items(), chunksize=64))
        self.wh.put_bytes(self.wh.path(*INDEX_DIR, BUILT), INDEX_FORMAT.encode())
        log.info("media index built from existing media tables: %d entries", written)
        return written

    def entries(self) -> int:
        """Number of indexed media items (lists the index; for tests and reports)."""
        paths = self.wh.files_under(self.wh.path(*INDEX_DIR))
        return sum(1 for p in paths if p.endswith(".json"))
