"""Retries, in one place: transient errors are retried inside a time budget then named; every
other error fails at once with its own message (access denied, missing bucket, invalid key,
not a directory, disk full). Real file systems and a real S3 server where one can produce the
error; a scripted callable only for the backoff arithmetic."""

from __future__ import annotations

import errno
import os
import types
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from opentranscribe_pipeline.storage import (
    AccessDenied,
    DiskFull,
    InvalidKey,
    LocalBackend,
    NoSuchBucket,
    NotADirectory,
    RetryPolicy,
    S3Backend,
    S3Options,
    StorageUnreachable,
    Warehouse,
    open_backend,
    s3_call,
    with_retries,
)

from ..conftest import mounted_tmpfs


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


class FakeTime:
    """A clock that moves only when told: by each wait of the retry loop (recorded, not
    slept) and by the time an attempt is said to take. The budget is spent in no time, and
    machine load cannot change how many attempts fit in it."""

    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def policy(self, **kw) -> RetryPolicy:
        return RetryPolicy(clock=self.clock, sleep=self.sleep, **kw)


@contextmanager
def s3_traffic(client):
    """What goes through the botocore ``client`` meanwhile: ``calls``, the operations called
    (one per attempt of :func:`s3_call`), and ``sent``, the HTTP requests botocore sent for
    them, as ``(operation, url)``."""
    calls: list[str] = []
    sent: list[tuple[str, str]] = []

    def on_call(event_name, **kw):
        calls.append(event_name.rsplit(".", 1)[-1])

    def on_send(request, event_name, **kw):
        sent.append((event_name.rsplit(".", 1)[-1], request.url))

    client.meta.events.register("before-call.s3", on_call)
    client.meta.events.register("before-send.s3", on_send)
    try:
        yield calls, sent
    finally:
        client.meta.events.unregister("before-call.s3", on_call)
        client.meta.events.unregister("before-send.s3", on_send)


def spent_the_budget(waits: list[float], budget_s: float) -> bool:
    """The loop waited out the budget: it stops once less than 0.05 s of it is left (no
    attempt is worth starting then), so the waits sum to the budget less at most that."""
    return budget_s - 0.05 - 1e-9 <= sum(waits) <= budget_s + 1e-9


@pytest.fixture
def no_sleep(monkeypatch):
    """The retry module's default clock and wait replaced by a :class:`FakeTime` (for
    policies made without their own): the waits are recorded, not slept, and the time the
    attempts take on a loaded machine does not eat into the budget."""
    fake = FakeTime()
    monkeypatch.setattr(
        "opentranscribe_pipeline.storage.retries.time",
        types.SimpleNamespace(monotonic=fake.clock, sleep=fake.sleep),
    )
    return fake.waits


# -- the backoff ------------------------------------------------------------------------------
def test_backoff_is_exponential_with_jitter_and_capped(no_sleep):
    policy = RetryPolicy(budget_s=30.0)
    fn = Flaky(*[ConnectionError("reset")] * 8)
    assert with_retries(fn, what="reading x", endpoint="e", policy=policy) == "done"
    steps = [min(8.0, 0.25 * 2**i) for i in range(8)]
    assert fn.calls == 9 and len(no_sleep) == 8
    assert all(step / 2 <= d <= step for d, step in zip(no_sleep, steps)), no_sleep
    assert max(no_sleep) <= 8.0


def test_gives_up_when_the_budget_is_spent_naming_attempts_and_time(no_sleep):
    fn = Flaky(*[ConnectionError("reset")] * 100)
    with pytest.raises(
        StorageUnreachable, match=r"reading x: cannot reach http://store after \d+ attempts over 30\.0 s"
    ):
        with_retries(fn, what="reading x", endpoint="http://store", policy=RetryPolicy(budget_s=30.0))
    assert spent_the_budget(no_sleep, 30.0)
    assert 8 <= fn.calls <= 14


def test_budget_comes_from_the_setting(monkeypatch, no_sleep):
    monkeypatch.setenv("OPENTRANSCRIBE_STORAGE_RETRY_S", "2")
    fn = Flaky(*[TimeoutError("slow")] * 100)
    with pytest.raises(StorageUnreachable):
        with_retries(fn, what="reading x", endpoint="e")
    assert spent_the_budget(no_sleep, 2.0)
    monkeypatch.setenv("OPENTRANSCRIBE_STORAGE_RETRY_S", "0")
    once = Flaky(*[TimeoutError("slow")] * 100)
    with pytest.raises(StorageUnreachable, match="after 1 attempt over"):
        with_retries(once, what="reading x", endpoint="e")
    assert once.calls == 1


def test_budget_counts_time_spent_in_attempts():
    """A hanging endpoint (each attempt a connect timeout) is not retried past the budget."""
    fake = FakeTime()
    calls = []

    def hang():
        calls.append(fake.now)
        fake.now += 0.2  # each attempt a 0.2 s connect timeout
        raise TimeoutError("connect timeout")

    with pytest.raises(StorageUnreachable, match=r"after 3 attempts over 0\.6 s") as info:
        with_retries(hang, what="reading x", endpoint="e", policy=fake.policy(budget_s=0.5, base_delay=0.01))
    # 0.2 + wait + 0.2 + wait leaves < 0.05 s of the 0.5 s budget: a third attempt, then no more
    assert len(calls) == info.value.attempts == 3 and len(fake.waits) == 2
    # the waits alone (0.005 to 0.02 s each) would have allowed a dozen more attempts
    assert sum(fake.waits) < 0.05


def test_not_transient_errors_are_raised_at_once(no_sleep):
    missing = Flaky(FileNotFoundError("x"))
    with pytest.raises(FileNotFoundError):
        with_retries(missing, what="reading x", endpoint="e")
    bug = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        with_retries(bug, what="reading x", endpoint="e")
    denied = Flaky(PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(AccessDenied, match="access denied by e"):
        with_retries(denied, what="reading x", endpoint="e")
    full = Flaky(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(DiskFull, match=r"^writing /w/t: disk full: no space left on the device \(ENOSPC\)$"):
        with_retries(full, what="writing /w/t", endpoint="/w", path="/w/t")
    assert (missing.calls, bug.calls, denied.calls, full.calls, no_sleep) == (1, 1, 1, 1, [])


def test_s3_call_retries_throttling_and_5xx_then_names_bucket_and_endpoint(no_sleep):
    fn = Flaky(client_error("SlowDown", 503), client_error("WeirdVendorError", 502), value={"ok": 1})
    assert s3_call(fn, what="listing", endpoint="http://s3", bucket="b") == {"ok": 1}
    down = Flaky(*[client_error("ServiceUnavailable", 503)] * 100)
    with pytest.raises(StorageUnreachable, match=r"listing: cannot reach bucket 'b' at http://s3 after \d+ attempts"):
        s3_call(down, what="listing", endpoint="http://s3", bucket="b", policy=RetryPolicy(budget_s=3))
    assert fn.calls == 3 and down.calls > 3


@pytest.mark.parametrize(
    "code,status,error,message",
    [
        ("NoSuchKey", 404, FileNotFoundError, "reading b/k"),
        ("AccessDenied", 403, AccessDenied, "access denied to bucket 'b'"),
        ("SignatureDoesNotMatch", 403, AccessDenied, "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"),
        ("InvalidAccessKeyId", 403, AccessDenied, "InvalidAccessKeyId"),
        ("NoSuchBucket", 404, NoSuchBucket, "bucket 'b' does not exist at e"),
        ("InvalidRequest", 400, InvalidKey, "rejected the key"),
    ],
)
def test_s3_client_errors_are_not_retried_and_say_what_is_wrong(no_sleep, code, status, error, message):
    fn = Flaky(client_error(code, status))
    with pytest.raises(error, match=message):
        s3_call(fn, what="reading b/k", endpoint="e", bucket="b")
    assert (fn.calls, no_sleep) == (1, [])


def test_s3_backend_retries_a_dropped_connection_then_names_the_endpoint(monkeypatch, no_sleep):
    backend = S3Backend("bucket/w", S3Options("http://127.0.0.1:9", "k", "s"), policy=RetryPolicy(budget_s=5))

    class Client:
        calls = 0

        def get_object(self, **kw):
            Client.calls += 1
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(S3Backend, "client", Client())
    with pytest.raises(StorageUnreachable, match=r"http://127\.0\.0\.1:9.*after \d+ attempts over 5\.0 s"):
        backend.get_if_exists("bucket/w/x")
    assert Client.calls > 3 and spent_the_budget(no_sleep, 5.0)


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


# -- the real thing ---------------------------------------------------------------------------
def test_unreachable_s3_endpoint_is_retried_for_the_budget():
    """Nothing listens on the discard port: connection refused, retried, then named."""
    fake = FakeTime()
    backend = S3Backend("bucket/w", S3Options("http://127.0.0.1:9", "k", "s"), policy=fake.policy(budget_s=1.5))
    with s3_traffic(backend.client) as (calls, sent), pytest.raises(StorageUnreachable) as info:
        backend.put_bytes("bucket/w/x", b"x")
    n = info.value.attempts
    assert str(info.value).startswith(
        f"writing bucket/w/x: cannot reach bucket 'bucket' at http://127.0.0.1:9 after {n} attempts over 1.5 s"
    ), str(info.value)
    # waited out the whole budget between attempts, each attempt one real (refused) PUT
    assert spent_the_budget(fake.waits, 1.5) and len(fake.waits) == n - 1 and n >= 4
    assert calls == ["PutObject"] * n and sent[0] == ("PutObject", "http://127.0.0.1:9/bucket/w/x")


@pytest.mark.s3
def test_dot_dot_keys_are_rejected_before_any_request(seaweed):
    bucket = seaweed.make_bucket()
    wh = Warehouse(f"s3://{bucket}/w", seaweed.s3_options())
    fake = FakeTime()
    wh.backend.policy = fake.policy()  # any wait would be recorded here
    with s3_traffic(wh.backend.client) as (calls, sent):
        for path in (f"{bucket}/incoming/../other/x", f"{bucket}/w/./x", f"s3://{bucket}/a/.."):
            with pytest.raises(InvalidKey, match="'.' and '..' segments"):
                wh.put_bytes(path, b"x")
        with pytest.raises(InvalidKey):
            open_backend(f"s3://{bucket}/incoming/../other", seaweed.s3_options())
        with pytest.raises(InvalidKey, match="names no bucket"):
            open_backend("s3:///x")
        wh.put_bytes(wh.path("ok"), b"x")  # the counter sees a valid key's PUT
    # no request and no backoff for the bad ones
    assert calls == ["PutObject"] and [op for op, _ in sent] == ["PutObject"] and fake.waits == []
    assert [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket)["Contents"]] == ["w/ok"]


@pytest.mark.s3
def test_wrong_secret_key_is_access_denied_not_a_missing_bucket(tmp_path):
    from tests import seaweed as seaweed_server

    with seaweed_server.running(tmp_path, access_key="ak", secret_key="right") as server:
        bucket = server.make_bucket()
        for key, secret, code in (("ak", "wrong", "SignatureDoesNotMatch"), ("nobody", "x", "InvalidAccessKeyId")):
            wh = Warehouse(f"s3://{bucket}/w", S3Options(server.endpoint, key, secret, "us-east-1"))
            fake = FakeTime()
            wh.backend.policy = fake.policy()
            with s3_traffic(wh.backend.client) as (calls, sent):
                with pytest.raises(
                    AccessDenied, match=rf"access denied to bucket '{bucket}' .*\({code}\): check AWS_ACCESS_KEY_ID"
                ) as listing:
                    wh.check_reachable()
                with pytest.raises(AccessDenied) as put:
                    wh.put_bytes(wh.path("x"), b"x")
            # not retried: one request each, no wait
            assert calls == [op for op, _ in sent] == ["ListObjectsV2", "PutObject"] and fake.waits == []
            assert (listing.value.attempts, put.value.attempts) == (1, 1)
        missing = Warehouse("s3://no-such-bucket-here/w", server.s3_options())
        with pytest.raises(NoSuchBucket, match="bucket 'no-such-bucket-here' does not exist"):
            missing.check_reachable()


def test_local_root_that_is_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    wh = Warehouse(str(tmp_path / "file"))
    fake = FakeTime()
    wh.backend.policy = fake.policy()
    with pytest.raises(NotADirectory, match=f"{tmp_path / 'file'} is not a directory") as opening:
        wh.check_reachable()
    with pytest.raises(NotADirectory, match="is not a directory") as writing:
        wh.write_table("media", __import__("polars").DataFrame({"a": [1]}), "b1")
    assert (opening.value.attempts, writing.value.attempts, fake.waits) == (1, 1, [])  # not retried


def test_local_io_error_is_retried_then_names_the_folder(tmp_path, monkeypatch, no_sleep):
    backend = LocalBackend(str(tmp_path), policy=RetryPolicy(budget_s=2))
    calls = []

    def broken_open(*a, **k):
        calls.append(a)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("builtins.open", broken_open)
    with pytest.raises(StorageUnreachable, match=f"cannot reach {tmp_path} after"):
        backend.get_bytes(str(tmp_path / "x"))
    assert len(calls) > 2


@pytest.fixture
def tiny_tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "tiny", "1m") as mount:
        yield mount


def test_disk_full_names_the_path_and_is_not_retried(tiny_tmpfs):
    import polars as pl

    wh = Warehouse(str(tiny_tmpfs / "warehouse"))
    small = pl.DataFrame({"x": [1, 2, 3]})
    wh.write_table("media", small, "b1")
    big = os.urandom(4 << 20)
    fake = FakeTime()
    wh.backend.policy = fake.policy()
    target = wh.path("audio_16k", "ab", "big.flac")
    with pytest.raises(
        DiskFull, match=rf"^writing {target}: disk full: no space left on the device \(ENOSPC\)$"
    ) as info:
        wh.put_bytes(target, big)
    assert (info.value.attempts, fake.waits) == (1, [])  # not retried, no backoff
    assert info.value.path == target
    assert not wh.exists(target)
    assert os.listdir(tiny_tmpfs / "warehouse" / "_tmp") == []  # the partial temporary file is gone
    assert wh.read_table("media", "b1").equals(small)  # what was there is still readable
