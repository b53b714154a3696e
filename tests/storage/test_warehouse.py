"""The warehouse over both backends: layout, atomic writes, tables, staging, listings."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from opentranscribe_pipeline.storage import Warehouse

ROWS = pl.DataFrame({"media_id": ["a", "b"], "n": [1, 2]})


def test_paths_and_uris(wh: Warehouse):
    assert wh.table_file("media", "b-0001") == f"{wh.root}/media/batch_id=b-0001/part-0.parquet"
    assert wh.table_file("speaker_profiles") == f"{wh.root}/speaker_profiles/part-0.parquet"
    assert wh.staging_dir("words", "b-1") == f"{wh.root}/_staging/words/batch_id=b-1"
    assert wh.audio_path("abcdef") == f"{wh.root}/audio_16k/ab/abcdef.flac"
    uri = wh.uri(wh.audio_path("abcdef"))
    assert uri == (wh.audio_path("abcdef") if wh.is_local else f"s3://{wh.audio_path('abcdef')}")
    wh.put_bytes(wh.audio_path("abcdef"), b"flac")
    assert wh.get_bytes(uri) == b"flac"  # the URI a table records reads back


def test_bytes_round_trip_and_missing(wh: Warehouse, requests_made):
    path = wh.path("x", "y.json")
    with requests_made() as ops:
        assert wh.get_if_exists(path) is None
        assert not wh.exists(path)
    assert sum(ops.values()) == (0 if wh.is_local else 2)  # one GET, one HEAD
    with pytest.raises(FileNotFoundError):
        wh.get_bytes(path)
    with requests_made() as ops:
        wh.put_bytes(path, b"one")
    assert dict(ops) == ({} if wh.is_local else {"PutObject": 1})
    wh.put_bytes(path, b"two")  # replaced whole
    with requests_made() as ops:
        assert wh.get_if_exists(path) == b"two"
    assert dict(ops) == ({} if wh.is_local else {"GetObject": 1})
    assert wh.exists(path) and not wh.exists(wh.path("x"))  # a folder is not an object
    wh.remove(path)
    wh.remove(path)  # already gone: no error
    assert wh.get_if_exists(path) is None


def test_atomic_writes_leave_no_temporary_files(wh: Warehouse):
    for i in range(5):
        wh.put_bytes(wh.path("t", f"{i}.bin"), bytes([i]) * 1000)
    wh.write_table("media", ROWS, "b1")
    assert wh.files_under(wh.path("_tmp")) == []
    assert [n for n in wh.list_names(wh.root) if n != "_tmp"] == ["media", "t"]  # local: an empty _tmp/


def test_local_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    import os

    wh = Warehouse(str(tmp_path / "w"))
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(ValueError("disk says no")))
    with pytest.raises(ValueError):
        wh.put_bytes(wh.path("a.bin"), b"x")
    assert wh.files_under(wh.path("_tmp")) == [] and not wh.exists(wh.path("a.bin"))


def test_tables_round_trip(wh: Warehouse):
    assert wh.read_table("media", "b1") is None  # never written
    assert wh.read_table("speaker_profiles") is None
    assert wh.scan("media") is None and wh.batch_ids("media") == []
    path = wh.write_table("media", ROWS, "b1")
    assert path == wh.table_file("media", "b1")
    assert wh.read_table("media", "b1").equals(ROWS)
    wh.write_table("media", ROWS.head(1), "b2")
    wh.write_table("speaker_profiles", ROWS)
    assert wh.read_table("speaker_profiles").equals(ROWS)
    assert wh.scan("media").height == 3


def test_parquet_is_written_one_way(wh: Warehouse):
    path = wh.path("speaker_clusters", "part-b1.parquet")
    assert wh.read_parquet(path) is None
    assert wh.write_parquet(path, ROWS) == path
    assert wh.read_parquet(path).equals(ROWS)
    import io

    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(wh.get_bytes(path))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics is not None


def test_batch_ids(wh: Warehouse, requests_made):
    for b in ("drop-0002", "drop-0001", "other-0001"):
        wh.write_table("batches", ROWS, b)
    wh.put_bytes(wh.path("batches", "README"), b"not a batch")
    with requests_made() as ops:
        assert wh.batch_ids("batches") == ["drop-0001", "drop-0002", "other-0001"]
    assert dict(ops) == ({} if wh.is_local else {"ListObjectsV2": 1})
    assert wh.batch_ids("batches", prefix="drop-") == ["drop-0001", "drop-0002"]
    assert wh.batch_ids("batches", prefix="none") == []
    with requests_made() as ops:
        assert wh.batch_ids("no_such_table") == []
    assert dict(ops) == ({} if wh.is_local else {"ListObjectsV2": 1})


def test_list_names_and_files_under(wh: Warehouse):
    assert wh.list_names(wh.path("clusters")) == []
    assert wh.files_under(wh.path("clusters")) == []
    wh.put_bytes(wh.path("clusters", "part-b.parquet"), b"1")
    wh.put_bytes(wh.path("clusters", "part-a.parquet"), b"2")
    wh.put_bytes(wh.path("clusters", "sub", "deep", "x.json"), b"3")
    wh.put_bytes(wh.path("clusters-other", "y"), b"4")  # a sibling sharing the prefix
    assert wh.list_names(wh.path("clusters")) == ["part-a.parquet", "part-b.parquet", "sub"]
    assert sorted(wh.files_under(wh.path("clusters"))) == [
        wh.path("clusters", "part-a.parquet"),
        wh.path("clusters", "part-b.parquet"),
        wh.path("clusters", "sub", "deep", "x.json"),
    ]
    wh.remove(wh.path("clusters"), recursive=True)
    assert wh.files_under(wh.path("clusters")) == [] and wh.list_names(wh.path("clusters-other")) == ["y"]


def test_staging_round_trip_and_clear(wh: Warehouse, requests_made):
    assert wh.staged("words", "b1") == {}
    wh.stage("words", "b1", "m1", ROWS)
    wh.stage("words", "b1", "m2", ROWS.head(1))
    wh.stage("words", "b2", "m3", ROWS)  # another batch: untouched below
    staged = wh.staged("words", "b1")
    assert set(staged) == {"m1", "m2"} and staged["m1"].equals(ROWS) and staged["m2"].height == 1
    assert wh.read_table("words", "b1") is None  # staging is not the visible table
    wh.clear_staging("words", "b1")
    assert wh.staged("words", "b1") == {} and set(wh.staged("words", "b2")) == {"m3"}
    assert wh.files_under(wh.staging_dir("words", "b1")) == []
    with requests_made() as ops:
        wh.clear_staging("words", "b1")  # nothing staged: one listing
    assert dict(ops) == ({} if wh.is_local else {"ListObjectsV2": 1})


def test_remove_many(wh: Warehouse):
    paths = [wh.path("many", f"{i}.bin") for i in range(5)]
    for p in paths:
        wh.put_bytes(p, b"x")
    wh.remove(paths[:3] + [wh.path("many", "missing.bin")])
    assert sorted(wh.files_under(wh.path("many"))) == sorted(paths[3:])


def test_check_reachable(wh: Warehouse, tmp_path):
    from opentranscribe_pipeline.storage import StorageUnavailable

    wh.check_reachable()
    wh.check_reachable()  # an existing root is fine too
    wh.put_bytes(wh.path("probe.bin"), b"x")  # and it can be used right after
    assert wh.get_bytes(wh.path("probe.bin")) == b"x"
    if wh.is_local:
        assert Path(wh.root).is_dir()  # the check made the root
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        with pytest.raises(StorageUnavailable, match="a-file"):
            Warehouse(str(blocker / "w")).check_reachable()


@pytest.mark.s3
def test_missing_bucket_names_bucket_and_endpoint(seaweed):
    from opentranscribe_pipeline.storage import StorageUnavailable

    wh = Warehouse("s3://no-such-bucket-at-all/w", seaweed.s3_options())
    with pytest.raises(StorageUnavailable, match=f"no-such-bucket-at-all.*{seaweed.endpoint}"):
        wh.check_reachable()
