"""Listing a whole source: the same answer from a local folder and from S3."""

from __future__ import annotations

import pytest

from opentranscribe_pipeline.storage import StorageUnavailable, list_source

FILES = {"b.flac": b"bb", "a.wav": b"a", "sub dir/ünï.ogg": b"ccc", "_READY": b""}


@pytest.fixture
def source(kind, tmp_path, request) -> tuple[str, object]:
    """A drop holding FILES (and a sibling ``drop 10`` sharing its prefix)."""
    if kind == "local":
        for name, data in {**FILES, "../drop 10/other.flac": b"x"}.items():
            p = tmp_path / "incoming" / "drop 1" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return str(tmp_path / "incoming" / "drop 1"), None
    seaweed = request.getfixturevalue("seaweed")
    bucket = seaweed.make_bucket("src")
    client = seaweed.client()
    for name, data in FILES.items():
        client.put_object(Bucket=bucket, Key=f"incoming/drop 1/{name}", Body=data)
    client.put_object(Bucket=bucket, Key="incoming/drop 1/empty folder/", Body=b"")  # a placeholder
    client.put_object(Bucket=bucket, Key="incoming/drop 10/other.flac", Body=b"x")
    return f"s3://{bucket}/incoming/drop 1", seaweed.s3_options()


def test_list_source(source):
    uri, s3 = source
    objs = list_source(uri, s3)
    assert [(o.relative, o.size_bytes) for o in objs] == [
        ("_READY", 0),
        ("a.wav", 1),
        ("b.flac", 2),
        ("sub dir/ünï.ogg", 3),
    ]
    assert all(o.uri == f"{uri}/{o.relative}" for o in objs)


def test_missing_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_source(str(tmp_path / "nope"))


def test_unreachable_s3_names_the_endpoint(monkeypatch):
    from opentranscribe_pipeline.storage import S3Options

    monkeypatch.setattr("opentranscribe_pipeline.storage.retries.time.sleep", lambda s: None)
    with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1:9"):
        list_source("s3://bucket/drop", S3Options("http://127.0.0.1:9", "x", "y"))
