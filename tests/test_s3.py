"""The pipeline against a real S3 server (SeaweedFS on loopback): sources and warehouse."""

import re

import polars as pl
import pytest

from opentranscribe_pipeline.storage import StorageUnavailable, Warehouse, list_source
from opentranscribe_pipeline.storage.media_index import MediaIndex

from .conftest import SAMPLE_DROP, run_cli

pytestmark = pytest.mark.s3

FILES = ("meeting-02.flac", "lecture_05.ogg")


def upload_drop(seaweed, bucket, prefix):
    client = seaweed.client()
    for name in FILES:
        client.upload_file(str(SAMPLE_DROP / name), bucket, f"{prefix}/{name}")
    client.upload_file(str(SAMPLE_DROP / "call-07.flac"), bucket, f"{prefix}/sub dir/ünï cödé call.flac")
    client.put_object(Bucket=bucket, Key=f"{prefix}/_READY", Body=b"")


def cli(args, env_extra, dagster_home, timeout=600):
    return run_cli(args, dagster_home, env_extra, timeout=timeout)


def test_listing_keeps_odd_keys_below_the_prefix(seaweed):
    bucket = seaweed.make_bucket()
    upload_drop(seaweed, bucket, "incoming/drop 1")
    seaweed.client().put_object(Bucket=bucket, Key="incoming/drop 10/other.flac", Body=b"x")
    objs = list_source(f"s3://{bucket}/incoming/drop 1", seaweed.s3_options())
    assert [o.relative for o in objs] == ["_READY", "lecture_05.ogg", "meeting-02.flac", "sub dir/ünï cödé call.flac"]
    assert all(o.uri.startswith(f"s3://{bucket}/incoming/drop 1/") for o in objs)


def test_cli_processes_an_s3_drop_into_an_s3_warehouse(seaweed, dagster_home):
    bucket = seaweed.make_bucket()
    upload_drop(seaweed, bucket, "incoming/drop-s3")
    warehouse = f"s3://{bucket}/warehouse"
    proc = cli(["process", f"s3://{bucket}/incoming/drop-s3", "--warehouse", warehouse], seaweed.env(), dagster_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 total, 3 ok, 0 failed, 0 skipped" in proc.stdout
    # analysts read the tables straight from S3 with polars
    opts = {
        "aws_endpoint_url": seaweed.endpoint,
        "aws_access_key_id": "any",
        "aws_secret_access_key": "any",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    words = pl.scan_parquet(f"{warehouse}/words/**/*.parquet", storage_options=opts, hive_partitioning=True).collect()
    media = pl.scan_parquet(f"{warehouse}/media/**/*.parquet", storage_options=opts, hive_partitioning=True).collect()
    assert words["media_id"].n_unique() == 3 and words.height > 60
    assert any("ünï cödé call.flac" in uri for uri in media["source_uri"])
    wh = Warehouse(warehouse, seaweed.s3_options())
    audio = wh.scan("audio")
    assert all(uri.startswith(f"s3://{bucket}/warehouse/audio_16k/") for uri in audio["audio_uri"])
    index = MediaIndex(wh)  # every ingested item is in the archive-wide index, one GET away
    assert index.entries() == audio.height
    assert all(index.lookup(m).batch_id == b for m, b in audio.select("media_id", "batch_id").iter_rows())
    leftovers = wh.backend.listing(f"{bucket}/warehouse/_tmp")
    assert [p for p, size in leftovers if size > 0] == []


def test_unreachable_endpoint_is_a_clear_error(dagster_home, tmp_path):
    endpoint = "http://127.0.0.1:9"  # discard port: nothing listens
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    env["OPENTRANSCRIBE_STORAGE_RETRY_S"] = "2"  # the default budget is 30 s
    proc = cli(["process", "s3://bucket/drop", "--warehouse", str(tmp_path / "w")], env, dagster_home, timeout=180)
    assert proc.returncode == 2
    assert endpoint in proc.stderr and "Traceback" not in proc.stderr
    assert "cannot reach bucket 'bucket'" in proc.stderr
    # given up once the 2 s budget is spent (the last attempt may end a little after it)
    assert re.search(r"after \d+ attempts over (\d+\.\d) s", proc.stderr)
    assert 2.0 <= float(re.search(r"over (\d+\.\d) s", proc.stderr).group(1)) < 10
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_missing_bucket_is_a_clear_error(seaweed):
    wh = Warehouse("s3://no-such-bucket-here/warehouse", seaweed.s3_options())
    with pytest.raises(StorageUnavailable, match="bucket 'no-such-bucket-here' does not exist"):
        wh.check_reachable()
