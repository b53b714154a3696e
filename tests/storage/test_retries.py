"""Retries, in one place: transient errors are retried then named, missing files are not."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from opentranscribe_pipeline.storage import (
    LocalBackend,
    S3Backend,
    S3Options,
    StorageUnavailable,
    s3_call,
    with_retries,
)


class Flaky:
    """Raises ``errors`` in turn, then returns ``value``; counts the calls."""

    def __init__(self, *errors, value="done"):
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr("opentranscribe_pipeline.storage.retries.time.sleep", slept.append)
    return slept


def test_with_retries_retries_transient_errors_with_backoff(no_sleep):
    fn = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    assert with_retries(fn, what="reading x", endpoint="http://store") == "done"
    assert fn.calls == 3 and no_sleep == [0.5, 1.0]


def test_with_retries_gives_up_naming_the_endpoint():
    fn = Flaky(*[ConnectionError("reset")] * 10)
    with pytest.raises(StorageUnavailable, match=r"reading x: cannot reach http://store after 4 attempts"):
        with_retries(fn, what="reading x", endpoint="http://store")
    assert fn.calls == 4


def test_with_retries_does_not_retry_missing_files_or_other_errors(no_sleep):
    fn = Flaky(FileNotFoundError("x"))
    with pytest.raises(FileNotFoundError):
        with_retries(fn, what="reading x", endpoint="e")
    bug = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        with_retries(bug, what="reading x", endpoint="e")
    denied = Flaky(PermissionError("no"))
    with pytest.raises(StorageUnavailable, match="access denied by e"):
        with_retries(denied, what="reading x", endpoint="e")
    assert (fn.calls, bug.calls, denied.calls, no_sleep) == (1, 1, 1, [])


def test_s3_call_retries_throttling_then_names_bucket_and_endpoint():
    fn = Flaky(client_error("SlowDown", 503), value={"ok": 1})
    assert s3_call(fn, what="listing", endpoint="http://s3", bucket="b") == {"ok": 1}
    down = Flaky(*[client_error("ServiceUnavailable", 503)] * 5)
    with pytest.raises(StorageUnavailable, match=r"bucket 'b' at http://s3 .* after 3 attempts"):
        s3_call(down, what="listing", endpoint="http://s3", bucket="b")
    assert (fn.calls, down.calls) == (2, 3)


def test_s3_call_missing_key_is_not_retried(no_sleep):
    fn = Flaky(client_error("NoSuchKey", 404))
    with pytest.raises(FileNotFoundError):
        s3_call(fn, what="reading b/k", endpoint="e", bucket="b")
    denied = Flaky(client_error("AccessDenied", 403))
    with pytest.raises(StorageUnavailable, match="access denied to bucket 'b'"):
        s3_call(denied, what="reading b/k", endpoint="e", bucket="b")
    assert (fn.calls, denied.calls, no_sleep) == (1, 1, [])


def test_local_backend_retries_then_names_the_folder(tmp_path, monkeypatch):
    backend = LocalBackend(str(tmp_path))
    calls = []

    def broken_open(*a, **k):
        calls.append(a)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("builtins.open", broken_open)
    with pytest.raises(StorageUnavailable, match=f"cannot reach {tmp_path} after 4 attempts"):
        backend.get_bytes(str(tmp_path / "x"))
    assert len(calls) == 4


def test_s3_backend_retries_a_dropped_connection_then_names_the_endpoint(monkeypatch):
    backend = S3Backend("bucket/w", S3Options("http://127.0.0.1:9", "k", "s"))

    class Client:
        calls = 0

        def get_object(self, **kw):
            Client.calls += 1
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(S3Backend, "client", Client())
    with pytest.raises(StorageUnavailable, match=r"http://127\.0\.0\.1:9.*after 3 attempts"):
        backend.get_if_exists("bucket/w/x")
    assert Client.calls == 3


def test_s3_backend_missing_key_is_one_request(monkeypatch):
    backend = S3Backend("bucket/w", S3Options("http://s3"))

    class Client:
        calls = 0

        def get_object(self, **kw):
            Client.calls += 1
            raise client_error("NoSuchKey", 404)

    monkeypatch.setattr(S3Backend, "client", Client())
    assert backend.get_if_exists("bucket/w/x") is None
    with pytest.raises(FileNotFoundError):
        backend.get_bytes("s3://bucket/w/x")
    assert Client.calls == 2
